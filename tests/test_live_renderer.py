"""The engine-side renderer: walk changes that never jump, and settings that arrive as the engine's render command."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from installation.engine import Engine, EngineConfig
from installation.engine.commands import CommandError
from installation.frames import FrameChannel
from installation.live.renderer import GLIDE_SECONDS, FrameRenderer, WalkSettings
from installation.models import create_stylegan1
from installation.engine.config import RenderConfig, WalkConfig
from installation.validation import ConfigError
from installation.walks import make_walks, render_walk_frames

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
    renderer = FrameRenderer("unused", WALK, RenderConfig(), WalkSettings(10.0, 0.7, 0, epoch=0.0))
    renderer._latent_dim = gan.latent_dim
    renderer._walks = renderer._make_walks(0)
    before = renderer.draw(gan, [2.0], [100.0])[0].astype(float)
    renderer.configure(renderer.settings.replace(seed=5, truncation=1.0))
    # the changes are timed from the monotonic clock at configure(); draw at the start and past the glide
    start = renderer._seed_changed
    at_start = renderer.draw(gan, [2.0], [start])[0].astype(float)
    assert np.abs(at_start - before).max() <= 1.0  # no jump at the moment of the change
    middle = renderer.draw(gan, [2.0], [start + GLIDE_SECONDS / 2])[0].astype(float)
    after = renderer.draw(gan, [2.0], [start + GLIDE_SECONDS])[0].astype(float)
    assert np.abs(after - before).mean() > 5.0  # another walk and truncation once the glide is over
    assert 0 < np.abs(middle - before).mean() < np.abs(after - before).mean()
    fresh = FrameRenderer("unused", WALK, RenderConfig(), WalkSettings(10.0, 1.0, 5, epoch=0.0))
    fresh._latent_dim = gan.latent_dim
    fresh._walks = fresh._make_walks(5)
    assert np.array_equal(after, fresh.draw(gan, [2.0], [0.0])[0].astype(float))  # it arrives exactly there


def test_render_settings_go_through_the_engines_command_and_bad_ones_are_refused(tmp_path):
    gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2)
    renderer = FrameRenderer("unused", WALK, RenderConfig(), WalkSettings(10.0, 0.7, 0, epoch=0.0))
    engine = Engine(gan, EngineConfig(device="cpu"), tmp_path, between_steps=renderer)
    engine.apply(("render", renderer.settings.replace(grid=True)))
    assert renderer.settings.grid
    with pytest.raises(CommandError, match="render takes walk settings"):
        engine.apply(("render", {"grid": True}))
    engine.close()
    plain = Engine(gan, EngineConfig(device="cpu"), tmp_path / "plain")
    with pytest.raises(CommandError, match="nothing draws frames"):
        plain.apply(("render", renderer.settings))
    plain.close()


def test_frames_drawn_together_are_the_frames_drawn_one_by_one_through_glides():
    gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2, seed=4)
    renderer = FrameRenderer("unused", WALK, RenderConfig(), WalkSettings(10.0, 0.7, 0, epoch=0.0))
    renderer._latent_dim = gan.latent_dim
    renderer._walks = renderer._make_walks(0)
    renderer.configure(renderer.settings.replace(seed=5, truncation=1.0))  # both glides under way
    start = renderer._seed_changed
    times, moments = [2.0, 2.4, 2.8, 3.2], [start, start + 0.5, start + 1.0, start + 2.0]
    for grid in (False, True):
        renderer.configure(renderer.settings.replace(grid=grid))
        together = renderer.draw(gan, times, moments).astype(int)
        assert together.shape == (4, 4 if grid else 1, 16, 16, 3)
        for k, (walk_time, now) in enumerate(zip(times, moments)):
            alone = renderer.draw(gan, [walk_time], [now])[0]
            assert np.abs(together[k] - alone).max() <= 1  # float noise of another batch size, at most
        assert np.abs(together[0] - together[1]).mean() > 1.0  # each frame at its own time and glide


def test_the_hook_draws_the_frames_ahead_in_batches_each_at_its_moment(tmp_path):
    gan = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2, seed=2)
    channel = FrameChannel.create(16, 16, slots=96)
    settings = WalkSettings(10.0, 0.7, 0, epoch=time.time() - 3.0)
    renderer = FrameRenderer(channel.name, WALK, RenderConfig(), settings)
    engine = Engine(gan, EngineConfig(device="cpu"), tmp_path, between_steps=renderer)
    calls, weights = [], {}
    gan.generator.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    try:
        for _ in range(4):  # the first call has no step measured yet: one frame, to have a first picture
            weights[engine.iteration] = copy.deepcopy(gan.generator.state_dict())
            renderer(engine)
            engine.step()
        frames = channel.read_since(0)
    finally:
        engine.close()
        channel.close()
    drawn = calls.count(False)
    assert len(frames) > drawn >= 2  # frames went through the generator together
    assert max(len(f.pixels) for f in frames) == 1  # one frame of the batch per slot
    show_at = [f.show_at for f in frames]
    assert all(b > a for a, b in zip(show_at, show_at[1:]))  # ahead, in order, each at a moment of its own
    walks = make_walks(4, gan.latent_dim, WALK.keyframes, settings.period, settings.seed)
    for f in frames:  # each is the frame of its moment, drawn with the weights of its iteration
        assert f.walk_time == pytest.approx(f.show_at - settings.epoch)
        gan.generator.load_state_dict(weights[f.iteration])
        expected = render_walk_frames(gan, walks[:1], f.walk_time, settings.truncation)
        assert np.abs(f.pixels.astype(int) - expected).max() <= 1
