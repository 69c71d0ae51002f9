"""Running the installation until it is stopped: on a window or headless, on a run folder held for the run.

Stopping (SIGINT, SIGTERM, SIGHUP, quit, `--seconds`) always goes the same way: the video is finalised, the engine
takes its final snapshot, GL and shared memory are released, the last picture is saved, and `RunReport` says
what was written.
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..control.service import ControlService
from ..signals import StopSignals
from .installation import DisplayError, Installation
from .notify import Notifier
from .supervisor import RunRefused
from .status import read_framebuffer

if TYPE_CHECKING:  # the preset is read here, never imported at run time (tests/test_structure.py)
    from ..presets import Preset


@contextlib.contextmanager
def open_run_folder(run_dir: Path, gan: Any) -> Iterator[list[Path]]:
    """Hold `run_dir` for this installation for the length of the `with`. A folder that cannot be one, that another
    installation holds, or that the engine would refuse raises RunFolderError (one line) before anything in it is
    touched. Yields the recordings of a killed earlier run that were given playable names."""
    from ..engine.engine import RunFolderError, check_run_folder
    from ..frames import sweep_stale
    from ..recording import recover_partials

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        check_run_folder(run_dir, gan)  # reads only: a refused folder is left exactly as it was
        lock = open(run_dir / ".live.lock", "a")
    except OSError as error:
        raise RunFolderError(f"run folder {run_dir}: cannot be used ({error.strerror or error}); choose a folder "
                             "that can be created and written") from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(f"run folder {run_dir}: another installation is running on it; stop it or "
                                 "choose another --run-dir") from None
        sweep_stale()
        yield recover_partials(run_dir)
    finally:
        lock.close()


def _control(preset: Preset) -> ControlService:
    """The OSC (and OSCQuery) servers, bound before anything else starts so a taken port is one line, exit 2."""
    control = ControlService(preset.osc)
    for line in control.describe():
        print(f"uncanny: {line}", file=sys.stderr)
    return control


def _monitor(text: str) -> int | str | None:
    return int(text) if text.isdigit() else (text or None)


@dataclass
class RunReport:
    """How a live run ended: what it wrote and why it stopped (printed by the CLI as one line)."""

    videos: list[Path] = field(default_factory=list)
    picture: Path | None = None
    iteration: int | None = None
    stopped_by: str = ""  # "SIGTERM", "quit", "--seconds", ...
    error: str | None = None  # set when the run could not go on (the exit code is then non-zero)
    refused: bool = False  # the engine refused the run folder: bad input, exit code 2

    def summary(self) -> str:
        wrote = [f"{path} ({_video_seconds(path)})" for path in self.videos]
        if self.picture is not None:
            wrote.append(str(self.picture))
        parts = [f"stopped ({self.stopped_by})" if self.stopped_by else "stopped"]
        if self.iteration is not None:
            parts.append(f"final snapshot at iteration {self.iteration}")
        parts.append("wrote " + ", ".join(wrote) if wrote else "wrote no video or picture")
        return "; ".join(parts)


def _video_seconds(path: Path) -> str:
    try:
        import imageio_ffmpeg

        frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
        return f"{seconds:.1f} s, {frames} frames"
    except Exception:
        return "unreadable"


def _save_picture(run_dir: Path, image: np.ndarray | None, report: RunReport) -> None:
    """The last picture shown, under a new name (nothing a run wrote is overwritten); a full disk is one line."""
    if image is None:
        return
    from ..images import save_png
    from ..recording import claim_path

    try:
        path = claim_path(run_dir, "last_frame", ".png")
        save_png(path, image)
        report.picture = path
    except OSError as error:
        report.error = report.error or f"could not save the last picture in {run_dir}: {error.strerror or error}"


def _end(installation: Installation, report: RunReport) -> None:
    """Stop the engine (its final snapshot) and release GL and shared memory; note the final iteration."""
    installation.close()
    report.videos += installation.recorder.files  # the performer's recordings, finalised by close()
    report.iteration = installation.engine.poll().iteration  # the state it published as it stopped


def run_window(preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, seconds: float | None,
               stop: StopSignals, poster: np.ndarray | None = None) -> RunReport:
    """Full-screen (or windowed) until quit, closed, a stop signal or `seconds` have passed."""
    from ..control.keys import key_handlers
    from ..display.window import Window

    display = preset.display
    try:
        window = Window(display.width, display.height, fullscreen=display.fullscreen,
                        monitor=_monitor(display.monitor))
    except Exception as error:  # no X server, no GL 3.3, no libglfw: environment problems, not bugs
        raise DisplayError(f"cannot open the window ({error}); check DISPLAY and the GL driver, or use --headless") \
            from None
    report = RunReport()
    control = _control(preset)
    with window, control:
        window.keys_enabled = display.keys
        window.handlers.update(key_handlers(control.inbox.put))
        installation = Installation(preset, checkpoint, resolution, run_dir, window.ctx, window.size, control,
                                    poster)
        window_actions = {"fullscreen": window.toggle_fullscreen, "quit": window.request_close}
        start = time.monotonic()
        image = None
        notifier = Notifier()  # systemd: READY=1 at the first frame on screen, WATCHDOG=1 while frames come
        try:
            while not window.should_close and not stop.requested and \
                    (seconds is None or time.monotonic() - start < seconds):
                window.ctx.screen.use()
                for action in installation.tick(window.size):
                    window_actions[action.name]()
                window.swap()
                notifier.presented(time.monotonic())
                window.poll()
            window.ctx.screen.use()
            installation.tick(window.size)  # once more into the back buffer, to keep what the audience saw
            image = read_framebuffer(window.ctx, window.size)
        except RunRefused as error:
            report.error, report.refused = str(error), True
        finally:
            notifier.stopping()
            notifier.close()
            _end(installation, report)
        report.stopped_by = stop.name or ("--seconds" if seconds is not None and not window.should_close
                                          else "quit")
        _save_picture(run_dir, image, report)
    return report


def run_headless(preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, seconds: float | None,
                 stop: StopSignals, poster: np.ndarray | None = None) -> RunReport:
    """Offscreen (EGL) into `run_dir/live-DATE-TIME.mp4` at the preset's fps (a new file whenever ffmpeg has to be
    restarted), and the last picture as `last_frame-DATE-TIME.png`."""
    from ..display.offscreen import OffscreenError, open_offscreen
    from ..recording import EncoderError
    from ..recording.supervised import SupervisedVideo

    display = preset.display
    try:
        surface = open_offscreen(display.width, display.height, "headless mode")
    except OffscreenError as error:
        raise DisplayError(str(error)) from None
    report = RunReport()
    control = _control(preset)
    with surface, control:
        installation = Installation(preset, checkpoint, resolution, run_dir, surface.ctx,
                                    (display.width, display.height), control, poster)
        image = None
        video = None
        notifier = Notifier()  # systemd: READY=1 at the first frame written, WATCHDOG=1 while frames come
        try:
            try:
                video = SupervisedVideo(run_dir, "live", display.width, display.height, display.fps,
                                        say=installation.say)
            except EncoderError as error:  # ffmpeg cannot start, the disk is already full: nothing can be recorded
                raise DisplayError(f"cannot record the headless video: {error}") from None
            start = time.monotonic()
            due = start
            while not stop.requested and video.stopped is None and \
                    (seconds is None or time.monotonic() - start < seconds):
                surface.use()
                installation.tick((display.width, display.height))  # (no keys headless: no window actions)
                image = surface.read()
                video.write(image)
                notifier.presented(time.monotonic())
                due += 1 / display.fps
                time.sleep(max(0.0, due - time.monotonic()))
        except RunRefused as error:
            report.error, report.refused = str(error), True
        finally:
            notifier.stopping()
            notifier.close()
            if video is not None:
                report.videos = video.close()  # first, so the video is complete whatever happens next
                report.error = report.error or video.stopped
            _end(installation, report)
        report.stopped_by = stop.name or ("--seconds" if seconds is not None else "")
        _save_picture(run_dir, image, report)
    return report
