"""The frame drawer: latent-walk frames drawn beside training, from copies of G of its own, into shared memory.

It runs in the engine process on a thread of its own (on a GPU, a CUDA stream of its own), so the picture moves at
the output rate whatever a training step costs. It draws with one copy of the generator ("front") while the trainer
refreshes the other ("back") after every step (`follow`: a copy of the parameters under a lock, 1.5 ms for the
embedded 64 px model on one lightly loaded CPU thread); the drawer swaps the two between batches. A rewind, reset or
back changes the weights at once (`jump`, called from the engine's command thread with a snapshot's weights held in
memory), long before the trainer has finished the step in progress: each jump is a ticket, and the trainer's
refreshes count again only once it has carried out the newest ticket, so the weights of the step it abandons never
reach the picture.

Frames are drawn *ahead*: each for a moment `show_at` (wall clock) up to `lead` seconds in the future, 1 / max_fps
apart (further apart while drawing cannot keep up), and carries that moment, the iteration of the weights that drew
it and their generation; the display plays them at their time (live/motion.py). `lead` is 1.5 times the longest
recent training step (a step can hold the device: a GPU runs its kernels in between) plus two frames, at most
MAX_LEAD and what the ring holds for the view shown: no further, as frames drawn ahead show the weights they were
drawn with (after a resume, the picture would follow training only once they have played out). A jump, and a jump
the trainer makes itself (a rollback), starts a new generation: the batch in progress is dropped, drawing starts
again at the present with a single frame, and the display drops what it holds of the old generation. Batches are as
large as the frames missing, MAX_BATCH_IMAGES and BATCH_SECONDS allow, so a jump waits at most about that long.

Time: while training runs flat out the drawer spends at most `[render] share` of its time drawing; it gets the time
training leaves (a paced journey, a pause, a speed limit): its share rises to 1 - the trainer's, so where drawing is
the limit (a large model on a CPU) the picture gets more frames a second. `configure(settings)` (the engine's
`render` command) changes what it draws; a new seed or truncation is glided to over GLIDE_SECONDS.

On the CPU the trainer and the drawer each use torch's intra-op threads (`[engine] threads`, one on two cores), so
the two run side by side on two cores; OpenMP's waiting threads sleep (OMP_WAIT_POLICY), so the drawer's short bursts
cost the trainer little on larger machines.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import traceback
from collections import deque
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..frames import FrameChannel
from ..messages import first_line
from ..models import GAN
from ..models.gan import build_generator
from ..validation import check_period, check_seed, check_truncation
from ..walks import draw_walks, make_walks, render_walk_frames, slerp
from .config import RenderConfig, WalkConfig

GLIDE_SECONDS = 1.5  # a new truncation or walk seed is reached over this long, so the picture never jumps
MAX_LEAD = 4.0  # seconds: frames are drawn at most this far ahead of the time they are shown
MAX_SPACING = 0.5  # seconds between the moments of two frames, at the most
# Frames drawn ahead go through the generator together, up to this many images a call: per image a batch of 4 takes
# 0.6-0.8 of the time of one alone at 64 px on a 2-core CPU (benchmarks/bench_models.py), larger ones a little less.
MAX_BATCH_IMAGES = 8
BATCH_SECONDS = 0.05  # a generator call draws about this long at the most: a jump waits for the call in progress
DUTY_WINDOW = 5.0  # seconds over which the trainer's share of the time is measured
IDLE_WAIT = 0.1  # seconds between looks while there is nothing to draw (jumps and new settings wake it at once)


@dataclass(frozen=True)
class WalkSettings:
    """What the display asks the drawer to draw; the display owns it and sends every change as a `render` command.

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


class FrameDrawer:
    """Draws the walk into the frame channel from copies of G, beside the trainer; see the module docstring.

    Built in the display process and pickled into the engine process (only its settings travel); there the engine
    calls `start` once its weights are in place, `follow` after every step, `jump` for a rewind, reset or back,
    `configure` for the `render` command and `close` at the end. A drawer that fails sets `failure` (one line), which
    the engine reports as its crash."""

    def __init__(self, channel_name: str, walk: WalkConfig, render: RenderConfig, settings: WalkSettings) -> None:
        self.channel_name, self.walk, self.render, self.settings = channel_name, walk, render, settings
        self.failure: str | None = None
        self._lock = threading.Lock()  # the weights waiting, the tickets, the settings and the walks
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._channel: FrameChannel | None = None
        self._front: GAN | None = None  # drawn with, by the drawer's thread only
        self._back: GAN | None = None  # the trainer's newest weights are copied here
        self._stream: Any = None
        self._copied: Any = None  # CUDA: the event after the trainer's copy into back
        self._ticket = 0  # jumps announced; the trainer's refreshes count while it has carried out all of them
        self._jump: tuple[dict[str, Tensor], int] | None = None  # weights and iteration waiting to be drawn with
        self._staged: tuple[int, bool] | None = None  # back holds the trainer's weights: (iteration, after a jump)
        self._changes = 0  # jumps and new settings so far: a batch drawn across one is stale
        self._seen_changes = 0  # ... those the frames drawn ahead already follow
        self.generation = 0  # of the weights drawn with; a jump makes a new one
        self.iteration = 0  # ... their training iteration
        self._steps: deque[tuple[float, float]] = deque(maxlen=32)  # (ended, seconds) of the trainer's steps
        self._walks: list = []
        self._previous_walks: list = []  # the walks of the seed before, while gliding away from them
        self._glide_from: tuple[float, float] | None = None  # (truncation, when) of the glide in progress
        self._seed_changed = 0.0
        self._latent_dim = 0
        self._frontier = 0.0  # show_at of the newest frame drawn; 0 = start again at the present
        self._spacing = 1 / render.max_fps  # between the moments of consecutive frames
        self._frame_cost = 0.0  # seconds per frame in the last batch drawn
        self._rest_until = 0.0  # monotonic: the drawer rests until then, leaving the device to training

    def __getstate__(self) -> dict[str, Any]:
        keep = ("channel_name", "walk", "render", "settings")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    # -------------------------------------------------------------------------------------- the engine's side
    def start(self, gan: GAN, iteration: int, ticket: int = 0) -> None:
        """In the engine process, once the weights are in place: the copies of G and the drawing thread. The first
        generation continues above the channel's newest, so the display drops what a dead engine drew ahead."""
        self._channel = FrameChannel.attach(self.channel_name)
        self.generation, self.iteration = self._channel.generation + 1, iteration
        with self._lock:  # jumps made before it started are in `gan` already
            self._ticket, self._jump, self._staged = ticket, None, None
        self._front, self._back = _copy(gan), _copy(gan)
        self._latent_dim = gan.latent_dim
        self._walks = self._make_walks(self.settings.seed)
        if gan.device.type == "cuda":
            self._stream = torch.cuda.Stream(gan.device, priority=-1)  # frames before training kernels
        self._thread = threading.Thread(target=self._run, name="frame-drawer", daemon=True)
        self._thread.start()

    def follow(self, generator: nn.Module, iteration: int, ticket: int, seconds: float = 0.0,
               jumped: bool = False) -> None:
        """The trainer's weights after a step (that took `seconds`) or a jump of its own (`jumped`), copied for the
        drawer; ignored while a jump announced with a newer ticket than `ticket` is not carried out yet."""
        with self._lock:
            if seconds:
                self._steps.append((time.monotonic(), seconds))
            if ticket != self._ticket or self._back is None:
                return
            with torch.no_grad():
                for mine, theirs in zip(_tensors(self._back.generator), _tensors(generator)):
                    mine.copy_(theirs, non_blocking=True)
            if self._stream is not None:
                self._copied = torch.cuda.Event()
                self._copied.record()
            self._jump, self._staged = None, (iteration, jumped)
            self._changes += jumped
        self._wake.set()

    def jump(self, weights: dict[str, Tensor], iteration: int) -> int:
        """Draw with `weights` (a snapshot's state_dict, left unchanged) from now on; returns the jump's ticket."""
        with self._lock:
            self._ticket += 1
            self._jump, self._staged = (weights, iteration), None
            self._changes += 1
            ticket = self._ticket
        self._wake.set()
        return ticket

    def configure(self, settings: Any) -> None:
        """The `render` command: new walk settings (validated by WalkSettings itself)."""
        if not isinstance(settings, WalkSettings):
            raise ValueError(f"render takes walk settings, got {settings!r}")
        with self._lock:
            now = time.monotonic()
            if settings.truncation != self.settings.truncation:
                self._glide_from = (self._truncation(now), now)  # from wherever a glide in progress has got to
            old, self.settings = self.settings, settings
            if settings.seed != old.seed and self._walks:
                self._previous_walks, self._seed_changed = self._walks, now
                self._walks = self._make_walks(settings.seed)
            for walk in (*self._walks, *self._previous_walks):
                walk.period = settings.period
            self._changes += 1
        self._wake.set()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._channel is not None:
            self._channel.close()

    # ------------------------------------------------------------------------------------------------ drawing
    def _make_walks(self, seed: int) -> list:
        return make_walks(self.walk.grid**2, self._latent_dim, self.walk.keyframes, self.settings.period, seed)

    def _truncation(self, now: float) -> float:
        if self._glide_from is None:
            return self.settings.truncation
        start, when = self._glide_from  # kept after the glide ends: frames for earlier moments may still be drawn
        f = min(max((now - when) / GLIDE_SECONDS, 0.0), 1.0)
        return start + (self.settings.truncation - start) * _ease(f)

    @torch.no_grad()
    def draw(self, gan: GAN, walk_times: Sequence[float], moments: Sequence[float]) -> np.ndarray:
        """Frames (len(walk_times), shown walks, R, R, 3) at `walk_times` (seconds), in one generator call; each is
        shown at its moment (monotonic clock), which sets how far a glide from the previous seed has got."""
        with self._lock:  # the walks and glides as they are now; the generator runs without the lock
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

    def _run(self) -> None:
        try:
            with torch.cuda.stream(self._stream) if self._stream is not None else nullcontext():
                while self._pass():
                    pass
        except Exception as error:  # the engine reports it as its crash, and the supervisor restarts it
            traceback.print_exc()
            self.failure = f"the frame drawer failed: {type(error).__name__}: {first_line(error)}"

    def _pass(self) -> bool:
        """Take new weights, then draw one batch or wait; False once closed."""
        self._wake.clear()
        with self._lock:
            if self._stopping:
                return False
            changes, jump, staged, steps = self._changes, self._jump, self._staged, list(self._steps)
            self._jump = self._staged = None
            if staged is not None:
                self._front, self._back = self._back, self._front
                if self._copied is not None:
                    self._stream.wait_event(self._copied)
            settings = self.settings
        if jump is not None:
            weights, self.iteration = jump
            self._front.generator.load_state_dict(weights)  # the front copy is this thread's alone
        elif staged is not None:
            self.iteration = staged[0]
        if jump is not None or (staged is not None and staged[1]):
            self.generation += 1
        if changes != self._seen_changes:  # the frames drawn ahead show the old weights or walk: draw from now
            self._seen_changes, self._frontier = changes, 0.0
        count = settings.walks_drawn(self.walk.grid)
        now, mono = time.time(), time.monotonic()
        lead = self._lead(count, steps)
        restart = self._frontier == 0.0  # one frame at the present first: the picture changes as soon as it can
        if not restart:
            # further apart when drawing cannot keep up with max_fps in its share of the time (the display blends
            # between them), closer again when it can: the frames stay ahead of the present either way
            behind = self._frontier < now + lead / 2
            self._spacing = min(max(self._spacing * (1.1 if behind else 0.97), 1 / self.render.max_fps), MAX_SPACING)
        if not restart and (self._frontier >= now + lead or mono < self._rest_until):
            wait = self._rest_until - mono if mono < self._rest_until else self._frontier - lead - now
            self._wake.wait(min(max(wait, 0.001), IDLE_WAIT))
            return True
        first = now if restart else max(self._frontier + self._spacing, now)
        missing = math.ceil((now + lead - first) / self._spacing)
        affordable = int(BATCH_SECONDS / self._frame_cost) if self._frame_cost > 0 else 1
        batch = 1 if restart else max(1, min(missing, affordable, MAX_BATCH_IMAGES // count))
        show_at = [first + k * self._spacing for k in range(batch)]
        frames = self.draw(self._front, [moment - settings.epoch for moment in show_at],
                           [mono + moment - now for moment in show_at])
        cost = time.monotonic() - mono
        self._frame_cost = cost / batch
        self._rest_until = time.monotonic() + cost * (1 / self._share(steps) - 1)
        with self._lock:
            if self._changes != changes:
                return True  # a jump or new settings came while drawing: these frames are stale
        for moment, frame in zip(show_at, frames):
            self._channel.publish(frame, iteration=self.iteration, walk_time=moment - settings.epoch, show_at=moment,
                                  generation=self.generation)
        self._frontier = show_at[-1]
        return True

    def _lead(self, count: int, steps: list[tuple[float, float]]) -> float:
        """How far ahead to draw: 1.5 recent steps and two frames, within MAX_LEAD and what the ring holds."""
        recent = [seconds for ended, seconds in steps if ended > time.monotonic() - DUTY_WINDOW]
        ahead = self._channel.capacity(count) - 2  # publishes: one is being read, one written
        return min(1.5 * max(recent, default=0.0) + 2 * self._spacing, MAX_LEAD, max(ahead, 0) * self._spacing)

    def _share(self, steps: list[tuple[float, float]]) -> float:
        """The most of its time the drawer may draw: `share`, or all that training leaves."""
        return max(self.render.share, 1.0 - _training(steps))


def _training(steps: list[tuple[float, float]]) -> float:
    """The trainer's share of the last DUTY_WINDOW seconds, from its (ended, seconds) steps."""
    now = time.monotonic()
    return min(sum(seconds for ended, seconds in steps if ended > now - DUTY_WINDOW) / DUTY_WINDOW, 1.0)


def _copy(gan: GAN) -> GAN:
    """The generator alone, built anew and loaded for drawing (a deep copy would also copy what a training step left
    in its modules): no discriminator, no gradients."""
    generator = build_generator(gan.arch, gan.g_config).to(gan.device).train(gan.generator.training)
    generator.load_state_dict(gan.generator.state_dict())
    return dataclasses.replace(gan, generator=generator.requires_grad_(False), discriminator=None,
                               mean_latent=gan.mean_latent.clone())


def _tensors(module: nn.Module) -> list[Tensor]:
    """Parameters and buffers in state_dict order (the same for two copies of one network)."""
    return list(module.state_dict(keep_vars=True).values())


def poster(gan: GAN, walk: WalkConfig, grid: bool, precision: str) -> Any:
    """The first picture, drawn where the model is already loaded (the display process, before the engine is up):
    what the drawer draws at walk time 0."""
    walks = make_walks(walk.grid**2, gan.latent_dim, walk.keyframes, walk.period, walk.seed)
    return render_walk_frames(gan, walks[:walk.grid**2 if grid else 1], 0.0, walk.truncation, precision)


def _ease(f: float) -> float:
    return f * f * (3 - 2 * f)  # smoothstep: no sudden start or stop of a glide
