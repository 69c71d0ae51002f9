"""The frame drawer: walk changes that never jump, settings that arrive as the engine's render command, frames drawn
ahead beside training, each with the weights of its iteration, and jumps that reach the picture at once."""

from __future__ import annotations

import copy
import json
import queue
import threading
import time

import numpy as np
import pytest
import torch

from installation.engine import Engine, EngineConfig, EngineError
from installation.engine.commands import CommandError
from installation.frames import FrameChannel
from installation.engine import drawer as drawer_module
from installation.engine.drawer import GLIDE_SECONDS, FrameDrawer, WalkSettings
from installation.models import create_stylegan1
from installation.engine.config import RenderConfig, WalkConfig
from installation.validation import ConfigError
from installation.walks import draw_walks, make_walks, render_walk_frames

WALK = WalkConfig(keyframes=3, period=10.0, truncation=0.7, seed=0, grid=2)


def test_a_new_period_keeps_the_walk_where_it_is():
    settings = WalkSettings(period=10.0, truncation=0.7, seed=0, epoch=1000.0)
    now = 1003.0  # 30 % into the loop
    slower = settings.with_period(40.0, now)
    assert (now - slower.epoch) / slower.period == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="period must be a finite number > 0"):
        settings.with_period(0.0, now)
    with pytest.raises(ConfigError, match="truncation"):
        settings.replace(truncation=float("nan"))


def test_seed_and_truncation_glide_instead_of_jumping():
    gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2, seed=3)
    drawer = FrameDrawer("unused", WALK, RenderConfig(), WalkSettings(10.0, 0.7, 0, epoch=0.0))
    drawer._latent_dim = gan.latent_dim
    drawer._walks = drawer._make_walks(0)
    before = drawer.draw(gan, [2.0], [100.0])[0].astype(float)
    drawer.configure(drawer.settings.replace(seed=5, truncation=1.0))
    # the changes are timed from the monotonic clock at configure(); draw at the start and past the glide
    start = drawer._seed_changed
    at_start = drawer.draw(gan, [2.0], [start])[0].astype(float)
    assert np.abs(at_start - before).max() <= 1.0  # no jump at the moment of the change
    middle = drawer.draw(gan, [2.0], [start + GLIDE_SECONDS / 2])[0].astype(float)
    after = drawer.draw(gan, [2.0], [start + GLIDE_SECONDS])[0].astype(float)
    assert np.abs(after - before).mean() > 5.0  # another walk and truncation once the glide is over
    assert 0 < np.abs(middle - before).mean() < np.abs(after - before).mean()
    fresh = FrameDrawer("unused", WALK, RenderConfig(), WalkSettings(10.0, 1.0, 5, epoch=0.0))
    fresh._latent_dim = gan.latent_dim
    fresh._walks = fresh._make_walks(5)
    assert np.array_equal(after, fresh.draw(gan, [2.0], [0.0])[0].astype(float))  # it arrives exactly there


def test_render_settings_go_through_the_engines_command_and_bad_ones_are_refused(tmp_path):
    gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2)
    drawer = FrameDrawer("unused", WALK, RenderConfig(), WalkSettings(10.0, 0.7, 0, epoch=0.0))
    engine = Engine(gan, EngineConfig(device="cpu"), tmp_path, drawer=drawer)
    engine.apply(("render", drawer.settings.replace(grid=True)))
    assert drawer.settings.grid
    with pytest.raises(CommandError, match="render takes walk settings"):
        engine.apply(("render", {"grid": True}))
    engine.close()
    plain = Engine(gan, EngineConfig(device="cpu"), tmp_path / "plain")
    with pytest.raises(CommandError, match="nothing draws frames"):
        plain.apply(("render", drawer.settings))
    plain.close()


def test_frames_drawn_together_are_the_frames_drawn_one_by_one_through_glides():
    gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2, seed=4)
    drawer = FrameDrawer("unused", WALK, RenderConfig(), WalkSettings(10.0, 0.7, 0, epoch=0.0))
    drawer._latent_dim = gan.latent_dim
    drawer._walks = drawer._make_walks(0)
    drawer.configure(drawer.settings.replace(seed=5, truncation=1.0))  # both glides under way
    start = drawer._seed_changed
    times, moments = [2.0, 2.4, 2.8, 3.2], [start, start + 0.5, start + 1.0, start + 2.0]
    for grid in (False, True):
        drawer.configure(drawer.settings.replace(grid=grid))
        together = drawer.draw(gan, times, moments).astype(int)
        assert together.shape == (4, 4 if grid else 1, 16, 16, 3)
        for k, (walk_time, now) in enumerate(zip(times, moments)):
            alone = drawer.draw(gan, [walk_time], [now])[0]
            assert np.abs(together[k] - alone).max() <= 1  # float noise of another batch size, at most
        assert np.abs(together[0] - together[1]).mean() > 1.0  # each frame at its own time and glide


def test_frames_are_drawn_ahead_beside_training_in_batches_each_with_the_weights_of_its_iteration(tmp_path,
                                                                                                  monkeypatch):
    gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2, seed=2)
    calls, weights = [], {}

    def counted(*args, **kwargs):  # the drawer's generator calls, counted
        calls.append(threading.current_thread().name)
        return draw_walks(*args, **kwargs)

    monkeypatch.setattr(drawer_module, "draw_walks", counted)
    channel = FrameChannel.create(16, 16, slots=256)
    settings = WalkSettings(10.0, 0.7, 0, epoch=time.time() - 3.0)
    drawer = FrameDrawer(channel.name, WALK, RenderConfig(), settings)

    def keep(engine):  # the weights of each iteration, as the trainer has them between steps
        weights.setdefault(engine.iteration, copy.deepcopy(engine.gan.generator.state_dict()))

    # batch 32: steps long enough (tens of ms) that the drawer draws several frames ahead, in one generator call
    engine = Engine(gan, EngineConfig(device="cpu", batch=32, probe_every=1000), tmp_path, between_steps=keep,
                    drawer=drawer)
    try:
        engine.run(until=8)
        deadline = time.monotonic() + 60
        while channel.read().iteration != 8:  # the newest weights reach the picture
            assert time.monotonic() < deadline, "no frame of the last iteration"
            time.sleep(0.01)
    finally:
        engine.close()
    frames = channel.read_since(0)
    channel.close()
    drawn = calls.count("frame-drawer")
    assert frames[-1].sequence > drawn >= 2  # frames went through the generator together
    assert {f.generation for f in frames} == {1} and max(len(f.pixels) for f in frames) == 1
    assert {f.iteration for f in frames} >= {0, 8}  # refreshed after the steps, while they ran
    show_at = [f.show_at for f in frames]
    assert all(b > a for a, b in zip(show_at, show_at[1:]))  # ahead, in order, each at a moment of its own
    walks = make_walks(4, gan.latent_dim, WALK.keyframes, settings.period, settings.seed)
    for f in frames:  # each is the frame of its moment, drawn with the weights of its iteration
        assert f.walk_time == pytest.approx(f.show_at - settings.epoch)
        gan.generator.load_state_dict(weights[f.iteration])
        expected = render_walk_frames(gan, walks[:1], f.walk_time, settings.truncation)
        assert np.abs(f.pixels.astype(int) - expected).max() <= 1


class HeldStep:
    """Holds the trainer inside its next training step (in D's forward) until released: a step that lasts as long
    as the test needs, so what happens during a step is seen for certain."""

    def __init__(self, gan) -> None:
        self.armed, self.inside, self.release = threading.Event(), threading.Event(), threading.Event()
        gan.discriminator.register_forward_hook(self._hook)

    def _hook(self, *_) -> None:
        if self.armed.is_set() and torch.is_grad_enabled():  # a training step, not a probe
            self.armed.clear()
            self.inside.set()
            assert self.release.wait(60)

    def hold(self) -> None:
        self.inside.clear()
        self.release.clear()
        self.armed.set()
        assert self.inside.wait(60), "the trainer did not step"


class Running:
    """An engine with a drawer, its loop on a thread of its own and its commands from a queue, as in its process."""

    def __init__(self, tmp_path, **settings) -> None:
        self.gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2, seed=5)
        self.step = HeldStep(self.gan)
        self.original = copy.deepcopy(self.gan.generator.state_dict())
        self.channel = FrameChannel.create(16, 16, slots=128)
        self.settings = WalkSettings(3600.0, 0.7, 0, epoch=time.time())
        self.drawer = FrameDrawer(self.channel.name, WALK, RenderConfig(), self.settings)
        self.engine = Engine(self.gan, EngineConfig(device="cpu", snapshot_every=2, **settings), tmp_path,
                             drawer=self.drawer)
        self.commands, self.states = queue.SimpleQueue(), []
        self.thread = threading.Thread(target=self.engine.run, kwargs={"receive": self.receive,
                                                                       "publish": self.states.append})
        self.thread.start()

    def receive(self, timeout):
        try:
            return [self.commands.get(timeout=timeout)]
        except queue.Empty:
            return []

    def wait(self, predicate, what: str):
        deadline = time.monotonic() + 60
        while not (found := predicate()):
            assert time.monotonic() < deadline, f"no {what}"
            time.sleep(0.005)
        return found

    def frame_of(self, generation: int):
        return self.wait(lambda: next((f for f in self.channel.read_since(0) if f.generation == generation), None),
                         f"frame of generation {generation}")

    def expected(self, weights, walk_time: float) -> np.ndarray:
        gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2, seed=5)  # the same model, these weights
        gan.generator.load_state_dict(weights)
        walks = make_walks(4, gan.latent_dim, WALK.keyframes, self.settings.period, self.settings.seed)
        return render_walk_frames(gan, walks[:1], walk_time, self.settings.truncation)

    def close(self) -> None:
        self.step.release.set()
        self.commands.put("shutdown")
        self.thread.join(60)
        self.engine.close()
        self.channel.close()


def test_a_reset_reaches_the_picture_during_the_step_in_progress_and_the_step_is_abandoned(tmp_path):
    run = Running(tmp_path)
    try:
        run.wait(lambda: run.engine.iteration >= 3, "training")
        generation = run.channel.read().generation
        run.step.hold()  # the trainer is inside a step, and stays there ...
        run.commands.put("reset")
        run.commands.put("pause")
        frame = run.frame_of(generation + 1)  # ... while the picture already shows iteration 0
        assert run.step.inside.is_set() and not run.step.release.is_set()
        assert frame.iteration == 0 and np.abs(frame.pixels.astype(int) - run.expected(run.original,
                                                                                        frame.walk_time)).max() <= 1
        run.step.release.set()
        run.wait(lambda: run.engine.paused and run.engine.iteration == 0, "the trainer following")
        time.sleep(0.3)  # frames keep coming: none of the abandoned step's weights, none of the old generation
        newer = [f for f in run.channel.read_since(frame.sequence)]
        assert newer and all(f.generation == generation + 1 and f.iteration == 0 for f in newer)
        assert any(s.iteration == 0 and s.status == "paused" for s in run.states)  # published, not skipped
    finally:
        run.close()


def test_jumps_sent_during_one_step_land_where_carrying_them_out_in_order_lands(tmp_path):
    run = Running(tmp_path)
    try:
        run.wait(lambda: run.engine.iteration >= 7, "three snapshots")
        run.commands.put("pause")
        run.wait(lambda: run.engine.paused, "the pause")
        at = run.engine.iteration
        run.commands.put("resume")
        run.step.hold()
        generation = run.channel.read().generation
        for command in ("back", "back", "rewind 2", "rewind 999"):
            run.commands.put(command)
        # the picture follows the jumps while the step is held (quick ones may share a generation)
        frame = run.wait(lambda: next((f for f in run.channel.read_since(0)
                                       if f.generation > generation and f.iteration == 2), None), "the last jump")
        run.commands.put("pause")
        run.step.release.set()
        run.wait(lambda: run.engine.paused, "the trainer following")
        jumps = [e["to"] for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())
                 if e["event"] in ("back", "rewind")]
        first = max(it for it in range(0, at, 2))  # snapshots every 2 iterations
        # the second back counted from where the first one went; a rewind ahead of the journey goes to its newest
        assert jumps == [first, first - 2, 2, 2]
        assert run.engine.iteration == 2
        assert np.abs(frame.pixels.astype(int) - run.expected(run.engine.store.load(2).generator,
                                                              frame.walk_time)).max() <= 1
    finally:
        run.close()


def test_a_drawer_that_fails_ends_the_engine_with_its_reason_rather_than_freezing_the_picture(tmp_path):
    gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2)
    channel = FrameChannel.create(8, 8, slots=8)  # a ring made for a smaller model: the frames cannot go in
    drawer = FrameDrawer(channel.name, WALK, RenderConfig(), WalkSettings(10.0, 0.7, 0, epoch=time.time()))
    engine = Engine(gan, EngineConfig(device="cpu"), tmp_path, drawer=drawer)
    try:
        with pytest.raises(EngineError, match=r"^the frame drawer failed: ValueError: frames \(1, 16, 16, 3\) uint8 "
                                              r"do not fit 4 slots of 192 bytes"):
            engine.run(receive=lambda timeout: time.sleep(timeout) or [])
    finally:
        engine.close()
        channel.close()
