"""Running the installation until it is stopped, on a window or headless, on a run folder held for the run: where
every collaborator of the live loop is built (`live_show`) and passed in, and closed again in order.

Stopping (SIGINT, SIGTERM, SIGHUP, quit, `--seconds`) always goes the same way: the videos are finalised, the engine
takes its final snapshot, the last status is written, GL and shared memory are released, the last picture is saved,
and `RunReport` says what was written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..control.director import FILE_NAME as DIRECTOR_FILE, Director
from ..control.midi import MidiController
from ..control.service import ControlService
from ..control.web import RunFolderView
from ..display.presenter import Presenter
from ..display.sinks import SinkContext
from ..display.surface import Surface
from ..engine.process import EngineProcess, EngineUnkillable
from ..exports.background import LoopExports
from ..engine.drawer import FrameDrawer, WalkSettings
from ..frames import FrameChannel, SharedMemoryError, ring_slots
from ..outputs import KINDS as OUTPUT_KINDS
from ..recording.live import HeadlessVideo, LiveRecorder
from ..exits import TryAgain
from ..signals import StopSignals
from .hud import Notices
from .loop import LiveLoop
from .notify import Notifier
from .outputs import Outputs
from .picture import Picture
from .stage import Stage
from .logfile import LOG_FILE
from .status import STOPPED, THUMBNAIL_DIR, LiveStatus, RemoteChecks, write_status
from .supervisor import EngineStuck, EngineSupervisor, RunRefused

if TYPE_CHECKING:  # the preset is read here, never imported at run time (tests/test_structure.py)
    from ..presets import Preset

log = logging.getLogger(__name__)

class DisplayError(TryAgain):
    """The picture cannot be shown here now (no GL or display yet at boot, not enough shared memory); one line, and
    a start the service tries again."""


def bind_controls(preset: Preset, run_dir: Path) -> ControlService:
    """The OSC and HTTP (OSCQuery, the status page) servers, bound before anything else starts or is written, so a
    taken port is one line (OscError: exit 75); started by entering it."""
    folder = RunFolderView(run_dir, preset.record.folder_in(run_dir), run_dir / LOG_FILE, run_dir / THUMBNAIL_DIR)
    control = ControlService(preset.osc, http=preset.http, folder=folder)
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
    try_again: bool = False  # the engine is stuck where nothing here can free it: a later start may work (75)

    def summary(self, run_dir: Path) -> str:
        """One line of what is on disk: the final snapshot only where its file is there, each video's length as
        read from the file."""
        from ..engine.runfolder import snapshot_file

        wrote = [f"{path} ({_video_seconds(path)})" for path in self.videos]
        if self.picture is not None:
            wrote.append(str(self.picture))
        parts = [f"stopped ({self.stopped_by})" if self.stopped_by else "stopped"]
        if self.iteration is not None:
            saved = snapshot_file(run_dir, self.iteration).is_file()
            parts.append(f"final snapshot at iteration {self.iteration}" if saved else
                         f"at iteration {self.iteration}, whose snapshot could not be written")
        parts.append("wrote " + ", ".join(wrote) if wrote else "wrote no video or picture")
        return "; ".join(parts)


def _video_seconds(path: Path) -> str:
    """A video's length as written (its frames counted, not the frames that were sent to ffmpeg)."""
    from ..recording import video_length

    try:
        frames, seconds = video_length(path)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return "unreadable"
    return f"{seconds:.1f} s, {frames} frames"


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


@contextlib.contextmanager
def live_show(preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, surface: Surface,
              control: ControlService, poster: np.ndarray | None = None, headless: bool = False) -> Iterator[LiveLoop]:
    """The live loop with everything it drives, built here and passed in: the frame channel, the presenter, the
    engine process and its supervisor, the controllers (`control`'s OSC, the director, MIDI), the stage actions act
    on, the recorder, the exports, the outputs (the headless video when `headless`), the remote checks. On leaving,
    they close in the order that keeps what was written: the outputs' files first, then the exports, the engine (its
    final snapshot) and the last status, then GL and shared memory."""
    display, notices = preset.display, Notices()
    with contextlib.ExitStack() as stack:
        try:
            channel = FrameChannel.create(resolution, resolution,
                                          ring_slots(resolution, preset.walk.grid, preset.render.max_fps))
        except SharedMemoryError as error:
            raise DisplayError(error.strerror) from None
        stack.callback(channel.close)
        presenter = Presenter(surface.ctx, *surface.size, letterbox=display.letterbox, mode=display.mode)
        stack.callback(presenter.release)
        stopping = stack.enter_context(contextlib.ExitStack())  # the engine's stop: after the outputs' (below)
        population = any(getattr(config, "needs_population", False) for config in preset.outputs)
        drawer = FrameDrawer(channel.name, preset.walk, preset.render,
                             WalkSettings.start(preset.walk, display.show_grid, population))
        engine = EngineProcess(checkpoint, run_dir, preset.engine, resolution=resolution,
                               use_ema=not preset.model.raw_generator, drawer=drawer)
        supervisor = EngineSupervisor(engine, notices.error, hang_seconds=preset.engine.hang_seconds)
        recorder = LiveRecorder(preset.record, run_dir, surface.ctx, notices.say)
        exports = LoopExports(run_dir, recorder.folder, preset.record, preset.source, notices.say)
        stack.callback(exports.close)
        sinks = [recorder]
        if headless:
            video = dataclasses.replace(preset.record, codec="h264", fps=display.fps, max_minutes=0.0, folder=".",
                                        hud=True)
            sinks.append(HeadlessVideo(video, run_dir, surface.ctx, log.warning))  # said in the log, not on screen

        def report(text: str) -> None:  # an output's fault: on screen, in the log, to the controllers
            notices.error(text)
            control.alert(text)

        outputs = Outputs(sinks, notices.error)
        stack.callback(outputs.close)  # first of all: the files are finalised whatever happens next
        context = SinkContext(surface.ctx, report, headless, display.letterbox)
        for config in preset.outputs:  # [[output]]: each kind's sink (outputs/__init__.py KINDS)
            outputs.sinks.append(OUTPUT_KINDS[config.kind][1](config, context))
        midi = stack.enter_context(MidiController(preset.midi, control.inbox, run_dir, notices.say))
        print(f"uncanny: {midi.describe()}", file=sys.stderr)
        picture = Picture(channel, presenter, display.crossfade == 0, poster, drawer.settings.epoch)
        stage = Stage(engine, drawer, presenter, preset.walk.grid, recorder, exports, control, notices.say,
                      display.hud, lambda: picture.shown_iteration)
        loop = LiveLoop(surface, presenter, picture, stage, supervisor,
                        Director(preset.gallery, run_dir / DIRECTOR_FILE,
                                 journey_iterations=preset.engine.journey_iterations),
                        control, midi, recorder, exports, outputs,
                        RemoteChecks(run_dir.resolve(), preset.logs, notices.say, time.monotonic()), notices,
                        run_dir.resolve(), str(checkpoint))
        engine.start()
        stopping.callback(_stop_engine, loop)
        yield loop


def _stop_engine(loop: LiveLoop) -> None:
    """The engine's clean stop (its final snapshot), then the last status.json, phase STOPPED, so a remote check
    reads a stop as one, not as a hang; also after a stop while the engine was still loading. Not when the engine
    refused the run folder: then it is another installation's, and so is its status."""
    engine = loop.supervisor.engine
    try:
        engine.stop()
    except EngineUnkillable as error:  # stuck in the driver: it cannot stop, but the status can say so
        log.warning("%s", error)
    final = engine.poll()  # the state it published as it stopped
    if final.status == "refused":
        return
    status = dataclasses.replace(LiveStatus.of(loop.state, loop.remote.config.status_every), phase=STOPPED,
                                 iteration=final.iteration, engine_status=final.status, fps=0.0)
    try:
        write_status(loop.run_dir, status)
    except OSError as error:
        log.warning("cannot write the final status in %s: %s", loop.run_dir, error.strerror or error)


def _open_surface(preset: Preset, headless: bool) -> Surface:
    """The window, or for `headless` an offscreen framebuffer of the [display] size; DisplayError when it cannot be
    opened here."""
    display = preset.display
    if headless:
        from ..display.offscreen import OffscreenError, open_offscreen

        try:
            return open_offscreen(display.width, display.height, "headless mode")
        except OffscreenError as error:
            raise DisplayError(str(error)) from None
    from ..display.window import Window

    try:
        return Window(display.width, display.height, fullscreen=display.fullscreen, monitor=_monitor(display.monitor))
    except Exception as error:  # no X server, no GL 3.3, no libglfw: environment problems, not bugs
        raise DisplayError(f"cannot open the window ({error}); check DISPLAY and the GL driver, or use --headless") \
            from None


def run(preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, seconds: float | None, stop: StopSignals,
        control: ControlService, poster: np.ndarray | None = None, headless: bool = False) -> RunReport:
    """The installation until quit, the window closed, a stop signal or `seconds` have passed: full-screen (or in a
    window), or `headless` offscreen into `run_dir/live-DATE-TIME.mp4` (a new file whenever ffmpeg has to be
    restarted) at the preset's fps. `control`: the servers, bound and started (bind_controls). The last picture is
    saved as `last_frame-DATE-TIME.png`."""
    surface = _open_surface(preset, headless)
    report = RunReport()
    image = None
    with surface:
        if not headless:
            from ..control.keys import key_handlers

            surface.keys_enabled = preset.display.keys
            surface.handlers.update(key_handlers(control.inbox.put))
        notifier = Notifier()  # systemd: READY=1 at the first refresh presented, WATCHDOG=1 while they come
        with live_show(preset, checkpoint, resolution, run_dir, surface, control, poster, headless) as loop:
            if not headless:
                loop.stage.window_actions.update(fullscreen=surface.toggle_fullscreen, quit=surface.request_close)
            try:
                image = loop.run(stop, seconds, preset.display.fps, notifier.presented)
            except RunRefused as error:
                report.error, report.refused = str(error), True
            except EngineStuck as error:
                report.error, report.try_again = str(error), True
            finally:
                notifier.stopping()
                notifier.close()
        # closed: every file is finalised and the engine has published its last state
        report.videos = [path for sink in loop.outputs.sinks for path in getattr(sink, "files", ())]
        report.iteration = loop.supervisor.engine.poll().saved_iteration  # only a snapshot on disk is claimed
        report.stopped_by = stop.name or ("--seconds" if seconds is not None and not surface.should_close
                                          else "quit" if not headless else "")
    _save_picture(run_dir, image, report)
    return report
