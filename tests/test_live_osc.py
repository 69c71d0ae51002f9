"""OSC against a real running installation: the engine process training, the frames it draws, the picture on an
EGL framebuffer, and a controller talking to it over real UDP on loopback. Every address is checked by what it
does, seen from outside: feedback values, the iteration of the frames, the pixels."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from installation.control.service import ControlService
from installation.control.state import ControlState
from installation.display.offscreen import Offscreen
from installation.engine import Command, EngineConfig, EngineProcess
from installation.live.run import live_show
from installation.models import create_stylegan1, load_gan, save_gan
from installation.presets import Preset
from installation.control.config import OscConfig
from installation.display.config import DisplayConfig
from installation.engine.config import RenderConfig, WalkConfig
from installation.walks import make_walks, render_walk_frames

sys.path.insert(0, str(Path(__file__).parent))
import osc_fuzz  # noqa: E402
from osc_client import WAIT, Client  # noqa: E402

SIZE = (160, 120)
SNAPSHOT_EVERY = 5


class Live:
    """An installation ticked by the test (GL belongs to this thread), with a controller beside it."""

    def __init__(self, checkpoint: Path, run_dir: Path, ctx, allow=("127.0.0.0/8",)) -> None:
        self.preset = Preset(
            engine=EngineConfig(device="cpu", threads=1, snapshot_every=SNAPSHOT_EVERY, probe_every=5, lr=3e-3),
            walk=WalkConfig(keyframes=3, period=3600.0, grid=2),  # an hour per loop: the picture holds still
            display=DisplayConfig(width=SIZE[0], height=SIZE[1], crossfade=0.0),
            render=RenderConfig(share=0.5, max_fps=20),
            osc=OscConfig(host="127.0.0.1", port=0, state_every=0.2, allow=allow))
        self.control = ControlService(self.preset.osc)
        self.control.start()
        self.surface = Offscreen(*SIZE, ctx=ctx)
        self._show = live_show(self.preset, checkpoint, 32, run_dir, self.surface, self.control)
        self.loop = self._show.__enter__()
        self.client = Client(self.control.osc.address)
        self.run_dir, self.refreshes = run_dir, 0

    def tick(self) -> np.ndarray:
        self.surface.use()
        self.loop.tick()
        self.refreshes += 1
        return self.surface.read()

    def until(self, predicate, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; engine {self.loop.supervisor.state}"
            self.tick()
            time.sleep(0.01)

    def reply(self, address: str, where=None, timeout: float = WAIT) -> list:
        """A reply while the display keeps ticking (echoes come from state the loop publishes)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.client.expect(address, where, wait=0.02)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                self.tick()

    def frame(self):
        return self.loop.picture.channel.read()

    def close(self) -> None:
        self.client.close()
        self._show.__exit__(None, None, None)
        self.control.stop()
        self.surface.release()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), path)
    return path


@pytest.fixture
def live(checkpoint, tmp_path, egl_ctx):
    running = Live(checkpoint, tmp_path / "run", egl_ctx)
    yield running
    running.close()


def offline(gan_file: Path, settings, walk_time: float) -> np.ndarray:
    """The frame the renderer must show: the walk drawn by a generator loaded from a file."""
    gan = load_gan(gan_file)
    walks = make_walks(4, gan.latent_dim, 3, settings.period, settings.seed)
    return render_walk_frames(gan, walks[:4 if settings.grid else 1], walk_time, settings.truncation)


def matches(frame, expected: np.ndarray) -> bool:
    return frame.pixels.shape == expected.shape and np.abs(frame.pixels.astype(int) - expected).max() <= 2


def test_every_address_does_what_it_documents(live, checkpoint):
    loop, client = live.loop, live.client
    client.send("/uncanny/ping")
    assert live.reply("/uncanny/pong") == []
    live.until(lambda: loop.supervisor.state.iteration >= 2 * SNAPSHOT_EVERY + 1, "two snapshots")

    # pause / resume: the iteration stops and goes on; the walk keeps being drawn
    client.send("/uncanny/pause")
    assert live.reply("/uncanny/state/paused", lambda a: a == [1])
    held, sequence = loop.supervisor.state.iteration, loop.picture.last_sequence
    # waited for, not a fixed half second: a loaded machine may draw no frame in that time
    live.until(lambda: loop.picture.last_sequence > sequence + 2, "frames drawn while paused")
    assert loop.supervisor.state.iteration == held
    client.send("/uncanny/snapshot")
    live.until(lambda: held in loop.supervisor.state.snapshots, "the snapshot asked for")
    client.send("/uncanny/snapshots")
    assert held in live.reply("/uncanny/snapshots")

    # rewind N: the newest snapshot at or before N, and the next frames are that snapshot's generator
    client.send("/uncanny/rewind", SNAPSHOT_EVERY + 2)
    live.until(lambda: loop.supervisor.state.iteration == SNAPSHOT_EVERY, "the rewind")
    live.until(lambda: live.frame().iteration == SNAPSHOT_EVERY, "frames of the rewound weights")
    frame = live.frame()
    assert matches(frame, offline(live.run_dir / "snapshots" / f"it{SNAPSHOT_EVERY:08d}.pt",
                                  loop.stage.walk, frame.walk_time))
    # rewind without an argument: one snapshot back; reset: the unmodified model
    client.send("/uncanny/rewind")
    live.until(lambda: loop.supervisor.state.iteration == 0, "one snapshot back")
    client.send("/uncanny/resume")
    live.until(lambda: loop.supervisor.state.iteration >= 3, "training again")
    client.send("/uncanny/pause")
    client.send("/uncanny/reset")
    live.until(lambda: loop.supervisor.state.iteration == 0 and loop.supervisor.state.paused, "the reset")
    live.until(lambda: live.frame().iteration == 0 and live.frame().time > time.time() - 0.5, "fresh frames")
    frame = live.frame()
    assert matches(frame, offline(checkpoint, loop.stage.walk, frame.walk_time))

    # engine settings: applied, and echoed with the value in force
    for address, value in [("/uncanny/lr", 0.0005), ("/uncanny/loss", "softplus"), ("/uncanny/batch", 2),
                           ("/uncanny/speed", 4.0)]:
        client.send(address, value)
        echoed = live.reply(address, lambda a, v=value: a == [pytest.approx(v)] if isinstance(v, float) else a == [v])
        assert echoed
    state = loop.supervisor.state
    assert (state.lr, state.objective, state.batch, state.limit) == (0.0005, "softplus", 2, 4.0)

    # out of range: refused with an error reply, and the fader is told the value in force
    client.send("/uncanny/lr", 2.0)
    assert "lr" in live.reply("/uncanny/error")[0]

    # the walk, changed without a jump, and echoed
    before = live.tick()
    for address, value in [("/uncanny/walk/period", 20.0), ("/uncanny/walk/truncation", 0.5),
                           ("/uncanny/walk/seed", 3)]:
        client.send(address, value)
        assert live.reply(address, lambda a, v=value: a == [pytest.approx(v)])
    after = live.tick()
    assert np.abs(after.astype(int) - before.astype(int)).mean() < 20  # a glide, not a cut
    settings = loop.stage.walk
    assert (settings.period, settings.truncation, settings.seed) == (20.0, 0.5, 3)

    # the view: the population grid, the HUD
    client.send("/uncanny/view/grid", 1)
    assert live.reply("/uncanny/view/grid", lambda a: a == [1])
    live.until(lambda: len(live.frame().pixels) == 4, "the 2 x 2 grid from the engine")
    client.send("/uncanny/view/hud", 1)
    assert live.reply("/uncanny/view/hud", lambda a: a == [1]) and loop.stage.hud

    # blackout: the presented picture goes black, and comes back
    client.send("/uncanny/view/blackout", 1.0)
    assert live.reply("/uncanny/view/blackout", lambda a: a == [1.0])
    client.send("/uncanny/view/hud", 0)
    live.until(lambda: live.tick().max() == 0, "a black frame")
    client.send("/uncanny/view/blackout", 0.0, 0.5)
    live.until(lambda: live.tick().std() > 10, "the picture back")

    # the state reply carries every field
    for _ in range(5):
        live.tick()
    client.backlog.clear()  # older feedback
    while client.pending() is not None:
        pass
    client.send("/uncanny/state")
    assert live.reply("/uncanny/state/iteration") == [loop.supervisor.state.iteration]
    assert live.reply("/uncanny/state/status") == ["paused"]
    assert live.reply("/uncanny/state/collapsed") == [0]


def test_rewind_and_reset_while_training_show_the_target_at_once_and_the_feedback_says_so(live, checkpoint):
    loop, client = live.loop, live.client
    client.send("/uncanny/ping")  # now a recent sender: the feedback comes here
    live.reply("/uncanny/pong")
    live.until(lambda: loop.supervisor.state.iteration >= 2 * SNAPSHOT_EVERY + 2, "two snapshots")
    rewound = live.run_dir / "snapshots" / f"it{SNAPSHOT_EVERY:08d}.pt"
    for address, args, target, weights in [("/uncanny/rewind", (SNAPSHOT_EVERY + 2,), SNAPSHOT_EVERY, rewound),
                                           ("/uncanny/reset", (), 0, checkpoint)]:
        live.until(lambda: loop.picture.shown_iteration > target + 1, "frames of newer weights")  # still training
        sequence, generation = loop.picture.last_sequence, loop.picture.motion.generation
        # the feedback so far holds every iteration up to now, the target's too: dropped, so a reply means the jump
        # (anything still on its way is as new as the frames on screen, above the target)
        client.backlog.clear()
        while client.pending() is not None:
            pass
        client.send(address, *args)
        assert live.reply("/uncanny/state/shown_iteration", lambda a, t=target: a == [t])
        shown = loop.picture.motion.position(time.time())[1]
        assert shown.generation > generation and shown.iteration == target
        jumped = [f for f in loop.picture.channel.read_since(sequence) if f.generation > generation]
        assert jumped and all(f.iteration == target for f in jumped[:3])  # the next frames: the target's weights
        for frame in jumped[:3]:
            assert matches(frame, offline(weights, loop.stage.drawer.settings, frame.walk_time))
        assert live.reply("/uncanny/state/iteration", lambda a, t=target: a == [t])  # reported, not skipped
    live.until(lambda: loop.supervisor.state.iteration > 1, "training on from realism")


def test_the_journey_pace_is_set_live_echoed_and_bad_values_change_nothing(live):
    loop, client = live.loop, live.client
    live.until(lambda: loop.supervisor.state.status == "running", "the engine")
    client.send("/uncanny/journey/minutes", 30.0)
    assert live.reply("/uncanny/journey/minutes", lambda a: a == [30.0])
    assert loop.supervisor.state.journey_minutes == 30.0 and loop.supervisor.state.journey_iterations == 2000
    for bad, reason in [(-1.0, "journey_minutes must be a finite number >= 0"), (float("nan"), "finite number"),
                        (1e7, "<= 525600"), ("slow", "expects a number")]:
        client.send("/uncanny/journey/minutes", bad)
        assert reason in live.reply("/uncanny/error", lambda a, r=reason: r in a[0])[0]
        assert live.reply("/uncanny/journey/minutes") == [30.0]  # the fader is told the value in force
    commands = loop.supervisor.state.commands
    for _ in range(10):
        live.tick()
    assert loop.supervisor.state.journey_minutes == 30.0 and loop.supervisor.state.commands == commands


def test_ten_thousand_malformed_datagrams_during_a_live_run(live):
    loop, client = live.loop, live.client
    live.until(lambda: loop.supervisor.state.iteration >= 2, "training")
    commands, refreshes = loop.supervisor.state.commands, live.refreshes
    sequence = loop.picture.last_sequence
    sent = 0
    for datagram in osc_fuzz.datagrams(10_000, seed=7):
        client.send_raw(datagram)
        sent += 1
        if sent % 250 == 0:
            live.tick()  # the display keeps presenting through it
            time.sleep(0.005)  # let the socket's buffer drain: a flood beyond it is the kernel's to drop
    assert sent == 10_000
    # the flood can still fill the server's receive buffer for a moment, and the kernel drops what does not fit
    # (the ping too): ask again, as a controller would, until the bound
    deadline, answered = time.monotonic() + WAIT, None
    while answered is None and time.monotonic() < deadline:
        client.send("/uncanny/ping", 4242)
        try:
            answered = live.reply("/uncanny/pong", lambda a: a == [4242], timeout=0.5)
        except AssertionError:
            continue
    assert answered == [4242]
    live.until(lambda: loop.picture.last_sequence > sequence + 3, "new frames after the fuzz")
    assert live.refreshes >= refreshes + 40  # it presented all through the flood
    assert loop.supervisor.state.commands == commands  # not one of them reached the engine
    assert loop.supervisor.state.status == "running"


def test_a_sender_outside_allow_is_ignored(checkpoint, tmp_path, egl_ctx):
    closed = Live(checkpoint, tmp_path / "run", egl_ctx, allow=("10.0.0.0/8",))
    try:
        closed.until(lambda: closed.loop.supervisor.state.status == "running", "the engine")
        closed.client.send("/uncanny/pause")
        closed.client.send("/uncanny/ping")
        with pytest.raises(AssertionError, match="no /uncanny/pong"):
            closed.reply("/uncanny/pong", timeout=1.5)
        iteration = closed.loop.supervisor.state.iteration
        closed.until(lambda: closed.loop.supervisor.state.iteration > iteration + 1, "training that was not paused")
    finally:
        closed.close()


# ------------------------------------------------------------------------------------------------ real controllers
def applied(run_dir: Path, name: str) -> int:
    """Commands called `name` the engine has applied (its events.jsonl; a line being written is skipped)."""
    count = 0
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        count += event["event"] == "command" and event["command"] == name
    return count


def fresh(client: Client) -> None:
    """Forget the replies so far (none of them an error): what is expected next must come after this point."""
    assert "/uncanny/error" not in client.received()
    client.backlog.clear()


def push(live: Live, address: str, on, off, command: str | None) -> None:
    """A controller's button on `address`, pressed and let go: the engine applies `command` once; the release is
    ignored, unanswered."""
    before, released = applied(live.run_dir, command) if command else 0, live.control.osc.stats["released"]
    live.client.send_typed(address, on)
    live.client.send_typed(address, off)
    live.client.sync()
    assert live.control.osc.stats["released"] == released + 1
    if command:
        live.until(lambda: applied(live.run_dir, command) >= before + 1, f"{address} {on!r}")
        for _ in range(5):
            live.tick()
        assert applied(live.run_dir, command) == before + 1


def test_buttons_act_once_per_press_and_feedback_reports_where_each_jump_went(live):
    loop, client = live.loop, live.client
    live.until(lambda: loop.supervisor.state.iteration >= 3 * SNAPSHOT_EVERY + 1, "three snapshots")
    push(live, "/uncanny/pause", 1.0, 0.0, "pause")
    live.until(lambda: loop.supervisor.state.paused, "the pause")

    # rewind as a button: one snapshot back per press, whatever the controller sends
    for on, off in [(1.0, 0.0), (True, False), (1, 0)]:
        state = loop.supervisor.state
        target = max(it for it in state.snapshots if it < state.iteration)
        push(live, "/uncanny/rewind", on, off, "back")
        live.until(lambda t=target: loop.supervisor.state.iteration == t, f"one snapshot back, to {target}")
        assert live.reply("/uncanny/state/iteration", lambda a, t=target: a == [t])
    assert loop.supervisor.state.iteration == SNAPSHOT_EVERY

    push(live, "/uncanny/snapshot", True, False, "snapshot")
    push(live, "/uncanny/resume", 1, 0, "resume")
    live.until(lambda: loop.supervisor.state.iteration >= 4 * SNAPSHOT_EVERY + 1, "training on")

    # far ahead of the journey, while it trains: the newest snapshot, never refused, and reported although the
    # engine steps on at once
    fresh(client)
    client.send("/uncanny/rewind", 10**6)
    live.until(lambda: applied(live.run_dir, "rewind") == 1, "the rewind")
    events = [json.loads(line) for line in (live.run_dir / "events.jsonl").read_text().splitlines()[:-1]]
    (landed,) = [e["to"] for e in events if e["event"] == "rewind"]
    assert landed >= 4 * SNAPSHOT_EVERY and landed % SNAPSHOT_EVERY == 0
    assert live.reply("/uncanny/state/iteration", lambda a: a == [landed])

    # reset reports iteration 0, however soon training moves on
    fresh(client)
    push(live, "/uncanny/reset", 1.0, 0.0, "reset")
    assert live.reply("/uncanny/state/iteration", lambda a: a == [0])

    push(live, "/uncanny/toggle_pause", 1, 0, "toggle_pause")
    live.until(lambda: loop.supervisor.state.paused, "paused by the toggle")
    push(live, "/uncanny/back", True, False, "back")

    # the recorder's buttons: one recording, started and stopped once
    push(live, "/uncanny/record/start", 1.0, 0.0, None)
    live.until(lambda: loop.recorder.recording, "the recording")
    for _ in range(10):
        live.tick()
    push(live, "/uncanny/record/stop", True, False, None)
    live.until(lambda: not loop.recorder.recording, "the recording stopped")
    assert len(loop.recorder.files) == 1
    client.sync()
    assert "/uncanny/error" not in client.received()  # not one press refused


def test_five_thousand_controls_at_speed_lose_no_trigger_and_end_on_the_newest_values(live):
    loop, client = live.loop, live.client
    live.until(lambda: loop.supervisor.state.iteration >= 2, "training")
    before, presses, newest = applied(live.run_dir, "snapshot"), 0, {}
    fresh(client)
    for i in range(5000):
        if i % 50 == 0:  # a button among the faders: pressed and let go
            client.send("/uncanny/snapshot", 1.0)
            client.send("/uncanny/snapshot", 0.0)
            presses += 1
        else:
            address, value = [("/uncanny/lr", 1e-4 * (1 + i % 97)), ("/uncanny/speed", float(10 + i % 40)),
                              ("/uncanny/walk/truncation", 0.5 + (i % 50) / 100), ("/uncanny/walk/seed", i),
                              ("/uncanny/batch", 1 + i % 4)][i % 5]
            client.send(address, value)
            newest[address] = value
        if i % 100 == 99:  # the display refreshes as it would, draining the inbox once each time
            client.sync()  # paced within the socket's receive buffer: the kernel drops nothing
            live.tick()
    live.until(lambda: applied(live.run_dir, "snapshot") == before + presses, f"{presses} snapshot presses")
    state = loop.supervisor.state
    live.until(lambda: (loop.supervisor.state.lr, loop.supervisor.state.limit, loop.supervisor.state.batch) ==
               (newest["/uncanny/lr"], newest["/uncanny/speed"], newest["/uncanny/batch"]), "the newest settings")
    settings = loop.stage.walk
    assert (settings.truncation, settings.seed) == (newest["/uncanny/walk/truncation"], newest["/uncanny/walk/seed"])
    client.sync()
    assert "/uncanny/error" not in client.received()  # nothing refused, nothing lost
    assert state.status == "running" and loop.supervisor.engine.waiting == 0
    for _ in range(10):
        live.tick()
    assert applied(live.run_dir, "snapshot") == before + presses  # and none twice


def test_an_engine_refusal_reaches_the_sender_of_that_command(checkpoint, tmp_path):
    """A live loop without a renderer (the engine refuses `render`): each action goes down with its id, each state
    up with the engine's refusals, and the refusal finds its sender, not the sender of the newest action."""
    control = ControlService(OscConfig(host="127.0.0.1", port=0, state_every=0.0))
    engine = EngineProcess(checkpoint, tmp_path / "run", EngineConfig(device="cpu", threads=1))
    walker, presser = Client(control.osc.address), Client(control.osc.address)
    try:
        control.start()
        engine.start()

        def refresh() -> None:
            for action in control.inbox.drain():
                engine.send(action.engine_command() if action.spec.kind == "engine"
                            else Command("render", {"seed": action.value}, action.id))  # as a walk change goes down
            s = engine.poll()
            control.publish(ControlState(iteration=s.iteration, status=s.status, branch=s.branch, landed=s.landed,
                                         refusals=s.refusals))

        engine.wait_for(lambda s: s.status == "running")
        walker.send("/uncanny/walk/seed", 3)
        walker.sync()
        presser.send("/uncanny/snapshot", 1.0)  # the newest action, from someone else
        presser.sync()
        deadline = time.monotonic() + WAIT * 3
        while True:  # refreshes until the walker hears back
            refresh()
            try:
                (error,) = walker.expect("/uncanny/error", wait=0.02)
                break
            except AssertionError:
                assert time.monotonic() < deadline, f"no refusal; engine {engine.poll()}"
        assert error == "rejected command: render: nothing draws frames in this engine"
        refresh()
        presser.sync()
        walker.sync()
        assert "/uncanny/error" not in presser.received() + walker.received()
    finally:
        walker.close()
        presser.close()
        engine.stop()
        control.stop()
