"""The engine side of the live installation: walk frames drawn between training steps, into shared memory."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..frames import FrameChannel
from ..images import to_uint8
from ..presets import RenderConfig, WalkConfig
from ..validation import check_period, check_seed, check_truncation
from ..walks import make_walks, slerp

GLIDE_SECONDS = 1.5  # a new truncation or walk seed is reached over this long, so the picture never jumps


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

    It gives drawing about `share` of the engine's time (measured against the training step it follows) and no
    more than `max_fps` frames a second; while training is paused it just draws at `max_fps`. Waiting for the next
    frame's time counts as drawing time, unless a training step fits into the wait: then it trains first.
    `configure(settings)` (the engine's `render` command) changes what it draws; a new seed or truncation is
    glided to over GLIDE_SECONDS.
    """

    def __init__(self, channel_name: str, walk: WalkConfig, render: RenderConfig, settings: WalkSettings) -> None:
        self.channel_name, self.walk, self.render, self.settings = channel_name, walk, render, settings
        self._channel: FrameChannel | None = None
        self._walks: list = []
        self._previous_walks: list = []  # the walks of the seed before, while gliding away from them
        self._glide_from: tuple[float, float] | None = None  # (truncation, when) of the glide in progress
        self._seed_changed = 0.0
        self._last_exit = 0.0
        self._next_frame = 0.0
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
        start, when = self._glide_from
        f = min((now - when) / GLIDE_SECONDS, 1.0)
        if f >= 1.0:
            self._glide_from = None
        return start + (self.settings.truncation - start) * _ease(f)

    @torch.no_grad()
    def draw(self, gan: Any, walk_time: float, now: float) -> Any:
        """One frame per shown walk at `walk_time` (seconds), gliding from the previous seed where one is left."""
        count = self.walk.grid**2 if self.settings.grid else 1
        walks = self._walks[:count]
        z = torch.cat([walk.batch_z([walk_time]) for walk in walks])
        if self._previous_walks:
            f = min((now - self._seed_changed) / GLIDE_SECONDS, 1.0)
            old = torch.cat([walk.batch_z([walk_time]) for walk in self._previous_walks[:count]])
            z = slerp(old, z, _ease(f))
            if f >= 1.0:
                self._previous_walks = []
        noise = [torch.cat(layer) for layer in zip(*(walk.noise(gan) for walk in walks))]
        return to_uint8(gan.synthesize(gan.mapping(z.to(gan.device)), noise, self._truncation(now),
                                       self.render.precision))

    def __call__(self, engine: Any) -> None:
        gan = engine.gan
        if self._channel is None:
            self._channel = FrameChannel.attach(self.channel_name)
            self._latent_dim = gan.latent_dim
            self._walks = self._make_walks(self.settings.seed)
        entered = time.monotonic()
        trained = entered - self._last_exit if self._last_exit and not engine.paused else 0.0
        budget = trained * self.render.share / (1 - self.render.share)
        while True:
            wait = self._next_frame - time.monotonic()
            if wait > 0:
                if self._next_frame - entered > budget or wait >= trained:
                    break  # the next frame is due after this hook's share of time, or a step fits: train
                time.sleep(wait)
            start = time.monotonic()
            self._next_frame = max(self._next_frame + 1 / self.render.max_fps, start)
            walk_time = time.time() - self.settings.epoch
            frames = self.draw(gan, walk_time, start)
            self._channel.publish(frames, iteration=engine.iteration, walk_time=walk_time)
            if time.monotonic() - entered >= budget:
                break
        self._last_exit = time.monotonic()


def _ease(f: float) -> float:
    return f * f * (3 - 2 * f)  # smoothstep: no sudden start or stop of a glide
