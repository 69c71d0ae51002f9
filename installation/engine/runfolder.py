"""The run folder of one journey, and what happens when its disk fills up, turns read-only or goes away.

    run.json        model facts, seed, probe size, iteration-0 probe values, engine sessions so far
    metrics.jsonl   one line per step, tagged with its session (journal.history reads it as one journey)
    events.jsonl    start, resume, deaths, commands, rewinds, storage faults, errors, stop
    .lock           held by the one engine on the folder; .live.lock by the one installation (flock: the kernel
                    drops a lock when its process dies, even by kill -9)
    snapshots/      the SnapshotStore's (snapshots.py); `can_write` tells it whether writing is possible

`RunFolder` is the one object the engine, the journey command, the live run and `service status` use for them.

Refusals at start read only, so a refused folder is left as it was. A read-only folder still takes its locks (an
existing lock file opened for reading, else the folder itself).

Storage faults degrade and never stop the engine: a write that fails (a full disk, a read-only remount, a folder
deleted or unmounted) sets `problem`, one line saying what is wrong and what to do; journal lines are then held in
memory (at most HELD_LINES per file, the oldest dropped and counted) and run.json is kept to be written again.
`tick()` looks at the folder every CHECK_SECONDS while it is healthy (a folder removed still takes appends into
its deleted files, so only a look finds it gone, and a disk nearly full is caught before it is full) and tries it
again every RETRY_SECONDS while it is not: a vanished folder is made again where its parent can be written, run.json
first (so the folder never holds snapshots without it), then the held lines are written and `problem` clears.
`take_changes()` says each change, for the engine's events and state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..journal import compact_events, compact_metrics
from ..messages import first_line, size_text
from ..storage import MIN_FREE_BYTES, atomic_write_bytes, drop_torn_line, last_json_line, write_problem
from .errors import RunFolderError, RunFolderUnavailable

if TYPE_CHECKING:
    from ..models import GAN

INFO_FILE = "run.json"
JOURNAL = ("metrics", "events")  # metrics.jsonl, events.jsonl
ENGINE_LOCK, LIVE_LOCK = ".lock", ".live.lock"
CHECK_SECONDS = 1.0  # three system calls: a folder gone is found before the next snapshot would make it again
RETRY_SECONDS = 2.0
HELD_LINES = 20_000  # per journal file while the folder cannot be written: hours of steps, a few MB
# where the folder must be made: errors that a disk freed, remounted or plugged in again can clear
TEMPORARY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


@dataclass(frozen=True)
class StorageChange:
    """The folder's `problem` changed: to a new one, or to None (it can be written again)."""

    problem: str | None
    previous: str | None
    seconds: float = 0.0  # how long `previous` lasted, when it cleared
    dropped: int = 0  # journal lines lost while it lasted


def model_facts(gan: GAN) -> dict[str, Any]:
    """What run.json records of the model, and what a run folder must match to be resumed with it."""
    return {"arch": gan.arch, "g_config": json.loads(json.dumps(gan.g_config)), "resolution": gan.resolution}


class RunFolder:
    """One run folder: refusals at start, its locks, run.json, the journal, and its health (module docstring)."""

    def __init__(self, path: str | Path, journal_mb: float = 64.0) -> None:
        self.path = Path(path)
        self.journal_bytes = journal_mb * 2**20
        self.info: dict[str, Any] | None = None  # run.json as this process knows it
        self.problem: str | None = None
        self.last_event: dict[str, Any] | None = None  # the newest event when the journal was opened ...
        self.reached = {"iteration": 0, "branch": 0}  # ... and where the journey had got to
        self._files: dict[str, Any] = dict.fromkeys(JOURNAL)
        self._held: dict[str, deque[bytes]] = {name: deque(maxlen=HELD_LINES) for name in JOURNAL}
        self._dropped = 0
        self._info_due = False  # run.json is to be written again
        self._locks: list[int] = []
        self._identity: tuple[int, int] | None = None  # (device, inode) of the folder the journal is open in
        self._compact_at = self.journal_bytes
        self._since = 0.0
        self._next_look = 0.0
        self._changes: list[StorageChange] = []

    # ----------------------------------------------------------------------------------- refusals (read only)

    def read_info(self) -> dict[str, Any] | None:
        """run.json, or None for a folder where no run has started; RunFolderError when it cannot be read."""
        path = self.path / INFO_FILE
        if not path.exists():
            return None
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
            return info
        except (OSError, ValueError) as error:
            raise RunFolderError(f"{path}: unreadable ({first_line(error)}); choose another run folder") from None

    def check(self, gan: GAN) -> dict[str, Any] | None:
        """Refuse, before anything starts, a folder the engine would refuse: another model's, an unreadable run.json,
        snapshots without one. Returns its run.json (None for a new run)."""
        info = self.read_info()
        if info is None:
            if any((self.path / "snapshots").glob("it*.pt")):
                raise RunFolderError(f"{self.path}: holds snapshots but no run.json; choose an empty run folder")
            return None
        facts = model_facts(gan)
        if any(info.get(k) != v for k, v in facts.items()):
            raise RunFolderError(f"{self.path}: this run folder belongs to another model ({info.get('arch')}, "
                                 f"{info.get('resolution')} px); choose another run folder")
        for key in ("seed", "probe_size", "diversity0", "probe_d0"):
            if key not in info:
                raise RunFolderError(f"{self.path / INFO_FILE}: has no {key!r}; choose another run folder")
        return info

    # ------------------------------------------------------------------------------------------------ holding

    def make(self) -> None:
        """Make the folder (and those above it): RunFolderUnavailable where its disk is full or read-only now,
        RunFolderError where it can never be one."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            fault = RunFolderUnavailable if error.errno in TEMPORARY else RunFolderError
            fix = "start again once it can be written" if fault is RunFolderUnavailable else \
                "choose a folder that can be created and written"
            raise fault(f"run folder {self.path}: cannot be used ({error.strerror or error}); {fix}") from None

    def lock(self, name: str = ENGINE_LOCK) -> None:
        """Hold one of the folder's locks for this process; RunFolderError when another engine holds .lock,
        RunFolderUnavailable when another installation holds .live.lock."""
        path = self.path / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # read-only or full: an existing lock file still locks; else the folder itself
            try:
                fd = os.open(path if path.exists() else self.path, os.O_RDONLY)
            except OSError as error:
                raise RunFolderError(f"run folder {self.path}: cannot be used ({error.strerror or error}); choose "
                                     "a folder that can be created and written") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if name == LIVE_LOCK:
                raise RunFolderUnavailable(f"run folder {self.path}: another installation or journey is running on "
                                           "it; stop it or choose another --run-dir") from None
            raise RunFolderUnavailable(f"{self.path}: another engine is using this run folder; stop it or choose "
                                 "another") from None
        self._locks.append(fd)

    @contextlib.contextmanager
    def hold(self, gan: GAN) -> Iterator[dict[str, Any] | None]:
        """The live run's hold for the length of the `with`: the folder made, checked for what the engine would
        refuse (touching nothing when refused) and locked against a second installation. Yields its run.json."""
        self.make()
        info = self.check(gan)
        if self.held_elsewhere(ENGINE_LOCK):  # asked before the lock below makes a file: a refusal touches nothing
            raise RunFolderUnavailable(f"run folder {self.path}: another installation or journey is running on it; "
                                       "stop it or choose another --run-dir")
        self.lock(LIVE_LOCK)
        try:
            yield info
        finally:
            self.release()

    def held_elsewhere(self, name: str) -> bool:
        """Whether another process holds the lock `name` now (its file only opened, never made)."""
        try:
            fd = os.open(self.path / name, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def release(self) -> None:
        """Close the journal and let go of the locks."""
        for handle in self._files.values():
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
        self._files = dict.fromkeys(JOURNAL)
        for fd in self._locks:
            os.close(fd)  # closing the descriptor releases the flock
        self._locks = []

    # ---------------------------------------------------------------------------------------- run.json, journal

    def write_info(self, info: dict[str, Any]) -> None:
        """run.json, atomically; kept to be written again while the folder cannot be."""
        self.info, self._info_due = info, True
        if self.problem is None:
            try:
                self._write_info()
            except OSError as error:
                self._fail(error)

    def _write_info(self) -> None:
        atomic_write_bytes(self.path / INFO_FILE, json.dumps(self.info, indent=2).encode(), make_folder=False)
        self._info_due = False

    def open_journal(self) -> list[str]:
        """Open metrics.jsonl and events.jsonl for appending (compacted first when over their budget), after
        noting their newest lines; returns the files whose last line a kill had cut off (dropped now)."""
        torn = []
        for name in JOURNAL:
            try:
                if drop_torn_line(self._journal_path(name)):
                    torn.append(f"{name}.jsonl")
            except OSError as error:  # a read-only folder: it is read as it is
                self._fail(error)
        self.last_event = last_json_line(self._journal_path("events"))
        lines = [line for line in (self.last_event, last_json_line(self._journal_path("metrics")))
                 if line is not None and all(isinstance(line.get(key), (int, float)) for key in ("iteration", "time"))]
        if lines:  # the newer of the two (after a rewind, the event is; after a step, the metrics line)
            newest = max(lines, key=lambda line: line["time"])
            self.reached = {"iteration": int(newest["iteration"]), "branch": int(newest.get("branch", 0))}
        if self.problem is None:
            try:
                self._open_files()
            except OSError as error:
                self._fail(error)
        return torn

    def _journal_path(self, name: str) -> Path:
        return self.path / f"{name}.jsonl"

    def _open_files(self) -> None:
        """(Re)open the journal, compacted when over its budget: metrics get three quarters, events the rest
        (journal.py; under a second for 200,000 lines)."""
        for name, handle in self._files.items():
            if handle is not None:
                handle.close()
        self._files = dict.fromkeys(JOURNAL)
        metrics, events = (self._journal_path(name) for name in JOURNAL)
        try:
            compact_metrics(metrics, int(self.journal_bytes * 0.75))
            compact_events(events, int(self.journal_bytes * 0.25))
            self._compact_at = self.journal_bytes
        except OSError:  # no room to rewrite them: keep appending, and try again once they grew a quarter more
            self._compact_at = 1.25 * sum(path.stat().st_size for path in (metrics, events) if path.exists())
        stat = os.stat(self.path)
        # unbuffered: a failed write leaves no bytes in a buffer to turn up later in the middle of another line
        self._files = {name: open(self._journal_path(name), "ab", buffering=0) for name in JOURNAL}
        self._identity = (stat.st_dev, stat.st_ino)

    def append(self, name: str, line: dict[str, Any]) -> None:
        """One line into metrics.jsonl or events.jsonl; held in memory while the folder cannot be written."""
        data = (json.dumps(line, default=_plain) + "\n").encode()
        if self.problem is None and self._files[name] is not None:
            try:
                _write_all(self._files[name], data)
            except OSError as error:
                self._fail(error)
            else:
                if sum(handle.tell() for handle in self._files.values()) > self._compact_at:
                    try:
                        self._open_files()
                    except OSError as error:
                        self._fail(error)
                return
        held = self._held[name]
        self._dropped += len(held) == held.maxlen
        held.append(data)

    # ------------------------------------------------------------------------------------------------- health

    def free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.path).free
        except OSError:
            return 0

    def can_write(self, size: int = 0) -> bool:
        """Whether a file of `size` bytes may be written now (the snapshot writer asks before each file)."""
        return self.problem is None and self.free_bytes() - size >= MIN_FREE_BYTES

    def tick(self, now: float) -> None:
        """Look at the folder when due (see the module docstring); cheap between."""
        if now < self._next_look:
            return
        if self.problem is None:
            self._next_look = now + CHECK_SECONDS
            if (problem := self._look()) is not None:
                self._set_problem(problem)
        else:
            self._next_look = now + RETRY_SECONDS
            self._recover()

    def take_changes(self) -> list[StorageChange]:
        changes, self._changes = self._changes, []
        return changes

    def close(self) -> int:
        """A last try to write what is held, then let go of everything; returns the journal lines lost."""
        if self.problem is not None:
            self._recover()
        lost = self._dropped + sum(len(held) for held in self._held.values())
        self.release()
        return lost

    def _look(self) -> str | None:
        """The folder's problem now (None when it is healthy); a folder replaced by another of its name (deleted
        and made again) is taken at once: the journal is reopened there and run.json written again."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return self.health()
        if self._identity is not None and (stat.st_dev, stat.st_ino) != self._identity:
            replaced = f"the run folder {self.path} was deleted and made again: what it held is lost"
            self._changes += [StorageChange(replaced, None), StorageChange(None, replaced)]
            try:
                self._reopen()
            except OSError as error:
                return self._describe(error)
        return self.health()

    def health(self) -> str | None:
        """Why files cannot be written in the folder now (what is wrong and what to do), or None; touches nothing
        (`service status` asks it too)."""
        if not self.path.is_dir():
            return self._describe(FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)))
        if (problem := write_problem(self.path)) is not None:
            return self._describe(problem)
        if self.free_bytes() < MIN_FREE_BYTES:
            return self._describe(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        return None

    def _recover(self) -> None:
        """Make a vanished folder again where its parent allows, then write what was held."""
        if not self.path.is_dir() and self.path.parent.is_dir() and write_problem(self.path.parent) is None:
            with contextlib.suppress(FileExistsError):
                self.path.mkdir()
        if (problem := self.health()) is not None:
            self._set_problem(problem)
            return
        try:
            self._reopen()
        except OSError as error:
            self._set_problem(self._describe(error))
            return
        self._changes.append(StorageChange(None, self.problem, time.monotonic() - self._since, self._dropped))
        self.problem, self._dropped = None, 0

    def _reopen(self) -> None:
        """run.json first where it is due (also in a folder made again, by anyone), then the journal, the lines held
        while it could not be written last."""
        stat = os.stat(self.path)
        if self._identity is not None and (stat.st_dev, stat.st_ino) != self._identity:
            self._info_due = self.info is not None
        if self._info_due:
            self._write_info()
        for name in JOURNAL:
            drop_torn_line(self._journal_path(name))  # a write that failed half way
        self._open_files()
        for name, held in self._held.items():
            while held:
                _write_all(self._files[name], held[0])
                held.popleft()

    def _fail(self, error: OSError) -> None:
        for handle in self._files.values():
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
        self._files = dict.fromkeys(JOURNAL)
        self._set_problem(self._describe(error))

    def _set_problem(self, problem: str) -> None:
        if problem == self.problem:
            return
        if self.problem is None:
            self._since = time.monotonic()
            self._next_look = time.monotonic() + RETRY_SECONDS
        self._changes.append(StorageChange(problem, self.problem))
        self.problem = problem

    def _describe(self, error: OSError) -> str:
        """What is wrong with the folder and what to do, in one line."""
        if not self.path.is_dir():
            return (f"the run folder {self.path} has gone (deleted or unmounted): training goes on, unsaved; it is "
                    "made again as soon as its parent folder can be written")
        unsaved = "training goes on, unsaved, and saving resumes by itself"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return (f"the disk of {self.path} is full ({size_text(self.free_bytes())} free): {unsaved} once some "
                    "space is freed")
        if error.errno == errno.EROFS:
            return f"the disk of {self.path} is read-only: {unsaved} once it is writable again (remount it)"
        return (f"{self.path} cannot be written ({error.strerror or first_line(error)}): {unsaved} once it can be; "
                "check the disk and the folder's permissions")


def _write_all(handle: Any, data: bytes) -> None:
    """Every byte of `data` (an unbuffered file may take part of it), or OSError."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


def _plain(value: Any) -> Any:
    """JSON for what commands carry beyond numbers and text (the renderer's settings dataclass)."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else repr(value)


def snapshot_file(run_dir: str | Path, iteration: int) -> Path:
    """Where the snapshot of `iteration` is kept (SnapshotStore.path)."""
    return Path(run_dir) / "snapshots" / f"it{iteration:08d}.pt"


def check_run_folder(run_dir: str | Path, gan: GAN) -> dict[str, Any] | None:
    """`RunFolder.check` of a folder by its path."""
    return RunFolder(run_dir).check(gan)
