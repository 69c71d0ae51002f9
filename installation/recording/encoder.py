"""One video encoder: an ffmpeg process in its own session, fed raw frames by a writer thread.

Why not imageio-ffmpeg's `write_frames`: its generator SIGKILLs ffmpeg when a KeyboardInterrupt lands inside
`send()`, leaving an unplayable file, and it takes no Popen arguments. Here ffmpeg runs in a new session, so the
terminal's Ctrl-C and a signal to the process group never reach it: the installation stops it by closing its input.

Crash safety: the file is written as `NAME.partial` with `-movflags +hybrid_fragmented` (a fragmented file while
it grows, an ordinary one once finalised), one-second fragments and `-flush_packets 1`, so a SIGKILL or power cut
loses about the last second. `close()` finalises it and renames it to NAME.

The caller never waits on a dead ffmpeg: a failure (killed, disk full) is kept in `failed` as one line and later
writes are dropped; `write(block=False)` drops a frame instead of waiting when ffmpeg falls behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from .files import PARTIAL


@dataclass(frozen=True)
class Codec:
    suffix: str
    output: tuple[str, ...]  # ffmpeg output options; {gop} is the keyframe interval in frames
    multiple: int = 2  # width and height are cut down to a multiple of this (yuv420p needs even sizes)


CODECS: dict[str, Codec] = {
    "h264": Codec(".mp4", ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                           "-g", "{gop}", "-movflags", "+hybrid_fragmented", "-frag_duration", "1000000",
                           "-flush_packets", "1", "-f", "mp4")),
}


STALL_SECONDS = 10.0  # a writer that cannot queue a frame for this long gives up on ffmpeg
# Keyframes every 5 s: each one is a slight pulse of sharpness in slow, subtle motion (measured: the largest
# frame-to-frame changes of a 1 s GOP recording were all at its keyframes). Fragments of 1 s still keep a killed
# file playable up to about its last second.
KEYFRAME_SECONDS = 5.0


class EncoderError(Exception):
    """The encoder cannot start or has stopped; one line."""


class VideoEncoder:
    """Frames of (H, W, 3) uint8, top row first, into `path` at a constant `fps`. `options` replace values of the
    codec's own ffmpeg options (a live recording's faster x264 preset, its rate factor)."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, codec: str = "h264",
                 queue_frames: int = 8, options: dict[str, str] | None = None) -> None:
        if codec not in CODECS:
            raise EncoderError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
        self.codec = CODECS[codec]
        self.width, self.height = width - width % self.codec.multiple, height - height % self.codec.multiple
        if self.width < self.codec.multiple or self.height < self.codec.multiple:
            raise EncoderError(f"video size {width}x{height} is too small")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL)
        self.fps = fps
        self.frames = self.dropped = 0
        self.failed: str | None = None
        gop = str(max(1, round(KEYFRAME_SECONDS * fps)))
        output = [arg.format(gop=gop) for arg in self.codec.output]
        for option, value in (options or {}).items():  # e.g. {"-crf": "20"}; a codec without the option ignores it
            if option in output:
                output[output.index(option) + 1] = value
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}", "-r", f"{fps:g}",
                   "-i", "-", "-an", *output, str(self.partial)]
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, start_new_session=True)
        except OSError as error:
            raise EncoderError(f"cannot start ffmpeg ({error})") from None
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

    def write(self, frame: np.ndarray, block: bool = True) -> bool:
        """Queue one frame (at least the encoder's size; larger is cropped). False when it was dropped: the
        queue was full and `block` is False, or the encoder has failed (see `failed`)."""
        if self._closed:
            raise EncoderError("the encoder is closed")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 \
                or frame.shape[0] < self.height or frame.shape[1] < self.width:
            raise ValueError(f"frame {frame.shape} {frame.dtype}, expected ({self.height}, {self.width}, 3) uint8")
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
            self.partial.unlink(missing_ok=True)
            if self.path.exists() and self.path.stat().st_size == 0:
                self.path.unlink()  # the empty name claimed for it
            return None
        os.replace(self.partial, self.path)
        return self.path

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
