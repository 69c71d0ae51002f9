"""Loop exports asked for during the show (/uncanny/record/loop): `run_installation.py loop` as a child process.

The export renders offscreen from a saved snapshot, so it needs nothing from the live process: it runs in its own
session at the lowest CPU priority (nice 19), its output goes to a temporary file, and the display only polls
whether it has exited, once per refresh, never waiting on it. One export at a time: a second request while one
runs is refused with a line naming the running one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..recording import CODECS, RecordConfig, claim_partial, partial_path

# the folder holding this very package (a checkout, or site-packages for a wheel, which has no run_installation.py):
# the export child imports the same code as the show, run as `python -P -m installation` so its working folder
# cannot shadow it
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
NICE = 19  # the lowest priority: the export takes only the CPU the show leaves
STOP_SECONDS = 5.0  # an export still running when the installation stops gets this long after SIGTERM


class LoopExports:
    """`start()` one export of the run folder's snapshots into `folder`; `poll()` each refresh.

    `status` is what /uncanny/state/export shows: the finished file's path, or the line saying why it failed.
    """

    def __init__(self, run_dir: Path, folder: Path, config: RecordConfig, preset_source: str,
                 say: Callable[[str], None]) -> None:
        """`preset_source`: the live preset's file (Preset.source), so the loop walks with the same keyframes,
        truncation and picture; the built-in defaults otherwise."""
        self.run_dir, self.folder, self.say = run_dir, folder, say
        self.codec, self.fps, self.encoder = config.codec, config.fps, config.encoder
        self._preset = ["--preset", preset_source] if Path(preset_source).is_file() else []
        self.status = ""
        self._process: subprocess.Popen | None = None
        self._logs: tuple[IO[bytes], IO[bytes]] | None = None  # its stdout (the path) and stderr (why it failed)
        self._out: Path | None = None
        self._failed: Callable[[str], None] = _nobody

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self, iteration: int, seconds: float, size: tuple[int, int], grid: int, walk_seed: int,
              failed: Callable[[str], None]) -> bool:
        """Export `seconds` of the walk of the snapshot at or before `iteration` at the output `size` (grid: N for
        the N x N view, 0 for one face). False, said and told to `failed`, when it cannot start."""
        if self._process is not None:
            failed(f"a loop export is still running ({self._out}); wait for /uncanny/state/export")
            return False
        try:
            out = claim_partial(self.folder, f"loop-it{iteration}-{seconds:g}s-{self.codec}",
                                CODECS[self.codec].suffix)
            self._logs = (tempfile.TemporaryFile(), tempfile.TemporaryFile())
            command = [sys.executable, "-P", "-m", "installation", "loop", "--run-dir", str(self.run_dir),
                       "--iteration", str(iteration), "--seconds", f"{seconds:g}", "--fps", f"{self.fps:g}",
                       "--size", f"{size[0]}x{size[1]}", "--codec", self.codec, "--encoder", self.encoder,
                       "--grid", str(grid), "--walk-seed", str(walk_seed), "--threads", "1", *self._preset,
                       "--out", str(out)]
            path = os.pathsep.join(filter(None, (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH"))))
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._logs[0],
                                             stderr=self._logs[1], start_new_session=True,
                                             env={**os.environ, "PYTHONPATH": path})
        except OSError as error:
            text = f"loop export cannot start: {error.strerror or error}"
            self._close_log()
            self.say(text)
            failed(text)
            return False
        with contextlib.suppress(OSError):  # already gone: poll() reports why
            os.setpriority(os.PRIO_PROCESS, self._process.pid, NICE)
        self._out, self._failed = out, failed
        self.say(f"loop export of iteration {iteration} ({seconds:g} s) started: {out}")
        return True

    def poll(self) -> None:
        """Report a finished export (on screen, in `status`, and to its sender when it failed)."""
        process = self._process
        if process is None or process.poll() is None:
            return
        self._process = None
        path = self._last_line(0)
        if process.returncode == 0 and path and Path(path).is_file():
            self.status = path
            self.say(f"loop export finished: {path}")
        else:
            self.status = f"loop export failed (exit {process.returncode}): {self._last_line(1) or 'no output'}"
            self.say(self.status)
            self._failed(self.status)
            if self._out is not None and partial_path(self._out).exists() and \
                    partial_path(self._out).stat().st_size == 0:
                partial_path(self._out).unlink()  # the name claimed for it, never written
        self._close_log()

    def close(self) -> None:
        """Stop a running export (the installation is stopping); its partial file stays for recovery."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self.say(f"loop export stopped with the installation: {self._out} is incomplete")
        self._close_log()

    def _last_line(self, stream: int) -> str:
        """The last non-empty line the export wrote to stdout (0) or stderr (1); progress bars end in \\r."""
        if self._logs is None:
            return ""
        log = self._logs[stream]
        log.seek(0)
        lines = [line.strip() for line in log.read().decode(errors="replace").replace("\r", "\n").splitlines()]
        return next((line for line in reversed(lines) if line), "")

    def _close_log(self) -> None:
        for log in self._logs or ():
            log.close()
        self._logs = None


def _nobody(_text: str) -> None:
    """No one to tell."""
