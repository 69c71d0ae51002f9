"""The engine side of the live installation: walk frames drawn between training steps, into shared memory."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..frames import FrameChannel
from ..engine.config import RenderConfig, WalkConfig
from ..validation import check_period, check_seed, check_truncation
from ..walks import draw_walks, make_walks, render_walk_frames, slerp

GLIDE_SECONDS = 1.5  # a new truncation or walk seed is reached over this long, so the picture never jumps
MAX_LEAD = 4.0  # seconds: frames are drawn at most this far ahead of the time they are shown
MAX_SPACING = 0.5  # seconds between the moments of two frames, at the most
# Frames drawn ahead go through the generator together, up to this many images a call: per image a batch of 4 takes
# 0.6-0.8 of the time of one alone at 64 px on a 2-core CPU (benchmarks/bench_models.py), larger ones a little less.
MAX_BATCH_IMAGES = 8


@dataclass(frozen=True)
class WalkSettings:
    """What the display asks the renderer to draw; the display owns it and sends every change as a `render` command.

    Walk time is `time.time() - epoch`, so the walk continues where it was across engine restarts."""

    period: float
    truncation: float
    seed: int
    epoch: float
    grid: bool = False  # the N x N population view instead of one walk
    population: bool = False  # draw every walk of the grid even while one is shown (other windows show others)

    def __post_init__(self) -> None:
        check_period(self.period)
        check_truncation(self.truncation)
        check_seed(self.seed)

    @classmethod
    def start(cls, walk: WalkConfig, grid: bool, population: bool = False) -> WalkSettings:
        return cls(walk.period, walk.truncation, walk.seed, time.time(), grid, population)

    def with_period(self, period: float, now: float | None = None) -> WalkSettings:
        """Another loop length at the same point of the loop: the walk slows down or speeds up without a jump."""
        now = time.time() if now is None else now
        return dataclasses.replace(self, period=period, epoch=now - (now - self.epoch) * period / self.period)

    def replace(self, **changes: Any) -> WalkSettings:
        return dataclasses.replace(self, **changes)

    def walks_drawn(self, grid: int) -> int:
        """How many walks each frame holds: the N x N population (`grid` = N) or the one walk."""
        return grid**2 if self.grid or self.population else 1


class FrameRenderer:
    """The engine's between-steps hook: draws walk frames with the current weights into the frame channel.

    Frames are drawn *ahead*: each is drawn for a moment `show_at` (wall clock) up to `lead` seconds in the future,
    1 / max_fps apart (further apart while drawing cannot keep up), and carries that moment, so the display can play
    them at their time while the engine is busy with a training step and no frame arrives (live/motion.py). `lead`
    is 1.5 times the longest of the recent training steps, plus two frames, at most MAX_LEAD and what the frame
    channel holds. The frames still missing are drawn in batches (MAX_BATCH_IMAGES), as many as the time left allows
    at the last measured cost. Drawing gets about `share` of the engine's time (measured against the training step
    before) and stops once the frames reach `lead` ahead; while training is paused it keeps two frames ahead. After
    the weights jump (rewind, reset, rollback) or the walk changes, the frames drawn ahead are stale: drawing starts
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
        self._frame_cost = 0.0  # seconds per frame in the last batch drawn
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
    def draw(self, gan: Any, walk_times: Sequence[float], moments: Sequence[float]) -> np.ndarray:
        """Frames (len(walk_times), shown walks, R, R, 3) at `walk_times` (seconds), in one generator call; each is
        shown at its moment (monotonic clock), which sets how far a glide from the previous seed has got."""
        count = self.settings.walks_drawn(self.walk.grid)
        walks = self._walks[:count]
        # rows frame by frame, the shown walks within each frame
        z = torch.stack([walk.batch_z(walk_times) for walk in walks], 1).flatten(0, 1)
        if self._previous_walks:
            f = torch.tensor([_ease(min(max((now - self._seed_changed) / GLIDE_SECONDS, 0.0), 1.0))
                              for now in moments]).repeat_interleave(count)[:, None]
            old = torch.stack([walk.batch_z(walk_times) for walk in self._previous_walks[:count]], 1).flatten(0, 1)
            z = slerp(old, z, f)
            if time.monotonic() > self._seed_changed + GLIDE_SECONDS + MAX_LEAD:
                self._previous_walks = []  # no frame for a moment inside the glide can be drawn any more
        truncations = [self._truncation(now) for now in moments]
        # one number while no truncation glide is under way, else one per row
        truncation = truncations[0] if len(set(truncations)) == 1 else torch.tensor(
            truncations, device=gan.device).repeat_interleave(count)[:, None]
        frames = draw_walks(gan, walks * len(walk_times), z, truncation, self.render.precision)
        return frames.reshape(len(walk_times), count, *frames.shape[1:])

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
            first = max(self._frontier + self._spacing, now)
            batch = self._batch(math.ceil((now + lead - first) / self._spacing),
                                budget - (time.monotonic() - entered), self.settings.walks_drawn(self.walk.grid))
            show_at = [first + k * self._spacing for k in range(batch)]
            started = time.monotonic()
            frames = self.draw(gan, [moment - self.settings.epoch for moment in show_at],
                               [started + moment - now for moment in show_at])
            self._frame_cost = (time.monotonic() - started) / batch
            for moment, frame in zip(show_at, frames):
                self._channel.publish(frame, iteration=engine.iteration, walk_time=moment - self.settings.epoch,
                                      show_at=moment)
            self._frontier = show_at[-1]
            if time.monotonic() - entered >= budget:
                break  # this hook's share of the time is spent: train
        self._last_exit = time.monotonic()

    def _batch(self, missing: int, time_left: float, walks: int) -> int:
        """How many frames the next generator call draws: those `missing` to reach the lead, as many as fit in
        `time_left` at the last cost per frame and in MAX_BATCH_IMAGES images; one at least."""
        affordable = int(time_left / self._frame_cost) if self._frame_cost > 0 else 1
        return max(1, min(missing, affordable, MAX_BATCH_IMAGES // walks))


def poster(gan: Any, walk: WalkConfig, grid: bool, precision: str) -> Any:
    """The first picture, drawn where the model is already loaded (the display process, before the engine is up):
    what the renderer draws at walk time 0."""
    walks = make_walks(walk.grid**2, gan.latent_dim, walk.keyframes, walk.period, walk.seed)
    return render_walk_frames(gan, walks[:walk.grid**2 if grid else 1], 0.0, walk.truncation, precision)


def _ease(f: float) -> float:
    return f * f * (3 - 2 * f)  # smoothstep: no sudden start or stop of a glide
