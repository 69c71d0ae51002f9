"""The engine side of the live installation: walk frames drawn between training steps, into shared memory."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from ..frames import FrameChannel
from ..presets import RenderConfig, WalkConfig
from ..validation import check_period, check_seed, check_truncation
from ..walks import draw_walks, make_walks, render_walk_frames, slerp

GLIDE_SECONDS = 1.5  # a new truncation or walk seed is reached over this long, so the picture never jumps
MAX_LEAD = 4.0  # seconds: frames are drawn at most this far ahead of the time they are shown
MAX_SPACING = 0.5  # seconds between the moments of two frames, at the most


@dataclass(frozen=True)
class WalkSettings:
    """What the display asks the renderer to draw; the display owns it and sends every change as a `render` command.

    Walk time is `time.time() - epoch`, so the walk continues where it was across engine restarts."""

    period: float
    truncation: float
    seed: int
    epoch: float
    grid: bool = False  # the N x N population view instead of one walk

    def __post_init__(self) -> None:
        check_period(self.period)
        check_truncation(self.truncation)
        check_seed(self.seed)

    @classmethod
    def start(cls, walk: WalkConfig, grid: bool) -> WalkSettings:
        return cls(walk.period, walk.truncation, walk.seed, time.time(), grid)

    def with_period(self, period: float, now: float | None = None) -> WalkSettings:
        """Another loop length at the same point of the loop: the walk slows down or speeds up without a jump."""
        now = time.time() if now is None else now
        return dataclasses.replace(self, period=period, epoch=now - (now - self.epoch) * period / self.period)

    def replace(self, **changes: Any) -> WalkSettings:
        return dataclasses.replace(self, **changes)


class FrameRenderer:
    """The engine's between-steps hook: draws walk frames with the current weights into the frame channel.

    Frames are drawn *ahead*: each is drawn for a moment `show_at` (wall clock) up to `lead` seconds in the future,
    1 / max_fps apart (further apart while drawing cannot keep up), and carries that moment, so the display can play them at their time while the engine is busy
    with a training step and no frame arrives (live/motion.py). `lead` is 1.5 times the longest of the recent
    training steps, plus two frames, at most MAX_LEAD and what the frame channel holds. Drawing gets about `share` of the engine's time (measured against the training step before)
    and stops once the frames reach `lead` ahead; while training is paused it keeps two frames ahead. After the
    weights jump (rewind, reset, rollback) or the walk changes, the frames drawn ahead are stale: drawing starts
    again at the present, and the display drops what it had beyond. `configure(settings)` (the engine's `render`
    command) changes what it draws; a new seed or truncation is glided to over GLIDE_SECONDS.
    """

    def __init__(self, channel_name: str, walk: WalkConfig, render: RenderConfig, settings: WalkSettings) -> None:
        self.channel_name, self.walk, self.render, self.settings = channel_name, walk, render, settings
        self._channel: FrameChannel | None = None
        self._walks: list = []
        self._previous_walks: list = []  # the walks of the seed before, while gliding away from them
        self._glide_from: tuple[float, float] | None = None  # (truncation, when) of the glide in progress
        self._seed_changed = 0.0
        self._last_exit = 0.0
        self._frontier = 0.0  # show_at of the newest frame drawn
        self._spacing = 1 / render.max_fps  # between the moments of consecutive frames
        self._branch = -1  # the engine's branch the frames ahead were drawn on
        self._iteration = -1  # the engine's iteration at the last call
        self._steps: deque[float] = deque(maxlen=8)  # recent training-step times, seconds
        self._latent_dim = 0

    def __getstate__(self) -> dict[str, Any]:
        keep = ("channel_name", "walk", "render", "settings")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def configure(self, settings: Any) -> None:
        """The `render` command: new walk settings (validated by WalkSettings itself)."""
        if not isinstance(settings, WalkSettings):
            raise ValueError(f"render takes walk settings, got {settings!r}")
        now = time.monotonic()
        if settings.truncation != self.settings.truncation:
            self._glide_from = (self._truncation(now), now)  # from wherever a glide in progress has got to
        old, self.settings = self.settings, settings
        self._frontier = 0.0  # the frames drawn ahead show the old walk: draw again from now
        if settings.seed != old.seed and self._walks:
            self._previous_walks, self._seed_changed = self._walks, now
            self._walks = self._make_walks(settings.seed)
        for walk in (*self._walks, *self._previous_walks):
            walk.period = settings.period

    def _make_walks(self, seed: int) -> list:
        return make_walks(self.walk.grid**2, self._latent_dim, self.walk.keyframes, self.settings.period, seed)

    def _truncation(self, now: float) -> float:
        if self._glide_from is None:
            return self.settings.truncation
        start, when = self._glide_from  # kept after the glide ends: frames for earlier moments may still be drawn
        f = min(max((now - when) / GLIDE_SECONDS, 0.0), 1.0)
        return start + (self.settings.truncation - start) * _ease(f)

    @torch.no_grad()
    def draw(self, gan: Any, walk_time: float, now: float) -> Any:
        """One frame per shown walk at `walk_time` (seconds), gliding from the previous seed where one is left."""
        count = self.walk.grid**2 if self.settings.grid else 1
        walks = self._walks[:count]
        z = torch.cat([walk.batch_z([walk_time]) for walk in walks])
        if self._previous_walks:
            f = min(max((now - self._seed_changed) / GLIDE_SECONDS, 0.0), 1.0)
            old = torch.cat([walk.batch_z([walk_time]) for walk in self._previous_walks[:count]])
            z = slerp(old, z, _ease(f))
            if time.monotonic() > self._seed_changed + GLIDE_SECONDS + MAX_LEAD:
                self._previous_walks = []  # no frame for a moment inside the glide can be drawn any more
        return draw_walks(gan, walks, z, self._truncation(now), self.render.precision)

    def __call__(self, engine: Any) -> None:
        gan = engine.gan
        if self._channel is None:
            self._channel = FrameChannel.attach(self.channel_name)
            self._latent_dim = gan.latent_dim
            self._walks = self._make_walks(self.settings.seed)
        entered = time.monotonic()
        stepped = engine.iteration != self._iteration  # called between steps, or idle (paused, speed-limited)
        self._iteration = engine.iteration
        trained = entered - self._last_exit if self._last_exit and stepped else 0.0
        if trained:
            self._steps.append(trained)
        budget = trained * self.render.share / (1 - self.render.share)
        step = max(self._steps) if self._steps and not engine.paused else 0.0
        # ahead by 1.5 steps and two frames, as far as the channel holds frames the display has not read yet
        lead = min(1.5 * step + 2 * self._spacing, MAX_LEAD, (self._channel.slots - 2) * self._spacing)
        if engine.branch != self._branch:
            self._branch, self._frontier = engine.branch, 0.0  # new weights: what was drawn ahead is stale
        # Frames further apart when drawing cannot keep up with max_fps in its share of the time (the display
        # blends between them), closer again when it can: the frames stay ahead of the present either way.
        falling_behind = self._frontier < time.time() + lead / 2
        self._spacing = min(max(self._spacing * (1.1 if falling_behind else 0.97), 1 / self.render.max_fps),
                            MAX_SPACING)
        while self._frontier < (now := time.time()) + lead:
            show_at = max(self._frontier + self._spacing, now)
            walk_time = show_at - self.settings.epoch
            frames = self.draw(gan, walk_time, time.monotonic() + show_at - now)
            self._channel.publish(frames, iteration=engine.iteration, walk_time=walk_time, show_at=show_at)
            self._frontier = show_at
            if time.monotonic() - entered >= budget:
                break  # this hook's share of the time is spent: train
        self._last_exit = time.monotonic()


def poster(gan: Any, walk: WalkConfig, grid: bool, precision: str) -> Any:
    """The first picture, drawn where the model is already loaded (the display process, before the engine is up):
    what the renderer draws at walk time 0."""
    walks = make_walks(walk.grid**2, gan.latent_dim, walk.keyframes, walk.period, walk.seed)
    return render_walk_frames(gan, walks[:walk.grid**2 if grid else 1], 0.0, walk.truncation, precision)


def _ease(f: float) -> float:
    return f * f * (3 - 2 * f)  # smoothstep: no sudden start or stop of a glide
