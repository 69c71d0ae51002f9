"""A video output that outlives its encoder: when ffmpeg dies, the file so far is kept and a new one begins."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..messages import size_text
from ..storage import RECORDING_FREE_BYTES
from .encoder import CODECS, EncoderError, VideoEncoder
from .files import claim_partial, video_length
RESTART_BACKOFF = (1.0, 5.0, 30.0)  # seconds before starting a new file after an encoder failure
DISK_CHECK_EVERY = 1.0


class DiskFullError(EncoderError):
    """Too little space left to record (or the folder has gone); one line."""


def check_free_space(folder: Path) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError as error:  # deleted or unmounted while the show runs
        raise DiskFullError(f"{folder}: cannot be written ({error.strerror or error})") from None
    if free < RECORDING_FREE_BYTES:
        raise DiskFullError(f"{folder}: only {size_text(free)} free on its disk (recording needs at least "
                            f"{size_text(RECORDING_FREE_BYTES)}); free some space or choose another run folder")


class SupervisedVideo:
    """Frames into `folder/STEM-DATE-TIME.mp4` files, a new file after each encoder failure (with a back-off).

    `say` reports each encoder failure in one line. Running out of disk space stops it for good: `stopped` then holds
    the reason and later frames are ignored. `close()` finalises the current file; `files` lists every file written.
    """

    def __init__(self, folder: Path, stem: str, width: int, height: int, fps: float, codec: str = "h264",
                 say: Callable[[str], None] = print, **encoder_options: Any) -> None:
        self.folder, self.stem, self.size, self.fps, self.codec = folder, stem, (width, height), fps, codec
        self.say = say
        # VideoEncoder's own keywords (options, input_format, bottom_up, nice), for every file it opens
        self.encoder_options = encoder_options
        self.files: list[Path] = []
        self._counts: list[int] = []  # frames of the finished files, as written
        self.stopped: str | None = None
        self._failures = 0
        self._restart_at: float | None = None
        self._next_disk_check = 0.0
        check_free_space(folder)
        self._encoder: VideoEncoder | None = self._open()

    @property
    def frames(self) -> int:
        return sum(self._counts) + (self._encoder.frames if self._encoder else 0)

    @property
    def path(self) -> Path | None:
        """The file being written now (None between files and once stopped)."""
        return self._encoder.path if self._encoder is not None else None

    def _open(self) -> VideoEncoder:
        return VideoEncoder(claim_partial(self.folder, self.stem, CODECS[self.codec].suffix), *self.size, self.fps,
                            self.codec, **self.encoder_options)

    def write(self, frame: np.ndarray | bytes, block: bool = True) -> bool:
        """One frame; False when it was not taken (stopped, between files, or with `block` False a full queue)."""
        if self.stopped is not None:
            return False
        now = time.monotonic()
        if now >= self._next_disk_check:
            self._next_disk_check = now + DISK_CHECK_EVERY
            try:
                check_free_space(self.folder)
            except DiskFullError as error:
                self._finish()
                self.stopped = str(error)  # said by the caller, with what the file holds (a recording stops, the
                # live video waits)
                return False
        if self._encoder is None:
            if now < self._restart_at:
                return False
            try:
                self._encoder = self._open()
            except EncoderError as error:
                self._failed(f"could not start a new video file: {error}", now)
                return False
        taken = self._encoder.write(frame, block)
        if self._encoder.failed is not None:
            reason = self._encoder.failed
            kept = self._finish()
            self._failed(f"video output failed ({reason}); {kept}", now)
        return taken

    def _failed(self, message: str, now: float) -> None:
        delay = RESTART_BACKOFF[min(self._failures, len(RESTART_BACKOFF) - 1)]
        self._failures += 1
        self._restart_at = now + delay
        self.say(f"{message}; a new file starts in {delay:g} s")

    def _finish(self) -> str:
        """Finalise the current file; a few words on what it holds, read from the file (frames queued for an ffmpeg
        that failed never reached it)."""
        encoder, self._encoder = self._encoder, None
        if encoder is None:
            return "no file was open"
        path = encoder.close()
        if path is None:
            self._counts.append(0)
            return "nothing had been written"
        self.files.append(path)
        try:
            frames, seconds = video_length(path)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self._counts.append(0)
            return f"kept {path} (unreadable)"
        self._counts.append(frames)
        if frames == 0:  # its first fragment never reached the disk (full from the start)
            self.files.remove(path)
            path.unlink(missing_ok=True)
            return "nothing had reached the disk"
        return f"kept {path} ({seconds:.1f} s, {frames} frames)"

    def close(self) -> list[Path]:
        self._finish()
        return self.files
