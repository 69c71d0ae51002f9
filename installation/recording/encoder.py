"""One video encoder: an ffmpeg process in its own session, fed raw frames by a writer thread.

Why not imageio-ffmpeg's `write_frames`: its generator SIGKILLs ffmpeg when a KeyboardInterrupt lands inside
`send()`, leaving an unplayable file, and it takes no Popen arguments. Here ffmpeg runs in a new session, so the
terminal's Ctrl-C and a signal to the process group never reach it: the installation stops it by closing its input.

Crash safety: the file is written as `NAME.partial` with `-movflags +hybrid_fragmented` (a fragmented file while it
grows, an ordinary one once finalised), one-second fragments and `-flush_packets 1`, so a SIGKILL or power cut loses
about the last second, for every codec (measured for H.264 MP4, ProRes and HAP MOV: a plain MP4 cut off by a kill
has no index and plays nothing). `close()` finalises it and renames it to NAME; a file whose ffmpeg failed (a disk
that filled up mid-write) is first cut after its last complete fragment, so it plays to its end. ffmpeg refuses
`+faststart` together with `+hybrid_fragmented`, so a codec with `faststart` gets its index moved to the front by a
stream copy after the clean stop (a fraction of a second per 100 MB); a file cut off by a kill keeps its index at
the end, still playable.

Sizes: each codec needs width and height to be a multiple of `Codec.multiple` (4:2:0 and 4:2:2 chroma: 2; HAP's
4x4 texture blocks: 4). ffmpeg would otherwise rescale or fail, so the encoder crops the frame to the multiple below
(at most 3 pixels), and the export commands refuse such a size up front (`Codec.check_size`), naming the sizes
that fit.

H.264 on the GPU: where ffmpeg's `h264_nvenc` opens an encoder (an NVIDIA card with NVENC and its driver; tried
once per process, `nvenc_problem`), `encoder="nvenc"` encodes H.264 there instead of with x264 on the CPU (at 4K
x264 takes about two cores at 30 fps). `choose_encoder` turns the [record] encoder setting (auto, x264, nvenc) into
the one to use, falling back to x264 with a line saying why where NVENC does not work. Other codecs ignore it.

The caller never waits on a dead ffmpeg: a failure (killed, disk full) is kept in `failed` as one line and later
writes are dropped; `write(block=False)` drops a frame instead of waiting when ffmpeg falls behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from ..validation import check_choice
from .files import cut_to_whole_fragments, partial_path


@dataclass(frozen=True)
class Codec:
    suffix: str
    muxer: str  # ffmpeg's container format
    output: tuple[str, ...]  # ffmpeg output options; {gop} is the keyframe interval in frames
    use: str  # what it is for, in a few words (help texts, README)
    multiple: int = 2  # width and height must be multiples of this (see the module docstring)
    faststart: bool = False  # move the index to the front after a clean stop (players start without seeking)
    nvenc: tuple[str, ...] | None = None  # `output` with NVIDIA's GPU encoder instead, where the codec has one

    @property
    def label(self) -> str:
        return self.use.partition(": ")[0]  # ": " - the H.264 name itself holds a colon (4:2:0)

    @property
    def pix_fmt(self) -> str:
        """The pixel format of the coded video (ffmpeg's name)."""
        return self.output[self.output.index("-pix_fmt") + 1]

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """The largest size within width x height that the codec takes (at most `multiple` - 1 pixels less)."""
        return width - width % self.multiple, height - height % self.multiple

    def check_size(self, width: int, height: int) -> None:
        """EncoderError naming the nearest sizes that fit, unless width and height are multiples of `multiple`."""
        m = self.multiple
        if width % m or height % m:
            down, up = "x".join(map(str, self.fit(width, height))), f"{-(-width // m) * m}x{-(-height // m) * m}"
            raise EncoderError(f"size {width}x{height}: {self.label} needs width and height divisible by {m}; "
                               f"use {down} or {up}")


_FRAGMENTED = ("-movflags", "+hybrid_fragmented", "-frag_duration", "1000000", "-flush_packets", "1")
# The bundled ffmpeg's `prores` (prores_aw) encodes 1080p about 5x faster than `prores_ks` (62 vs 12 fps, measured
# on 2 cores) and writes the same Apple profile tag (apch, 422 HQ).
CODECS: dict[str, Codec] = {
    "h264": Codec(".mp4", "mp4", ("-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p",
                                  "-g", "{gop}", "-sc_threshold", "0", *_FRAGMENTED),
                  "H.264 4:2:0 MP4: consumer players, browsers, screens", faststart=True,
                  nvenc=("-c:v", "h264_nvenc", "-preset", "p4", "-rc", "vbr", "-cq", "16", "-b:v", "0",
                         "-pix_fmt", "yuv420p", "-g", "{gop}", *_FRAGMENTED)),
    "prores": Codec(".mov", "mov", ("-c:v", "prores", "-profile:v", "3", "-vendor", "apl0",
                                    "-pix_fmt", "yuv422p10le", *_FRAGMENTED),
                    "ProRes 422 HQ MOV: editing and mastering"),
    "hap": Codec(".mov", "mov", ("-c:v", "hap", "-format", "hap", "-pix_fmt", "rgba", *_FRAGMENTED),
                 "HAP MOV (decoded on the GPU): Resolume, TouchDesigner, VDMX", multiple=4),
    "hap_q": Codec(".mov", "mov", ("-c:v", "hap", "-format", "hap_q", "-pix_fmt", "rgba", *_FRAGMENTED),
                   "HAP Q MOV (decoded on the GPU, finer colour): Resolume, TouchDesigner, VDMX", multiple=4),
}


ENCODERS = ("auto", "x264", "nvenc")  # [record] encoder: H.264 on the CPU (x264) or the GPU (NVENC); auto = NVENC
# where it works
# x264's options as NVENC's: its rate factor and NVENC's constant quality share the 0-51 scale (NVENC's 0 means "its
# own choice", so 1 is the best); x264's presets have no NVENC counterpart and are left out
_NVENC_OPTIONS = {"-crf": lambda value: ("-cq", str(max(1, int(value))))}
STALL_SECONDS = 10.0  # a writer that cannot queue a frame for this long gives up on ffmpeg
# Keyframes every 5 s: each one is a slight pulse of sharpness in slow, subtle motion (measured: the largest
# frame-to-frame changes of a 1 s GOP recording were all at its keyframes). Fragments of 1 s still keep a killed
# file playable up to about its last second.
KEYFRAME_SECONDS = 5.0
# Raw frames the encoder takes, with the bytes of a frame per pixel: rgb24 as (H, W, 3) arrays, or bytes as
# glReadPixels gives them: rgba, or yuv420p made by a GL pass (recording/yuv.py; BT.709 limited range, tagged so
# players show those colours). ffmpeg converts the RGB ones to the codec's pixel format.
INPUT_FORMATS = {"rgb24": 3.0, "rgba": 4.0, "yuv420p": 1.5}
_BT709_TAGS = ("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv")


class EncoderError(Exception):
    """The encoder cannot start or has stopped; one line."""


@functools.cache
def nvenc_problem() -> str | None:
    """None where ffmpeg's h264_nvenc can encode on this machine, else why not (one line). Tried once per process
    by encoding one small frame (no GPU: a few milliseconds)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
               "color=size=256x256:rate=1", "-frames:v", "1", "-c:v", "h264_nvenc", "-f", "null", "-"]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                              start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"ffmpeg could not be run ({error})"
    if done.returncode == 0:
        return None
    lines = [line.split("] ", 1)[-1].strip() for line in done.stderr.splitlines() if line.strip()]
    return lines[0] if lines else f"ffmpeg exited with code {done.returncode}"


def choose_encoder(setting: str, problem: Callable[[], str | None] = nvenc_problem) -> tuple[str, str | None]:
    """The H.264 encoder to use for the [record] encoder `setting` ("x264" or "nvenc"), and the line to say when
    NVENC was asked for by name and does not work here (x264 is used instead; None otherwise)."""
    check_choice("encoder", setting, ENCODERS)
    if setting == "x264":
        return "x264", None
    why = problem()
    if why is None:
        return "nvenc", None
    note = None if setting == "auto" else (f"[record] encoder nvenc: ffmpeg's h264_nvenc does not work here ({why}); "
                                           "H.264 is encoded with x264 on the CPU instead")
    return "x264", note


class VideoEncoder:
    """Frames of (H, W, 3) uint8, top row first, into `path` at a constant `fps`; with `input_format` "rgba" or
    "yuv420p" (ffmpeg's planar layout, BT.709 limited range), frames of bytes at exactly the encoder's size.

    bottom_up: the frames come bottom row first (GL's order, straight from glReadPixels); ffmpeg's vflip turns
    them round at no cost (it only walks the rows backwards).
    nice: ffmpeg's CPU priority (0 = the caller's; higher yields the cores to the show first).

    keyframe_interval: frames from one keyframe to the next where the codec has any (H.264; ProRes and HAP are
    intra-only); default KEYFRAME_SECONDS. A loop export makes it divide the loop's frame count.
    options: values replacing the codec's own ffmpeg options (a live recording's faster x264 preset, its rate
    factor); a codec without the option ignores it.
    encoder: "nvenc" encodes H.264 on the GPU (`choose_encoder` says where that works), "x264" on the CPU; codecs
    without a GPU encoder ignore it."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, codec: str = "h264",
                 queue_frames: int = 8, keyframe_interval: int | None = None,
                 options: dict[str, str] | None = None, input_format: str = "rgb24",
                 bottom_up: bool = False, nice: int = 0, encoder: str = "x264") -> None:
        if codec not in CODECS:
            raise EncoderError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
        if input_format not in INPUT_FORMATS:
            raise EncoderError(f"unknown input format {input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
        self.codec, self.input_format = CODECS[codec], input_format
        self.width, self.height = self.codec.fit(width, height)
        if self.width < self.codec.multiple or self.height < self.codec.multiple:
            raise EncoderError(f"video size {width}x{height} is too small")
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.fps = fps
        self.frames = self.dropped = 0
        self.failed: str | None = None
        gop = str(keyframe_interval or max(1, round(KEYFRAME_SECONDS * fps)))
        self.nvenc = encoder == "nvenc" and self.codec.nvenc is not None  # on the GPU
        output = [arg.format(gop=gop) for arg in (self.codec.nvenc if self.nvenc else self.codec.output)]
        if self.nvenc:
            options = dict(_NVENC_OPTIONS[o](v) for o, v in (options or {}).items() if o in _NVENC_OPTIONS)
        for option, value in (options or {}).items():  # e.g. {"-crf": "20"}
            if option in output:
                output[output.index(option) + 1] = value
        tags = _BT709_TAGS if input_format == "yuv420p" else ()  # on the input (what it is) and the output (VUI)
        flip = ("-vf", "vflip") if bottom_up else ()
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", input_format, *tags, "-s", f"{self.width}x{self.height}",
                   "-r", f"{fps:g}", "-i", "-", "-an", *flip, *output, *tags, "-f", self.codec.muxer,
                   str(self.partial)]
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, start_new_session=True)
        except OSError as error:
            raise EncoderError(f"cannot start ffmpeg ({error})") from None
        if nice:  # set before x264 starts its threads, which inherit it
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self._process.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
        self._log: deque[str] = deque(maxlen=20)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_frames)
        self._logger = threading.Thread(target=self._read_log, name="ffmpeg-log", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="ffmpeg-writer", daemon=True)
        self._logger.start()
        self._writer.start()
        self._closed = False

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def write(self, frame: np.ndarray | bytes, block: bool = True) -> bool:
        """Queue one frame (rgb24: at least the encoder's size, larger is cropped; rgba and yuv420p: bytes, queued
        as they are). False when it was dropped: the queue was full and `block` is False, or the encoder has failed (see
        `failed`)."""
        if self._closed:
            raise EncoderError("the encoder is closed")
        if self.input_format != "rgb24":
            expected = round(self.width * self.height * INPUT_FORMATS[self.input_format])
            if not isinstance(frame, bytes) or len(frame) != expected:
                raise ValueError(f"frame of {len(frame)} bytes, expected {expected} "
                                 f"({self.input_format} {self.width}x{self.height})")
            data = frame
        elif not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
                or frame.shape[2] != 3 or frame.shape[0] < self.height or frame.shape[1] < self.width:
            raise ValueError(f"frame {getattr(frame, 'shape', len(frame))} {getattr(frame, 'dtype', 'bytes')}, "
                             f"expected ({self.height}, {self.width}, 3) uint8")
        else:
            data = np.ascontiguousarray(frame[:self.height, :self.width]).tobytes()
        deadline = time.monotonic() + STALL_SECONDS
        while self.failed is None:
            try:
                self._queue.put(data, timeout=0.1 if block else 0)
                self.frames += 1
                return True
            except queue.Full:
                if not block:
                    break
                if time.monotonic() > deadline:  # ffmpeg takes nothing any more (hung, a stalled disk)
                    self._fail(f"ffmpeg took no frame for {STALL_SECONDS:g} s and was stopped")
                    self._process.kill()
        self.dropped += 1
        return False

    def close(self, timeout: float = 30.0) -> Path | None:
        """Finish the file: close ffmpeg's input, wait for its trailer, rename it. Returns the final path, or
        None when nothing was written. Never raises for ffmpeg's own failure (see `failed`)."""
        if self._closed:
            return self.path if self.path.exists() else None
        self._closed = True
        try:
            self._queue.put(None, timeout=timeout)
            self._writer.join(timeout)
        except queue.Full:
            pass
        if self._writer.is_alive():  # ffmpeg stopped reading: its input would never drain
            self._fail(f"ffmpeg took no frame for {timeout:g} s and was stopped")
            self._process.kill()  # the writer's blocked write fails now, and it drains the queue
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=5)
            self._writer.join(5)
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()  # hung: the fragments written so far still play
            code = self._process.wait()
            self._fail(f"ffmpeg did not finish within {timeout:g} s and was killed")
        self._logger.join(5)
        if code != 0:
            self._fail(self._reason(code))
        if not self.partial.exists() or self.partial.stat().st_size == 0:
            self.partial.unlink(missing_ok=True)  # nothing written (or only the name claimed for it)
            return None
        if code != 0:
            cut_to_whole_fragments(self.partial)  # a disk that filled mid-fragment: what is whole plays
        elif self.codec.faststart:
            self._move_index_to_front()
        try:
            os.replace(self.partial, self.path)
        except OSError as error:  # a folder turned read-only: the file is whole, its name waits for the next start
            self._fail(f"{self.partial} could not be renamed ({error.strerror or error}); it plays as it is and "
                       "gets its name at the next start")
            return self.partial
        return self.path

    def _move_index_to_front(self) -> None:
        """Rewrite the finished partial file with its index first (a stream copy), where the disk has room; if the
        copy fails the file stays as it is, complete and playable, only slower to start from a network."""
        if shutil.disk_usage(self.partial.parent).free < 2 * self.partial.stat().st_size + 2**26:
            return
        copy = self.partial.with_name(f".{self.path.name}.faststart.tmp")  # hidden: recover_partials skips it
        size = self.partial.stat().st_size
        try:  # a stream copy reads and writes at disk speed; a stuck one must not hold up the stop for ever
            done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                                   "-i", str(self.partial), "-c", "copy", "-movflags", "+faststart",
                                   "-f", self.codec.muxer, str(copy)],
                                  stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True,
                                  timeout=STALL_SECONDS + size / 2**24)
            moved = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            moved = False
        if moved:
            os.replace(copy, self.partial)
        else:
            copy.unlink(missing_ok=True)

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_loop(self) -> None:
        stdin = self._process.stdin
        while (data := self._queue.get()) is not None:
            if self.failed is not None:
                continue  # drain, so a blocked caller is released
            try:
                stdin.write(data)
            except (OSError, ValueError):
                self._fail(self._reason(self._process.wait()))
        try:
            stdin.close()
        except OSError:
            pass  # ffmpeg already gone; its exit code tells why

    def _read_log(self) -> None:
        for line in self._process.stderr:
            if text := line.decode(errors="replace").strip():
                self._log.append(text)

    def _reason(self, code: int) -> str:
        self._logger.join(2)  # ffmpeg's last words name the cause (e.g. No space left on device)
        last = next((line for line in reversed(self._log) if line), "")
        how = f"was killed (signal {-code})" if code < 0 else f"exited with code {code}"
        return f"ffmpeg {how}" + (f": {last}" if last else "")

    def _fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason
