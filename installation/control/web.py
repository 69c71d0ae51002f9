"""What the technician's status page (/ui/ on the HTTP server) shows beyond the published state: the run folder's
journey, events, log and files, and the newest picture, which the live loop offers when a page is looking.

Everything here is plain, synchronous file work; control/http.py runs it on its one worker thread, never on the
display's. Memory and time stay bounded on a run of weeks: metrics.jsonl is read on from where the last read
stopped (from the start again only after the engine compacted it), and the journey is kept as four columns of
numbers; events and the log are read from their last few tens of kilobytes.
"""

from __future__ import annotations

import array
import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..journal import kept_before

MAX_POINTS = 600  # journey points sent to a page: more than a phone's plot has pixels
TAIL_BYTES = 64 * 1024  # read from the end of events.jsonl and the log
DOWNLOADS = {".mp4", ".mov", ".mkv", ".webm", ".gif", ".png", ".jpg", ".jpeg"}
JOURNEY = ("probe_d", "loss", "diversity")  # the metrics the page plots, as the engine names them


class RunFolderView:
    """Reads a run folder for the page: `journey()`, `events()`, `log_lines()`, `files()` and `file()`."""

    def __init__(self, run_dir: Path, recordings: Path, log: Path | None = None,
                 thumbnails: Path | None = None) -> None:
        self.run_dir, self.recordings = Path(run_dir), Path(recordings)
        self.log, self.thumbnails = log, thumbnails
        self._journey = _Journey(self.run_dir / "metrics.jsonl")

    def journey(self) -> dict[str, list[float | None]]:
        return self._journey.read()

    def events(self, count: int = 30) -> list[dict[str, Any]]:
        """The newest events (engine: start, snapshot, rewind, error ...), newest last."""
        found = []
        for line in _tail(self.run_dir / "events.jsonl", count):
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill, or cut by the tail
            if isinstance(event, dict):
                found.append(event)
        return found

    def log_lines(self, count: int = 40) -> list[str]:
        return _tail(self.log, count) if self.log is not None else []

    def files(self) -> list[dict[str, Any]]:
        """Finished recordings and exports (the recordings folder), and the headless videos and last pictures of the
        run folder, newest first. Files still being written (`.partial`) are not offered."""
        found = []
        for folder, path in (("recordings", self.recordings), ("run", self.run_dir)):
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in DOWNLOADS:
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found.append({"folder": folder, "name": entry.name, "size": stat.st_size,
                              "modified": stat.st_mtime})
        return sorted(found, key=lambda f: f["modified"], reverse=True)

    def file(self, folder: str, name: str) -> Path | None:
        """The file `files()` lists under this folder and name, or None: a download can only ever be one of those,
        so no path from a request is ever joined onto a folder."""
        for entry in self.files():
            if entry["folder"] == folder and entry["name"] == name:
                return (self.recordings if folder == "recordings" else self.run_dir) / name
        return None

    def newest_thumbnail(self) -> bytes | None:
        if self.thumbnails is None:
            return None
        try:
            newest = max(self.thumbnails.glob("*.jpg"), default=None)  # named by time stamp
            return newest.read_bytes() if newest is not None else None
        except OSError:
            return None


class _Journey:
    """metrics.jsonl as the journey stands, read incrementally into columns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None  # (device, inode): compaction writes a new file
        self._offset = 0
        self._reset()

    def _reset(self) -> None:
        self._offset = 0
        self.iterations: array.array[int] = array.array("q")
        self.columns = {name: array.array("d") for name in JOURNEY}

    def read(self) -> dict[str, list[float | None]]:
        try:
            with open(self.path, "rb") as file:
                stat = os.fstat(file.fileno())
                if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self._offset:
                    self._identity = (stat.st_dev, stat.st_ino)
                    self._reset()
                file.seek(self._offset)
                data = file.read()
        except OSError:
            data = b""
        complete = data[:data.rfind(b"\n") + 1]  # a line being written is read next time, whole
        self._offset += len(complete)
        for raw in complete.splitlines():
            try:
                line = json.loads(raw)
                iteration = int(line["iteration"])
            except (ValueError, KeyError, TypeError):
                continue
            stay = kept_before(self.iterations, iteration)
            del self.iterations[stay:]
            self.iterations.append(iteration)
            for name, column in self.columns.items():
                del column[stay:]
                value = line.get(name)
                column.append(float(value) if isinstance(value, (int, float)) else math.nan)
        return self._points()

    def _points(self) -> dict[str, list[float | None]]:
        count = len(self.iterations)
        picked = np.unique(np.linspace(0, count - 1, min(count, MAX_POINTS)).round().astype(int)) if count else []
        points: dict[str, list[float | None]] = {"iteration": [self.iterations[i] for i in picked]}
        for name, column in self.columns.items():
            points[name] = [column[i] if math.isfinite(column[i]) else None for i in picked]
        return points


def _tail(path: Path | None, count: int) -> list[str]:
    """The last `count` complete lines of a text file (from its last TAIL_BYTES), oldest first."""
    if path is None:
        return []
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - TAIL_BYTES))
            data = file.read(TAIL_BYTES)
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first one is cut
    return [line for line in lines if line.strip()][-count:]


class PictureFeed:
    """The newest picture for the page. The live loop asks `wanted(now)` each refresh (a comparison) and, only
    when it says so, reads its framebuffer and `offer()`s it: at most every `every` seconds, and only while a page
    has fetched the picture in the last `idle` seconds, so an unwatched show pays nothing. The page's request
    encodes the JPEG (on the HTTP worker thread), once per offered picture."""

    def __init__(self, every: float = 2.0, width: int = 640, idle: float = 30.0) -> None:
        self.every, self.width, self.idle = every, width, idle
        self._asked = -math.inf  # monotonic time of the newest page request
        self._offered = -math.inf
        self._image: np.ndarray | None = None
        self._jpeg: bytes | None = None

    def wanted(self, now: float) -> bool:
        return now - self._asked < self.idle and now - self._offered >= self.every

    def offer(self, image: np.ndarray, now: float) -> None:
        """A height x width x 3 uint8 picture the caller will not change afterwards (a fresh framebuffer read)."""
        self._offered = now
        self._image, self._jpeg = image, None  # two reference swaps: the reader sees the old or the new picture

    def jpeg(self) -> bytes | None:
        """The offered picture as a JPEG at most `width` pixels wide; None before the first offer."""
        self._asked = time.monotonic()
        image, encoded = self._image, self._jpeg
        if image is None:
            return None
        if encoded is None:
            from PIL import Image

            picture = Image.fromarray(np.ascontiguousarray(image))
            if picture.width > self.width:
                picture = picture.resize((self.width, max(1, round(picture.height * self.width / picture.width))),
                                         Image.BILINEAR)
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=80)
            encoded = self._jpeg = buffer.getvalue()
        return encoded


def state_json(state: Any) -> dict[str, Any]:
    """The published state (a dataclass: ControlState, later the show's one snapshot per refresh) as plain JSON:
    every field, non-finite numbers as null, the newest 50 snapshots."""
    data = _plain(state)
    if "snapshots" in data:
        data["snapshots"] = data["snapshots"][-50:]
    return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value  # a StrEnum is a str
    return str(value)
