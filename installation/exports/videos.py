"""Offline videos of a journey: the frame-exact seamless loop of one snapshot, and the journey film.

Both are driven by frame index, never by a clock: frame k shows the walk at t = k / fps, drawn with each walk's fixed
noise (walks.render_walk_frames, the live renderer's own drawing) and put on screen offscreen (EGL) by the same
Presenter and shaders as the window, cutting from frame to frame (no crossfade: each frame is its own moment).

- Loop: frozen weights, S * fps frames at t = k / (S * fps) of one period of a walk whose period is S (end point
  excluded, walks.loop_times), so frame S * fps would be frame 0 again and a player repeats it without a seam.
  H.264's keyframe interval divides the frame count, so every wrap starts on a keyframe.
- Film: iteration 0 to the newest snapshot in S * fps frames; the generator weights move linearly from snapshot to
  snapshot (iteration proportional to film time), so the change is continuous rather than stepwise; the walk's
  period is the film's length, a slow walk that ends where it began.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import numpy as np
import torch

from ..display.offscreen import OffscreenError, open_offscreen
from ..display.presenter import Presenter
from ..display.config import DisplayConfig
from ..engine.config import RenderConfig, WalkConfig
from ..engine.snapshots import FILE_NAME, SnapshotStore
from ..models import GAN
from ..signals import StopSignals
from ..walks import loop_times, make_walks, render_walk_frames
from ..recording import CODECS, KEYFRAME_SECONDS, EncoderError, VideoEncoder, partial_path


class Look(Protocol):
    """What an export draws and how: a preset's [walk], [display] (size, fps, mode, letterbox) and [render] tables."""

    walk: WalkConfig
    display: DisplayConfig
    render: RenderConfig


class ExportError(Exception):
    """The export cannot be made as asked (no such run folder, no snapshot, a size the codec refuses); one line."""


class ExportStopped(Exception):
    """A stop signal ended the export early; the frames so far were finalised into a playable file. One line."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    frames: int
    fps: float
    seconds: float  # wall time the export took
    wrap_step: float  # mean absolute change (0..255) from the last frame to the first
    median_step: float  # median of the mean absolute changes between consecutive frames
    max_step: float

    @property
    def seam_ratio(self) -> float:
        return self.wrap_step / self.median_step if self.median_step > 0 else math.inf if self.wrap_step else 1.0


def snapshot_files(run_dir: Path) -> dict[int, Path]:
    """iteration -> snapshots/itNNNNNNNN.pt of a run folder; ExportError when there is none."""
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: no such run folder; give the folder the installation ran with (--run-dir) "
                          "or a journey's --out folder")
    files = {int(m.group(1)): path for path in (run_dir / "snapshots").glob("it*.pt")
             if (m := FILE_NAME.fullmatch(path.name))}
    if not files:
        raise ExportError(f"{run_dir}: holds no snapshots (snapshots/itNNNNNNNN.pt); run the installation or "
                          f"`journey --out {run_dir}` on it first")
    return files


def snapshot_at_or_before(run_dir: Path, iteration: int | None) -> tuple[int, Path]:
    """The newest snapshot at or before `iteration` (None: the newest of all)."""
    files = snapshot_files(run_dir)
    fitting = [it for it in files if iteration is None or it <= iteration]
    if not fitting:
        raise ExportError(f"{run_dir}: no snapshot at or before iteration {iteration} (the first is at "
                          f"{min(files)}); choose --iteration {min(files)} or later")
    return max(fitting), files[max(fitting)]


def check_output(out: Path, codec: str, width: int, height: int) -> None:
    """Refuse, before any rendering, an output the codec cannot write or a file that would be overwritten."""
    suffix = CODECS[codec].suffix
    if out.suffix.lower() != suffix:
        raise ExportError(f"--out {out}: {codec} writes {suffix} files; name it {out.with_suffix(suffix).name}")
    try:
        CODECS[codec].check_size(width, height)
    except EncoderError as error:
        raise ExportError(f"--{error}") from None
    if out.exists():
        raise ExportError(f"--out {out}: the file exists; choose another name or remove it")
    partial = partial_path(out)  # an empty one is the name claimed for this export (recording.claim_partial)
    if partial.exists() and partial.stat().st_size > 0:
        raise ExportError(f"--out {out}: {partial.name} is being written (another export); choose another name")
    if not out.parent.is_dir():
        raise ExportError(f"--out {out}: no folder {out.parent}; create it first")


def keyframe_interval(frames: int, fps: float) -> int:
    """The divisor of `frames` nearest KEYFRAME_SECONDS (at least half a second where one exists), so that the
    keyframes fall on the loop's start at every wrap."""
    divisors = [d for d in range(1, frames + 1) if frames % d == 0]
    usable = [d for d in divisors if d >= fps / 2] or [frames]
    return min(usable, key=lambda d: abs(math.log(d / (KEYFRAME_SECONDS * fps))))


class Stage:
    """The screen, offscreen: generator frames (N, R, R, 3) in, the presented RGB picture (H, W, 3) out."""

    def __init__(self, preset: Look) -> None:
        display = preset.display
        try:
            self.surface = open_offscreen(display.width, display.height, "exports")
        except OffscreenError as error:
            raise ExportError(str(error)) from None
        self.presenter = Presenter(self.surface.ctx, display.width, display.height, crossfade=0,
                                   letterbox=display.letterbox, mode=display.mode)

    def show(self, frames: np.ndarray, caption: str | None = None) -> np.ndarray:
        if not self.presenter.set_grid(frames, 0.0):
            raise ExportError(f"cannot show the frames: {self.presenter.error}")
        self.presenter.set_hud(caption)
        self.presenter.render(0.0)
        return self.surface.read()

    def close(self) -> None:
        self.presenter.release()
        self.surface.release()


class Progress:
    """One stderr line: redrawn in place on a terminal, a new line per 10 % otherwise (logs, pipes)."""

    def __init__(self, label: str, total: int, stream: IO[str]) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self._last_draw, self._last_tenth = 0.0, -1

    def __call__(self, done: int) -> None:
        now, tenth = time.monotonic(), 10 * done // self.total
        if self.tty and now - self._last_draw < 0.1 and done < self.total:
            return
        if not self.tty and tenth == self._last_tenth:
            return
        self._last_draw, self._last_tenth = now, tenth
        share = done / self.total
        bar = "#" * round(20 * share) + "." * (20 - round(20 * share))
        rate = done / (now - self.start) if now > self.start else 0.0
        eta = f"{(self.total - done) / rate:.0f}s" if rate > 0 and done < self.total else "-"
        line = f"{self.label} {done:>6}/{self.total} [{bar}] {100 * share:5.1f}%  {rate:5.1f} frames/s  ETA {eta}"
        self.stream.write(("\r" + line + "\x1b[K" + ("\n" if done == self.total else "")) if self.tty else line + "\n")
        self.stream.flush()


class Steps:
    """Mean absolute change between consecutive pictures (0..255), on a subsample of at most ~1 Mpx."""

    def __init__(self) -> None:
        self.first: np.ndarray | None = None
        self.last: np.ndarray | None = None
        self.values: list[float] = []

    def add(self, picture: np.ndarray) -> None:
        stride = max(1, math.isqrt(picture.shape[0] * picture.shape[1] // 2**20))
        sample = picture[::stride, ::stride].astype(np.int16)
        if self.last is None:
            self.first = sample
        else:
            self.values.append(float(np.abs(sample - self.last).mean()))
        self.last = sample

    def report(self, path: Path, fps: float, start: float) -> ExportReport:
        wrap = float(np.abs(self.last - self.first).mean()) if self.first is not None else 0.0
        median = statistics.median(self.values) if self.values else 0.0
        return ExportReport(path, len(self.values) + 1, fps, time.monotonic() - start, wrap, median,
                            max(self.values, default=0.0))


def _encode(out: Path, preset: Look, codec: str, pictures: Iterator[np.ndarray], total: int, label: str,
            stream: IO[str], keyframes: int | None = None, stop: StopSignals | None = None,
            encoder: str = "x264") -> ExportReport:
    """Every picture into `out` (written as out.partial, renamed when complete), with progress and the steps.
    A stop signal (see signals.py) ends it between two frames, with the frames so far finalised."""
    display, start = preset.display, time.monotonic()
    steps, progress = Steps(), Progress(label, total, stream)
    video = VideoEncoder(out, display.width, display.height, display.fps, codec, keyframe_interval=keyframes,
                         encoder=encoder)
    try:
        for done, picture in enumerate(pictures, 1):
            steps.add(picture)
            video.write(picture)  # blocks while ffmpeg is behind: an export keeps every frame
            if video.failed:
                break
            progress(done)
            if stop is not None and stop.requested:
                break
    finally:
        path = video.close()
    if video.failed or path is None:
        raise EncoderError(f"the video could not be written: {video.failed or 'no frame was encoded'}"
                           + (f" (the frames so far are in {path})" if path else ""))
    if video.frames < total:
        raise ExportStopped(f"stopped by {stop.name if stop else 'a signal'} after {video.frames} of {total} "
                            f"frames; they are in {path} (not the whole {label})")
    return steps.report(path, display.fps, start)


def _walks(gan: GAN, preset: Look, grid: bool, period: float) -> list:
    walk = preset.walk
    return make_walks(walk.grid**2, gan.latent_dim, walk.keyframes, period, walk.seed)[:walk.grid**2 if grid else 1]


def export_loop(gan: GAN, preset: Look, seconds: float, codec: str, grid: bool, out: Path,
                stream: IO[str] = sys.stderr, stop: StopSignals | None = None, encoder: str = "x264") -> ExportReport:
    """The seamless loop of `gan` (frozen) as `seconds` * fps frames into `out`; see the module docstring.
    `encoder`: VideoEncoder's (H.264 on the GPU with "nvenc")."""
    times = loop_times(seconds, preset.display.fps)
    walks = _walks(gan, preset, grid, seconds)
    stage = Stage(preset)
    try:
        pictures = (stage.show(render_walk_frames(gan, walks, t, preset.walk.truncation, preset.render.precision))
                    for t in times)
        return _encode(out, preset, codec, pictures, len(times), "loop", stream,
                       keyframe_interval(len(times), preset.display.fps), stop, encoder)
    finally:
        stage.close()


def loop_picture(gan: GAN, preset: Look, seconds: float, grid: bool, t: float) -> np.ndarray:
    """One presented picture of the loop at walk time t (for checks: t = seconds must give frame 0)."""
    stage = Stage(preset)
    try:
        return stage.show(render_walk_frames(gan, _walks(gan, preset, grid, seconds), t, preset.walk.truncation,
                                             preset.render.precision))
    finally:
        stage.close()


class Journey:
    """The generator weights at any iteration between the first and the newest snapshot, linearly interpolated
    between the two snapshots around it (only those two are held in memory)."""

    def __init__(self, files: dict[int, Path]) -> None:
        self.files = files
        self.iterations = sorted(files)
        self._held: dict[int, dict[str, torch.Tensor]] = {}

    def _weights(self, iteration: int) -> dict[str, torch.Tensor]:
        if iteration not in self._held:  # playback moves forward: keep only the nearest earlier snapshot
            earlier = max((it for it in self._held if it < iteration), default=None)
            self._held = {earlier: self._held[earlier]} if earlier is not None else {}
            self._held[iteration] = SnapshotStore.read(self.files[iteration]).generator
        return self._held[iteration]

    def load_into(self, gan: GAN, iteration: float) -> None:
        later = next((it for it in self.iterations if it >= iteration), self.iterations[-1])
        earlier = max((it for it in self.iterations if it <= iteration), default=self.iterations[0])
        a = self._weights(earlier)
        b = self._weights(later) if later != earlier else a
        f = (iteration - earlier) / (later - earlier) if later != earlier else 0.0
        with torch.no_grad():
            for name, tensor in gan.generator.state_dict().items():
                if tensor.is_floating_point():
                    tensor.copy_(torch.lerp(a[name].to(tensor), b[name].to(tensor), f))
                else:
                    tensor.copy_(a[name])


def export_film(gan: GAN, journey: Journey, preset: Look, seconds: float, codec: str, grid: bool, caption: bool,
                out: Path, stream: IO[str] = sys.stderr, stop: StopSignals | None = None,
                encoder: str = "x264") -> ExportReport:
    """The journey from its first to its newest snapshot in `seconds` * fps frames; see the module docstring.
    `gan` is the first snapshot's model (its weights are overwritten frame by frame); `encoder` as export_loop's."""
    fps = preset.display.fps
    total = max(2, round(seconds * fps))
    walks = _walks(gan, preset, grid, total / fps)
    first, newest = journey.iterations[0], journey.iterations[-1]
    stage = Stage(preset)

    def pictures() -> Iterator[np.ndarray]:
        for k in range(total):
            iteration = first + (newest - first) * k / (total - 1)
            journey.load_into(gan, iteration)
            frames = render_walk_frames(gan, walks, k / fps, preset.walk.truncation, preset.render.precision)
            yield stage.show(frames, f"iteration {iteration:.0f}" if caption else None)

    try:
        return _encode(out, preset, codec, pictures(), total, "film", stream, stop=stop, encoder=encoder)
    finally:
        stage.close()
