"""The headless live video for weeks on one disk: segments of a fixed length, each a whole playable file, the
oldest deleted to stay within a budget; a disk nearly full, or its folder gone, suspends it until there is room.

Why segments and not one file: ffmpeg's MP4/MOV muxer keeps an index entry for every frame in memory until the
file ends, to write the index of an ordinary, finished file (also with `+hybrid_fragmented`); measured, the encoder
grew by about 9 MB per hour of 30 fps frames, for as long as the file lasts (benchmarks/bench_soak.py; README).
A new file every `segment_seconds` bounds that and lets the oldest hours go first when the budget is reached. A
purely fragmented file would not grow, but it is the less compatible kind; the segments keep every file ordinary.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..messages import size_text
from ..storage import MIN_FREE_BYTES
from .encoder import CODECS, EncoderError
from .files import prune_oldest
from .supervised import SupervisedVideo

RESUME_FREE = 2 * MIN_FREE_BYTES  # a suspended video starts again with this much free (not flapping at the line)
RETRY_SECONDS = 5.0


class RotatingVideo:
    """Frames into `folder/STEM-DATE-TIME.mp4` segments of `segment_seconds` (SupervisedVideo each: a new file after
    an encoder failure too); the files of this stem in `folder` stay within `budget_bytes`, the oldest deleted first
    (the newest finished one is always kept). `suspended` says why nothing is being recorded now (None while it
    is); it clears by itself. `close()` finalises the current segment and returns `files`."""

    def __init__(self, folder: Path, stem: str, width: int, height: int, fps: float, segment_seconds: float,
                 budget_bytes: float, codec: str = "h264", say: Callable[[str], None] = print,
                 **encoder_options: Any) -> None:
        self.folder, self.stem, self.size, self.fps, self.codec = Path(folder), stem, (width, height), fps, codec
        self.budget, self.say, self.encoder_options = budget_bytes, say, encoder_options
        self.segment_frames = max(1, round(segment_seconds * fps))
        self.files: list[Path] = []  # finished segments of this run still on disk (the budget deletes old ones)
        self.suspended: str | None = None
        self._video: SupervisedVideo | None = None
        self._frames_done = 0
        self._retry_at = 0.0
        self._open(time.monotonic())

    @property
    def frames(self) -> int:
        """Frames taken in this run: as written for finished segments, as queued for the current one."""
        return self._frames_done + (self._video.frames if self._video is not None else 0)

    @property
    def path(self) -> Path | None:
        """The segment being written now (None while suspended)."""
        return self._video.path if self._video is not None else None

    def write(self, frame: np.ndarray | bytes, block: bool = True) -> bool:
        """One frame; False when it was not taken (suspended, between files, or a full queue with `block` False)."""
        now = time.monotonic()
        if self._video is None and (now < self._retry_at or not self._open(now)):
            return False
        video = self._video
        taken = video.write(frame, block)
        if video.stopped is not None:  # its disk guard: too little room left, or the folder gone
            self._end_segment()
            self._suspend(video.stopped, now)
        elif video.frames >= self.segment_frames:
            self._end_segment()  # the next frame opens the next segment
        return taken

    def close(self) -> list[Path]:
        if self._video is not None:
            self._end_segment()
        return self.files

    def _open(self, now: float) -> bool:
        try:
            if self.suspended is not None and (free := shutil.disk_usage(self.folder).free) < RESUME_FREE:
                self._retry_at = now + RETRY_SECONDS
                return False
            video = SupervisedVideo(self.folder, self.stem, *self.size, self.fps, self.codec, say=self.say,
                                    **self.encoder_options)
        except (EncoderError, OSError) as error:
            self._suspend(getattr(error, "strerror", None) or str(error), now)
            return False
        if self.suspended is not None:
            self.say(f"the {self.stem} video records again, to {video.path} ({size_text(free)} free)")
            self.suspended = None
        self._video = video
        return True

    def _suspend(self, why: str, now: float) -> None:
        if self.suspended is None:
            self.say(f"the {self.stem} video is suspended: {why}; it starts again by itself once there is room")
        self.suspended, self._retry_at = why, now + RETRY_SECONDS

    def _end_segment(self) -> None:
        video, self._video = self._video, None
        self.files += video.close()
        self._frames_done += video.frames
        suffix = CODECS[self.codec].suffix
        for path in prune_oldest(self.folder, (f"{self.stem}-*{suffix}",), self.budget, keep=tuple(self.files[-1:])):
            self.say(f"deleted the oldest {self.stem} video, {path.name}, to stay within {size_text(self.budget)}")
            if path in self.files:
                self.files.remove(path)
