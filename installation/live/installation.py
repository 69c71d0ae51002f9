"""The display side of the live installation: frames to the screen, controls to the engine, the HUD."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..control.actions import Action
from ..control.director import FILE_NAME as DIRECTOR_FILE, Director
from ..control.service import ControlService
from ..control.state import ControlState
from ..display.presenter import Presenter
from ..engine import EngineProcess
from ..engine.drawer import FrameDrawer, WalkSettings
from ..engine.state import EngineState
from ..frames import Frame, FrameChannel, SharedMemoryError, ring_slots
from ..control.config import OscConfig
from ..recording.live import LiveRecorder
from ..exports.background import LoopExports
from .hud import hud_text
from .motion import FrameQueue
from .status import STOPPED, LiveStatus, RemoteChecks, disk_free, read_framebuffer, write_status
from .supervisor import EngineSupervisor

if TYPE_CHECKING:  # the preset is read here, never imported at run time (tests/test_structure.py)
    from ..presets import Preset

log = logging.getLogger(__name__)

MESSAGE_SECONDS = 10.0  # how long a message stays on screen after it was reported


class DisplayError(Exception):
    """The picture cannot be shown here (no GL, no display, not enough shared memory); one line."""


class Installation:
    """Engine process + frame channel + presenter; `tick()` once per screen refresh.

    Controls arrive as Actions (keys, OSC, the director) in `control.inbox`; each refresh drains it once and applies
    them: engine actions go down the engine's command pipe, walk and grid changes to the renderer as one `render`
    command, HUD and blackout apply here. `control_state()` is what flows back to the controllers, each refresh.
    """

    def __init__(self, preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, ctx: Any,
                 size: tuple[int, int], control: ControlService | None = None,
                 poster: np.ndarray | None = None) -> None:
        self.preset = preset
        display = preset.display
        try:
            self.channel = FrameChannel.create(resolution, resolution,
                                               ring_slots(resolution, preset.walk.grid, preset.render.max_fps))
        except SharedMemoryError as error:
            raise DisplayError(error.strerror) from None
        try:
            self.presenter = Presenter(ctx, *size, letterbox=display.letterbox, mode=display.mode)
        except BaseException:
            self.channel.close()
            raise
        # The display's copy of the renderer is what every (re)started engine process gets, so walk changes
        # made here survive an engine restart.
        self.renderer = FrameDrawer(self.channel.name, preset.walk, preset.render,
                                    WalkSettings.start(preset.walk, display.show_grid))
        self.engine = EngineProcess(checkpoint, run_dir, preset.engine, resolution=resolution,
                                    use_ema=not preset.model.raw_generator, drawer=self.renderer)
        self.supervisor = EngineSupervisor(self.engine, self.say, hang_seconds=preset.engine.hang_seconds)
        self.director = Director(preset.gallery, run_dir / DIRECTOR_FILE,  # the [gallery] cycle and hours
                                 journey_iterations=preset.engine.journey_iterations)
        self.hud = display.hud
        self.control = control if control is not None else ControlService(OscConfig(enabled=False))
        self._engine_action: Action | None = None  # the last engine action: its sender hears the engine's refusals
        self.motion = FrameQueue()
        self._cut = display.crossfade == 0  # show each frame until the next one's moment, no blending
        if poster is not None:  # a first picture at once, while the engine process starts (walk time 0)
            epoch = self.renderer.settings.epoch
            self.motion.add(Frame(poster, 0, 0, 0.0, epoch, epoch), time.time())
        self.last_sequence = 0  # of the newest frame received
        self.frame_iteration = 0  # the training iteration of the weights that drew the frame on screen
        self._refreshes: deque[float] = deque(maxlen=60)
        self._message: tuple[str, float] | None = None
        self.run_dir, self.model = Path(run_dir).resolve(), str(checkpoint)
        self.started = time.monotonic()
        self.remote = RemoteChecks(self.run_dir, preset.logs, self.say, self.started)
        # status.json is written once the engine is past its start: one refused the run folder (another installation
        # holds it) must not overwrite that installation's status
        self._folder_ours = False
        try:
            self.recorder = LiveRecorder(preset.record, run_dir, ctx, self.say)
            self.loops = LoopExports(run_dir, self.recorder.folder, preset.record, preset.source, self.say)
            self.engine.start()
        except BaseException:
            self.presenter.release()
            self.channel.close()
            raise

    @property
    def state(self) -> EngineState:
        return self.supervisor.state

    @property
    def fps(self) -> float:
        """Refreshes presented per second, over the last 60."""
        times = self._refreshes
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    # ------------------------------------------------------------------------------------------ controls
    def apply(self, action: Action) -> bool:
        """Apply one validated action; False for the window's own (fullscreen, quit), left to the run loop."""
        if action.spec.kind == "engine":
            self._engine_action = action
            self.send(action.engine_command(), action)
            return True
        value, settings = action.value, self.renderer.settings
        match action.name:
            case "walk_period":
                self.set_walk(period=value)
            case "walk_truncation":
                self.set_walk(truncation=value)
            case "walk_seed":
                self.set_walk(seed=value)
            case "grid":
                self.set_walk(grid=not settings.grid if value is None else bool(value))
            case "hud":
                self.hud = not self.hud if value is None else bool(value)
            case "blackout":
                level, seconds = value if isinstance(value, tuple) else (value, 0.0)
                self.set_blackout(level, seconds)
            case "record_start" | "record_stop" | "record_toggle":
                self.recorder.apply(action.name, value, self.frame_iteration,
                                    (self.presenter.width, self.presenter.height), self._teller(action))
            case "record_loop":
                self.loops.start(*value, (self.presenter.width, self.presenter.height),
                                 self.preset.walk.grid if settings.grid else 0, settings.seed, self._teller(action))
            case _:
                return False
        return True

    def control_state(self, recording: str = "") -> ControlState:
        """The state controllers see, with the value each control has now (echoed when it changes)."""
        s, walk = self.state, self.renderer.settings
        controls = {"lr": s.lr, "loss": s.objective, "batch": s.batch, "speed": s.limit,
                    "journey_minutes": s.journey_minutes,
                    "walk_period": walk.period, "walk_truncation": walk.truncation, "walk_seed": walk.seed,
                    "grid": int(walk.grid), "hud": int(self.hud), "blackout": self.presenter.blackout_target}
        return ControlState(iteration=s.iteration, status=s.status, paused=s.paused, loss=s.loss, d=s.probe_d,
                            shown_iteration=self.frame_iteration,
                            diversity=s.diversity, collapsed=s.collapsed, fps=self.fps,
                            steps_per_second=s.steps_per_second, recording=bool(recording),
                            recording_path=recording, export=self.loops.status, cycle=self.director.cycle,
                            phase=self.director.phase, snapshots=s.snapshots, controls=controls)

    def _teller(self, action: Action) -> Callable[[str], None]:
        """Tells the sender of `action` (an OSC controller) that it failed, later too (a recording cut short)."""
        return lambda text: self.control.failed(action, text)

    def live_status(self) -> LiveStatus:
        """What status.json says now."""
        s = self.state
        return LiveStatus(iteration=s.iteration, cycle=self.director.cycle, phase=self.director.phase,
                          fps=round(self.fps, 2), uptime=round(time.monotonic() - self.started, 1),
                          last_error=self._message[0] if self._message else "", engine_status=s.status,
                          engine_restarts=self.supervisor.restarts, steps_per_second=s.steps_per_second,
                          collapsed=s.collapsed, disk_free=disk_free(self.run_dir), recording=self.recorder.path,
                          model=self.model, run_dir=str(self.run_dir), every=self.preset.logs.status_every)

    def _write_stopped_status(self) -> None:
        """The last status.json, phase STOPPED, so a remote check reads a stop as one, not as a hang."""
        if not self._folder_ours or self.state.status == "refused":
            return
        engine = self.engine.poll()  # the state it published as it stopped
        final = dataclasses.replace(self.live_status(), phase=STOPPED, iteration=engine.iteration,
                                    engine_status=engine.status, fps=0.0)
        try:
            write_status(self.run_dir, final)
        except OSError as error:
            log.warning("cannot write the final status in %s: %s", self.run_dir, error.strerror or error)

    def send(self, command: Any, action: Action | None = None) -> None:
        """An engine command; when the engine is down, say so (and tell the action's sender) and keep showing."""
        try:
            self.engine.send(command)
        except Exception as error:
            self.say(f"{command}: {error}")
            if action is not None:
                self.control.failed(action, str(error))

    def set_walk(self, **changes: Any) -> WalkSettings:
        """Change the walk (period, truncation, seed, grid) without a jump; returns the settings now in force."""
        settings = self.renderer.settings
        if "period" in changes:
            settings = settings.with_period(changes.pop("period"))
        settings = settings.replace(**changes)
        self.renderer.settings = settings
        self.send(("render", settings))
        return settings

    def set_blackout(self, level: float, seconds: float = 0.0) -> None:
        self.presenter.set_blackout(level, seconds, time.monotonic())

    def say(self, message: str) -> None:
        """One line in the log and on screen (also with the HUD off) for MESSAGE_SECONDS."""
        log.warning("%s", message)
        self._message = (message, time.monotonic())

    # ------------------------------------------------------------------------------------------ the loop
    def tick(self, size: tuple[int, int]) -> list[Action]:
        """Apply the controls that came, take the newest frame and engine state, look after the engine, draw one
        refresh. Returns the actions left to the run loop (fullscreen, quit)."""
        for action in self.director.tick(time.monotonic(), datetime.now(), self.control.state):
            self.control.inbox.put(action)
        left = [action for action in self.control.inbox.drain() if not self.apply(action)]
        now = time.monotonic()
        self._refreshes.append(now)
        wall = time.time()
        for frame in self.channel.read_since(self.last_sequence):
            self.last_sequence = frame.sequence
            self.motion.add(frame, wall)
        if (shown := self.motion.position(wall)) is not None:
            older, newer, mix = shown
            if self._cut:
                older, mix = (newer, 1.0) if mix >= 1.0 else (older, 0.0)
            self.presenter.show_pair((older.sequence, older.pixels), (newer.sequence, newer.pixels), mix, now)
            self.frame_iteration = (newer if mix >= 0.5 else older).iteration
        errors = self.state.error_count
        state = self.supervisor.watch(now)
        if state.error_count > errors and state.errors and self._engine_action is not None:
            self.control.failed(self._engine_action, state.errors[-1])
        self.loops.poll()
        self.control.publish(self.control_state(self.recorder.path))
        if (self.presenter.width, self.presenter.height) != size:
            self.presenter.resize(*size)
        message = self._message[0] if self._message and now - self._message[1] < MESSAGE_SECONDS else None
        # a restart that waits (a crash loop backing off) stays on screen after its message has gone
        message = "\n".join(line for line in (message, self.supervisor.notice(now)) if line) or None
        self.presenter.set_hud(hud_text(self.state, self.fps, message, self.hud, self.director.describe()))
        self.presenter.recording_dot = self.recorder.recording
        self.presenter.render(now, self.recorder.capture_for(now, size), self.preset.record.hud)
        self._folder_ours = self._folder_ours or self.state.status != "starting"
        if self._folder_ours:
            self.remote.tick(now, self.live_status, lambda: read_framebuffer(self.presenter.ctx, size))
        return left

    def close(self) -> None:
        try:
            try:
                self.recorder.close()  # first: the recording is finalised whatever happens next
                self.loops.close()
            finally:
                self.engine.stop()
                self._write_stopped_status()
        finally:
            self.presenter.release()
            self.channel.close()
