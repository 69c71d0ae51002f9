"""The engine-side renderer: walk changes that never jump, and settings that arrive as the engine's render command."""

from __future__ import annotations

import numpy as np
import pytest

from installation.engine import Engine, EngineConfig
from installation.engine.commands import CommandError
from installation.live.renderer import GLIDE_SECONDS, FrameRenderer, WalkSettings
from installation.models import create_stylegan1
from installation.presets import RenderConfig, WalkConfig
from installation.validation import ConfigError

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
    before = renderer.draw(gan, 2.0, now=100.0).astype(float)
    renderer.configure(renderer.settings.replace(seed=5, truncation=1.0))
    # the changes are timed from the monotonic clock at configure(); draw at the start and past the glide
    start = renderer._seed_changed
    at_start = renderer.draw(gan, 2.0, now=start).astype(float)
    assert np.abs(at_start - before).max() <= 1.0  # no jump at the moment of the change
    middle = renderer.draw(gan, 2.0, now=start + GLIDE_SECONDS / 2).astype(float)
    after = renderer.draw(gan, 2.0, now=start + GLIDE_SECONDS).astype(float)
    assert np.abs(after - before).mean() > 5.0  # another walk and truncation once the glide is over
    assert 0 < np.abs(middle - before).mean() < np.abs(after - before).mean()
    fresh = FrameRenderer("unused", WALK, RenderConfig(), WalkSettings(10.0, 1.0, 5, epoch=0.0))
    fresh._latent_dim = gan.latent_dim
    fresh._walks = fresh._make_walks(5)
    assert np.array_equal(after, fresh.draw(gan, 2.0, now=0.0).astype(float))  # it arrives exactly there


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
