"""What the display process leaves in the run folder for a remote check (ssh in, `service status`, or a file sync):

- `status.json`, rewritten atomically every `[logs] status_every` seconds: `LiveStatus`, one flat JSON object;
- `thumbnails/YYYYmmdd-HHMMSS-itN.jpg`, a small picture of the output every `[logs] thumbnail_minutes`, the
  oldest deleted to stay within `thumbnail_budget_mb` (a "screenshot log": was the screen right last night?).

While the run folder cannot be written (full, read-only, deleted or unmounted) status.json goes to a fallback
outside it, `$XDG_RUNTIME_DIR/uncanny/NAME/status.json` (else /tmp/uncanny-UID/NAME/), and back once it can;
`find_status` (and so `service status`) reads whichever of them is newest. A vanished run folder is never made
again from here: the engine's RunFolder does that, run.json first.

`RemoteChecks.tick` runs once per refresh and costs nothing between its due times; the thumbnail is one plain
read of the framebuffer every few minutes (about 1 ms at 1080p on llvmpipe).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..control.state import ControlState
from ..storage import atomic_write
from ..validation import check_float, check_int

STATUS_FILE = "status.json"
THUMBNAIL_DIR = "thumbnails"
STALE_INTERVALS = 3  # a status file older than this many of its intervals: the display process is gone or hung
FIRST_THUMBNAIL_SECONDS = 30.0  # the first one soon after the start, so a remote check sees the picture came up
STOPPED = "stopped"  # the phase of the last status a run writes as it stops cleanly: old, but not stale


@dataclass(frozen=True)
class LogsConfig:
    """What the display process leaves for remote checks ([logs] table): status.json, the log, thumbnails."""

    status_every: float = 5.0  # seconds between rewrites of status.json
    log_mb: float = 10.0  # logs/uncanny.log rotates at this size ...
    log_files: int = 5  # ... keeping this many older files
    thumbnail_minutes: float = 10.0  # a thumbnail of the output this often; 0 = none
    thumbnail_width: int = 320
    thumbnail_budget_mb: float = 50.0  # the oldest thumbnails go to stay within this

    def __post_init__(self) -> None:
        check_float("status_every", self.status_every, 0.1, 3600.0)
        check_float("log_mb", self.log_mb, 0.01, 10000.0)
        check_int("log_files", self.log_files, 1, 100)
        check_float("thumbnail_minutes", self.thumbnail_minutes, 0.0, 1440.0)
        check_int("thumbnail_width", self.thumbnail_width, 16, 1920)
        check_float("thumbnail_budget_mb", self.thumbnail_budget_mb, 0.0, 100000.0, low_open=True)


@functools.cache  # a metadata lookup scans the installed distributions: once per process is enough
def package_version() -> str:
    try:
        return metadata.version("uncanny")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@dataclass(frozen=True)
class LiveStatus:
    """One status.json. `cycle` and `phase` come from the gallery director (completed cycles, what it is doing);
    `recording` is the live recording's path, or "" for none (written as false). The last one a run writes as it
    stops cleanly has the phase STOPPED."""

    iteration: int
    cycle: int
    phase: str
    fps: float
    uptime: float  # seconds since the display process started the installation
    last_error: str  # the newest error the installation reported (also shown on screen), "" for none
    engine_status: str
    engine_restarts: int
    steps_per_second: float
    collapsed: bool
    disk_free: int  # bytes free where the run folder is
    recording: str
    model: str
    run_dir: str
    every: float  # seconds between rewrites: a reader judges staleness by it
    outputs: tuple[str, ...] = ()  # each output and how it is doing (display/sinks.py OutputState.describe)
    device: str = ""  # where the engine trains, named ("cuda:0 NVIDIA ...", "cpu")
    degraded: str = ""  # "degraded: ..." while a run that had a GPU goes on on the CPU
    snapshots_suspended: str = ""  # why snapshots are not written now
    saved_iteration: int | None = None  # the newest snapshot on disk: where a restart resumes
    snapshot_bytes_hour: int = 0
    batch_limit: int = 0  # the largest training batch found to fit the device; 0 = no limit found
    updated: float = 0.0  # wall time of the write (time.time())
    pid: int = 0
    version: str = ""
    last_message: str = ""  # the newest message that is not an error (a recording started, a file deleted ...)
    storage: str = ""  # why the run folder cannot be written now and what to do; "" while it can
    shown_iteration: int = 0  # of the weights that drew the picture on screen
    journey_minutes: float = 0.0  # the arc's pace ([engine] journey_minutes); 0 = as fast as the device goes

    @classmethod
    def of(cls, state: ControlState, every: float) -> LiveStatus:
        """What status.json says of the show's state this refresh."""
        return cls(iteration=state.iteration, cycle=state.cycle, phase=state.phase, fps=round(state.fps, 2),
                   uptime=state.uptime, last_error=state.last_error, engine_status=state.status,
                   engine_restarts=state.engine_restarts, steps_per_second=state.steps_per_second,
                   collapsed=state.collapsed, disk_free=int(state.disk_free), recording=state.recording_path,
                   model=state.model, run_dir=state.run_dir, every=every,
                   outputs=tuple(output.describe() for output in state.outputs), device=state.device,
                   degraded=state.degraded, snapshots_suspended=state.snapshots_suspended,
                   saved_iteration=state.saved_iteration, snapshot_bytes_hour=state.snapshot_bytes_hour,
                   batch_limit=state.batch_limit, storage=state.storage, shown_iteration=state.shown_iteration,
                   journey_minutes=float(state.controls.get("journey_minutes", 0.0)))

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["recording"] = self.recording or False
        return data

    @classmethod
    def from_json(cls, data: Any) -> LiveStatus:
        """Back from `to_json` (keys a newer version added are ignored); ValueError names what is missing."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        fields = dataclasses.fields(cls)
        if missing := [f.name for f in fields if f.name not in data and f.default is dataclasses.MISSING]:
            raise ValueError(f"no {', '.join(missing)}")
        values = {f.name: data[f.name] for f in fields if f.name in data}
        values["recording"] = values["recording"] or ""
        values["outputs"] = tuple(values.get("outputs", ()))
        return cls(**values)

    def age(self, now: float | None = None) -> float:
        """Seconds since it was written."""
        return (time.time() if now is None else now) - self.updated

    def stale(self, now: float | None = None) -> bool:
        """Older than STALE_INTERVALS of its own interval without saying it stopped: the display process is gone or
        hung."""
        return self.phase != STOPPED and self.age(now) > STALE_INTERVALS * self.every


def disk_free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def write_status(run_dir: Path, status: LiveStatus) -> None:
    """FOLDER/status.json, whole or not at all, never making FOLDER (OSError when it is missing). Not durable (no
    fsync): it is rewritten in seconds anyway, and an fsync on a slow disk would stall the render loop."""
    data = dataclasses.replace(status, updated=time.time(), pid=os.getpid(), version=package_version())
    text = json.dumps(data.to_json(), indent=1) + "\n"
    atomic_write(run_dir / STATUS_FILE, lambda f: f.write(text.encode("utf-8")), durable=False, make_folder=False)


def fallback_folders(run_dir: Path) -> list[Path]:
    """Where status.json goes while the run folder cannot be written: under $XDG_RUNTIME_DIR (the user's, in RAM)
    where it is set, and under the temporary folder; a writer takes the first, a reader looks in all."""
    run_dir = Path(run_dir).resolve()
    name = f"{run_dir.name}-{hashlib.sha1(str(run_dir).encode()).hexdigest()[:8]}"  # one per run folder
    bases = [Path(os.environ["XDG_RUNTIME_DIR"]) / "uncanny"] if os.environ.get("XDG_RUNTIME_DIR") else []
    bases.append(Path(tempfile.gettempdir()) / f"uncanny-{os.getuid()}")
    return [base / name for base in bases]


def _private_folder(folder: Path) -> None:
    """Make `folder` (and the one above it) this user's own, or PermissionError: in a shared temporary folder another
    user could have put a folder, or a link to one, of that name first."""
    for path in (folder.parent, folder):
        path.mkdir(exist_ok=True, mode=0o700)
        if path.is_symlink() or path.stat().st_uid != os.getuid():
            raise PermissionError(errno.EPERM, "not this user's own folder", str(path))


def find_status(run_dir: Path) -> tuple[Path, LiveStatus]:
    """The newest status of a run folder, from RUN_DIR/status.json or a fallback, and where it was; OSError when
    there is none, ValueError when the newest is unreadable."""
    found, unreadable = [], None
    for folder in [Path(run_dir), *fallback_folders(run_dir)]:
        try:
            found.append((folder / STATUS_FILE, read_status(folder)))
        except OSError:
            continue
        except ValueError as error:
            unreadable = unreadable or error
    if not found:
        if unreadable is not None:
            raise unreadable
        raise FileNotFoundError(f"no {STATUS_FILE} in {run_dir} nor in {fallback_folders(run_dir)[0]}")
    return max(found, key=lambda pair: pair[1].updated)


class ThumbnailLog:
    """Small JPEGs of the output in `folder`, the oldest deleted to stay within `budget` bytes."""

    def __init__(self, folder: Path, width: int, budget: int) -> None:
        self.folder, self.width, self.budget = folder, width, budget

    def save(self, image: np.ndarray, iteration: int, stamp: float | None = None) -> Path:
        from PIL import Image

        picture = Image.fromarray(np.ascontiguousarray(image))
        height = max(1, round(picture.height * self.width / picture.width))
        picture = picture.resize((self.width, height), Image.BILINEAR)
        path = self.folder / f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp))}-it{iteration}.jpg"
        atomic_write(path, lambda f: picture.save(f, format="JPEG", quality=80), durable=False)
        self.prune()
        return path

    def prune(self) -> None:
        """Delete the oldest thumbnails (by name: the time stamp) while the folder is over its budget."""
        files = sorted(self.folder.glob("*.jpg"))
        sizes = [path.stat().st_size for path in files]
        total = sum(sizes)
        for path, size in zip(files[:-1], sizes):  # the newest always stays
            if total <= self.budget:
                break
            path.unlink(missing_ok=True)
            total -= size


class RemoteChecks:
    """status.json and the thumbnails of one run, on their own clocks (monotonic seconds). While the run folder
    cannot be written, status.json goes to its fallback (said once, and once when it is back) and no thumbnail is
    taken; nothing here stops the picture."""

    def __init__(self, run_dir: Path, config: LogsConfig, say: Callable[[str], None], now: float) -> None:
        self.run_dir, self.config, self.say = run_dir, config, say
        self.thumbnails = ThumbnailLog(run_dir / THUMBNAIL_DIR, config.thumbnail_width,
                                       int(config.thumbnail_budget_mb * 2**20))
        self.fallback = fallback_folders(run_dir)[0]
        self._status_due = now
        interval = config.thumbnail_minutes * 60
        self._thumbnail_due = now + min(FIRST_THUMBNAIL_SECONDS, interval) if interval else None
        self._failing: str | None = None  # why the run folder took no status, said once, not per tick

    def tick(self, now: float, status: Callable[[], LiveStatus], picture: Callable[[], np.ndarray]) -> None:
        status_due = now >= self._status_due
        thumbnail_due = self._thumbnail_due is not None and now >= self._thumbnail_due
        if not (status_due or thumbnail_due):
            return
        current = status()  # one per tick: it asks the disk for its free space
        if status_due:
            self._status_due = now + self.config.status_every
            self.write(current)
        if thumbnail_due and self._failing is None:
            self._thumbnail_due = now + self.config.thumbnail_minutes * 60
            try:
                self.thumbnails.folder.mkdir(exist_ok=True)  # never the run folder above it
                self.thumbnails.save(picture(), current.iteration)
            except OSError as error:
                self.say(f"cannot save a thumbnail in {self.thumbnails.folder}: {error.strerror or error}")

    def write(self, current: LiveStatus) -> None:
        """status.json into the run folder, or its fallback while the run folder cannot take it (also the last one
        a run writes as it stops)."""
        try:
            write_status(self.run_dir, current)
        except OSError as error:  # full, read-only or gone: the status goes on, elsewhere
            problem = f"{self.run_dir} cannot take status.json ({error.strerror or error})"
            try:
                _private_folder(self.fallback)
                write_status(self.fallback, current)
                where = f"it goes to {self.fallback / STATUS_FILE} meanwhile"
            except OSError as fallback_error:
                where = f"nor can {self.fallback} ({fallback_error.strerror or fallback_error})"
            if problem != self._failing:
                self.say(f"{problem}; {where}")
            self._failing = problem
            return
        if self._failing is not None:
            self._failing = None
            (self.fallback / STATUS_FILE).unlink(missing_ok=True)
            self.say(f"status.json is written in {self.run_dir} again")


def read_status(run_dir: Path) -> LiveStatus:
    """RUN_DIR/status.json; OSError when missing, ValueError when unreadable."""
    return LiveStatus.from_json(json.loads((run_dir / STATUS_FILE).read_text(encoding="utf-8")))
