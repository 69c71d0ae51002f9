"""Live recording of the presented picture, started and stopped by the performer (key v, /uncanny/record/*).

What is recorded is what the audience sees, drawn once: the presenter calls the capture with the picture drawn
and (unless [record] hud) before the HUD, and always before the red recording dot, so the dot is never in the
file. The file's frame rate is constant and follows the display clock: each refresh writes the frames due since
the last one, so a slow refresh repeats its picture and a display faster than the file has refreshes left out.
The render loop never waits on the encoder: a picture its queue cannot take at once is dropped (counted) and its
slot is filled by the next refresh's picture.

The readback is one glReadPixels on the render thread whose bytes go to ffmpeg's queue as they are: RGBA,
bottom row first (GL's own layout: 1.0 ms at 1080p on llvmpipe, where RGB took 3.5 ms and its flip 0.9 ms more;
ffmpeg flips it for free and its conversion costs the same as from RGB), or, on a GPU's GL and for a codec coded
in yuv420p (H.264), the yuv420p planes made by a GL pass (recording/yuv.py), which spares ffmpeg its conversion.
On llvmpipe that pass costs the render thread more than it saves ffmpeg (34 ms for 7), so it is not used there.
A pixel-pack buffer read and mapped took 8.3 ms on llvmpipe, in the same frame or one frame later (whichever call
first needs the pixels waits for the rasteriser; see recording-and-operations.md §3). benchmarks/bench_record.py
measures what a recording costs the display, bench_record_show.py the whole show.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import moderngl

from ..display.sinks import FittedReadback, OutputState, OutputStatus
from .config import RecordConfig
from .encoder import CODECS, EncoderError, choose_encoder
from ..messages import size_text
from .files import prune_oldest, recover_partials
from .supervised import SupervisedVideo
from .yuv import YuvPass, converts_in_gl

# Seconds of the file's clock a stall of the display may leave to fill: the frozen picture is repeated (the audience
# saw it frozen too) at the encoder's pace, a queue-full each refresh. Slots older than this are given up (dropped).
MAX_CATCH_UP = 10.0
HEADLESS_RETRY = 30.0  # seconds between tries to start the headless video again (a full disk)
SLOT_TOLERANCE = 1e-6  # of a frame: float noise in a refresh time never moves it to another slot
# x264's preset for live recordings (codecs without one ignore it). Measured on 1080p frames of the embedded
# model's grid, 2 cores: veryfast 35 ms CPU a frame (a whole core at 30 fps), ultrafast 17 ms at 4x the size
# (about 10 Mb/s at 30 fps, still crf-controlled): the show shares the cores, so speed wins.
LIVE_PRESET = "ultrafast"
# ffmpeg's CPU priority relative to the show (see README "Speed": measured with bench_record.py --nice)
LIVE_NICE = 0
RECORDED = ("recording-*", "loop-*")  # what [record] folder_gb counts: the recordings and loop exports made here
LIVE = ("live-*",)  # what [record] live_gb counts: the headless video's files


@dataclass
class RecordingCounts:
    """What became of the file's frame slots in the current (or last) recording."""

    frames: int = 0  # written into the file
    repeated: int = 0  # slots filled again with the picture just written (the refresh came late)
    dropped: int = 0  # pictures the encoder could not take at once, and slots given up after a stall


class LiveRecorder:
    """At most one recording at a time into `folder` ([record] folder, under the run folder unless absolute); a
    `Sink` of the live loop (display/sinks.py), named `name`, with the HUD if [record] hud.

    Each refresh: `capture_for(now, output)` gives the presenter its readback (or None when no frame is due).
    `say` puts a line on screen and in the log; the `failed` given to `start` also tells the one who started
    the recording (an OSC sender) why it ended early or could not begin. Files are named STEM-itN-CODEC-DATE-TIME.
    """

    def __init__(self, config: RecordConfig, run_dir: Path, ctx: moderngl.Context,
                 say: Callable[[str], None], convert_in_gl: bool | None = None, name: str = "recording",
                 stem: str = "recording") -> None:
        self.config, self.ctx, self.say, self.name, self.stem, self.hud = config, ctx, say, name, stem, config.hud
        # whether yuv420p codecs get their frames converted by the GL pass (None: where the GL is a GPU's)
        self.convert_in_gl = converts_in_gl(ctx) if convert_in_gl is None else convert_in_gl
        self.encoder, note = choose_encoder(config.encoder)  # NVENC is tried now, not at the first recording
        if note:
            say(note)
        self.folder = config.folder_in(run_dir)
        self.files: list[Path] = []  # every file finished in this run (and still there: see `kept`)
        # what stays within a budget in `folder`: its recordings and loop exports, the oldest deleted first
        self.kept, self.budget = RECORDED, config.folder_gb * 2**30
        self.counts = RecordingCounts()
        self._video: SupervisedVideo | None = None
        self._failed: Callable[[str], None] = _nobody
        self._start = 0.0
        self._slots = 0  # frame slots of the file's clock already filled (or given up)
        self._codec = CODECS[config.codec]  # the current recording's: it decides the sizes the file can take
        self._size = (0, 0)
        self._scaler: FittedReadback | None = None
        self._yuv: YuvPass | None = None  # set while recording a yuv420p codec
        for path in recover_partials(self.folder):  # the run folder is held by this installation: safe to rename
            say(f"recording cut off by a kill kept as {path}")

    @property
    def recording(self) -> bool:
        return self._video is not None

    @property
    def path(self) -> str:
        """The file being recorded, "" when none."""
        current = self._video.path if self._video is not None else None
        return str(current) if current is not None else ""

    def apply(self, name: str, codec: str | None, iteration: int, output: tuple[int, int],
              failed: Callable[[str], None]) -> None:
        """The record actions: `record_start` (codec or None), `record_stop`, `record_toggle`."""
        if name == "record_stop" or (name == "record_toggle" and self.recording):
            self.stop()
        elif self.recording:
            failed(f"already recording to {self.path}; send /uncanny/record/stop first")
        else:
            self.start(codec, iteration, output, failed)

    def start(self, codec: str | None, iteration: int | None, output: tuple[int, int],
              failed: Callable[[str], None] | None = None, now: float | None = None, quiet: bool = False) -> bool:
        """Begin a file named with the date, time, `iteration` (None: left out) and codec, its clock starting at
        `now` (the display clock, time.monotonic()); False (said unless `quiet`, and told to `failed`) when it
        cannot."""
        codec = codec or self.config.codec
        size = self.config.frame_size or output
        self._codec = CODECS[codec]  # a known name: [record] and the OSC argument both went through check_codec
        yuv = self.convert_in_gl and self._codec.pix_fmt == "yuv420p"
        size = self._codec.fit(*size)  # the encoder takes bytes of its exact size
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            stem = self.stem if iteration is None else f"{self.stem}-it{iteration}-{codec}"
            video = SupervisedVideo(self.folder, stem, *size, self.config.fps, codec,
                                    say=self.say,
                                    options={"-crf": str(self.config.quality), "-preset": LIVE_PRESET},
                                    input_format="yuv420p" if yuv else "rgba", bottom_up=not yuv,
                                    nice=LIVE_NICE, encoder=self.encoder)
        except (EncoderError, OSError) as error:
            text = f"cannot start recording in {self.folder}: {getattr(error, 'strerror', None) or error}"
            if not quiet:
                self.say(text)
            (failed or _nobody)(text)
            return False
        self._video, self._failed, self._size = video, failed or _nobody, video.size
        if self._yuv is not None and (not yuv or self._yuv.size != video.size):
            self._yuv.release()
            self._yuv = None
        if yuv and self._yuv is None:
            self._yuv = YuvPass(self.ctx, video.size)
        self._start = time.monotonic() if now is None else now
        self._slots, self.counts = 0, RecordingCounts()
        self.say(f"recording {size[0]}x{size[1]} at {self.config.fps:g} fps to {video.path}")
        return True

    def stop(self, why: str = "", now: float | None = None) -> list[Path]:
        """Finalise the recording (if any) at `now` (the display clock; default time.monotonic()); the files it
        wrote. `why` explains a stop the performer did not ask for: it is also told to whoever started it."""
        video, self._video = self._video, None
        if video is None:
            return []
        # slots over before the stop but never filled (the encoder had fallen behind); the one the stop falls in
        # is not part of the file
        open_slots = self._slots_begun(time.monotonic() if now is None else now, video.fps) - 1 - self._slots
        self.counts.dropped += max(0, open_slots)
        files = video.close()
        self.files += files
        for path in prune_oldest(self.folder, self.kept, self.budget, keep=tuple(files)):
            self.say(f"deleted the oldest {self.name} file, {path}, to keep {self.folder} within "
                     f"{size_text(self.budget)} ([record] {'live_gb' if self.kept == LIVE else 'folder_gb'})")
            if path in self.files:
                self.files.remove(path)
        self.counts.frames = video.frames
        counts = self.counts
        wrote = ", ".join(str(path) for path in files) or "no file"
        text = (f"recording stopped{f' ({why})' if why else ''}: wrote {wrote} ({counts.frames / video.fps:.1f} s, "
                f"{counts.frames} frames; {counts.repeated} repeated, {counts.dropped} dropped)")
        self.say(text)
        if why:
            self._failed(text)
        return files

    def _slots_begun(self, now: float, fps: float) -> int:
        """File frames whose moment has come by `now` (display clock), the one beginning now included. The
        tolerance keeps a refresh exactly on a frame's moment on it: `start + k / fps - start` can come out a hair
        below k / fps, which would leave the slot for the next refresh."""
        return math.floor((now - self._start) * fps + SLOT_TOLERANCE) + 1

    def capture_for(self, now: float, output: tuple[int, int]) -> Callable[[], None] | None:
        """The readback for this refresh (output: the presented width, height), or None when no frame is due."""
        video = self._video
        if video is None:
            return None
        if video.stopped is not None:  # the disk guard stopped it
            self.stop(video.stopped)
            return None
        if self.config.max_minutes and now - self._start >= self.config.max_minutes * 60:
            self.stop(f"[record] max_minutes = {self.config.max_minutes:g} reached")
            return None
        due = self._slots_begun(now, video.fps) - self._slots
        if due <= 0:
            return None
        most = max(1, round(MAX_CATCH_UP * video.fps))
        if due > most:  # a stall longer than MAX_CATCH_UP (a suspended machine): give up the oldest slots
            self.counts.dropped += due - most
            self._slots += due - most
            due = most
        return lambda: self._capture(due, output)

    def _capture(self, due: int, output: tuple[int, int]) -> None:
        video = self._video
        if video is None:
            return
        frame = self._read(output)
        for copy in range(due):
            if not video.write(frame, block=False):
                self.counts.dropped += 1  # the slot stays open: the next picture fills it
                return
            self._slots += 1
            self.counts.repeated += copy > 0

    def _read(self, output: tuple[int, int]) -> bytes:
        """The bound framebuffer's picture at the file's size (its top left where the output is a few pixels
        larger): yuv420p planes from the GL pass, or RGBA bottom row first."""
        width, height = self._size
        fitted = self._codec.fit(*output) == self._size
        if self._yuv is not None:
            return self._yuv.read_framebuffer(self.ctx.fbo) if fitted else self._scaled_yuv(output)
        if fitted:  # GL counts rows from the bottom: the top rows start at output height - height
            return self.ctx.fbo.read(viewport=(0, output[1] - height, width, height), components=4, alignment=1)
        # a chosen size, or the window changed size during the recording
        return self._scaler_for_size().read(output)

    def _scaled_yuv(self, output: tuple[int, int]) -> bytes:
        """The picture fitted into the file's size, then converted: two passes, one readback."""
        scaler = self._scaler_for_size()
        presented = self.ctx.fbo
        scaler.draw(output)
        data = self._yuv.read_texture(scaler.texture)
        presented.use()
        self.ctx.viewport = (0, 0, *output)
        return data

    def _scaler_for_size(self) -> FittedReadback:
        if self._scaler is None or self._scaler.size != self._size:
            if self._scaler is not None:
                self._scaler.release()
            self._scaler = FittedReadback(self.ctx, self._size)
        return self._scaler

    def state(self) -> OutputState:
        if self._video is None:
            return OutputState(self.name, OutputStatus.OFF)
        return OutputState(self.name, OutputStatus.ON, self.path, self._video.frames, self.counts.dropped)

    def close(self) -> None:
        """Finalise any recording and release GL (the installation is stopping)."""
        self.stop()
        for resource in (self._scaler, self._yuv):
            if resource is not None:
                resource.release()
        self._scaler = self._yuv = None


class HeadlessVideo(LiveRecorder):
    """The headless run's video (`live-DATE-TIME.mp4` in the run folder): what a screen would show, HUD included
    (`config.hud`), at its constant rate on the display clock from the first refresh to the stop, so its duration is
    the run's. Stopped by the disk guard, it tries again every HEADLESS_RETRY seconds and starts by itself once a
    try finds the space (a failed try is said once, not at every retry); a run folder that has gone is waited for,
    not made here (the engine's RunFolder makes it again, run.json first).

    For weeks on one disk it is a new file every `[record] live_segment_minutes`, each whole and playable, and its
    files stay within `live_gb`, the oldest deleted first. A new file also bounds ffmpeg: its MP4 muxer keeps every
    frame's index entry in memory until the file ends (benchmarks/bench_disk.py measures it)."""

    def __init__(self, config: RecordConfig, run_dir: Path, ctx: moderngl.Context,
                 say: Callable[[str], None]) -> None:
        super().__init__(config, run_dir, ctx, say, name="headless", stem="live")
        self.kept, self.budget = LIVE, config.live_gb * 2**30
        self._segment_frames = max(1, round(config.live_segment_minutes * 60 * config.fps))
        self._retry_at = 0.0
        self._failing = False  # a try has failed since the last file began

    def capture_for(self, now: float, output: tuple[int, int]) -> Callable[[], None] | None:
        if self._video is not None and self._video.frames >= self._segment_frames:
            self.stop(f"a new file every {self.config.live_segment_minutes:g} min", now)
            self._retry_at = now  # the next file begins with this refresh
        if not self.recording:
            if now < self._retry_at or not self.folder.is_dir():
                return None
            self._retry_at = now + HEADLESS_RETRY  # the next try, should this one fail or the disk fill again
            if not self.start(None, None, output, now=now, quiet=self._failing):
                self._failing = True
                return None
            self._failing = False
        return super().capture_for(now, output)


def _nobody(_text: str) -> None:
    """No one to tell (the recording was started by a key)."""
