"""The one render loop, for a window and headless alike: the `Surface` (display/surface.py) is the only difference.

Each refresh, in this order:
1. controllers' actions: the gallery director's join the inbox (keys, OSC, MIDI, web put theirs there), the inbox is
   drained once and each action applied on the `Stage` (engine commands, display effects), the MIDI controller
   watching them (MIDI learn);
2. the picture: the frames that came from the engine, played at their moments (picture.py);
3. the engine is looked after (supervisor.py: restarts, hangs);
4. one `ControlState` snapshot of the whole show is made and published: OSC feedback (with the engine's refusals
   for the senders of the refused commands), OSCQuery, MIDI feedback, the HUD and status.json all read it and
   nothing else;
5. the refresh is drawn; the outputs' readbacks run inside it (outputs.py), none able to block the loop; the remote
   checks (status.json, thumbnails) are fed; further windows draw the same frames their own way;
6. the surface presents it, and systemd's watchdog is fed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from ..control.director import Director
from ..control.midi import MidiController
from ..control.service import ControlService
from ..control.state import ControlState
from ..display.presenter import Presenter
from ..display.surface import Surface, read_framebuffer
from ..exports.background import LoopExports
from ..recording.live import LiveRecorder
from ..signals import StopSignals
from .hud import Notices, hud_text
from .outputs import Outputs
from .picture import Picture
from .stage import Stage
from .status import LiveStatus, RemoteChecks, disk_free
from .supervisor import EngineSupervisor

DISK_CHECK_SECONDS = 5.0  # between measures of the free space where the run folder is


class LiveLoop:
    """Ticks the show once per refresh; `run()` until stopped. The collaborators are built in live/run.py."""

    def __init__(self, surface: Surface, presenter: Presenter, picture: Picture, stage: Stage,
                 supervisor: EngineSupervisor, director: Director, control: ControlService, midi: MidiController,
                 recorder: LiveRecorder, exports: LoopExports, outputs: Outputs, remote: RemoteChecks,
                 notices: Notices, run_dir: Path, model: str) -> None:
        self.surface, self.presenter, self.picture, self.stage = surface, presenter, picture, stage
        self.supervisor, self.director, self.control, self.midi = supervisor, director, control, midi
        self.recorder, self.exports, self.outputs, self.remote = recorder, exports, outputs, remote
        self.notices, self.run_dir, self.model = notices, run_dir, model
        self.state = ControlState()  # the newest snapshot
        self.refreshes = 0
        self.started = time.monotonic()
        self._refreshes: deque[float] = deque(maxlen=60)
        self._disk = (0, -DISK_CHECK_SECONDS)  # (bytes free, when measured)
        # status.json is written once the engine is past its start: one that refused the run folder (another
        # installation holds it) must not overwrite that installation's status
        self.folder_ours = False

    @property
    def fps(self) -> float:
        """Refreshes presented per second, over the last 60."""
        times = self._refreshes
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def tick(self) -> ControlState:
        """One refresh, drawn into the surface's framebuffer (bound by the caller, or by `run`)."""
        now, wall = time.monotonic(), time.time()
        self._refreshes.append(now)
        for action in self.director.tick(now, datetime.now(), self.state):
            self.control.inbox.put(action)
        for action in self.control.inbox.drain():
            self.midi.observe(action)  # MIDI learn: what to learn, and the control last touched
            self.stage.apply(action)
        self.picture.update(wall, now, self.stage.walk.grid)
        engine = self.supervisor.watch(now)  # its refusals reach their senders by command id (OSC feedback)
        self.exports.poll()
        self.state = state = self._snapshot(now)
        self.control.publish(state)
        self.midi.publish(state)
        size = self.surface.size
        if (self.presenter.width, self.presenter.height) != size:
            self.presenter.resize(*size)
        hud = hud_text(state, self.stage.hud, self.director.describe())
        self.presenter.set_hud(hud)
        self.presenter.recording_dot = self.recorder.recording
        self.presenter.render(now, *self.outputs.captures(now, size))
        self.folder_ours = self.folder_ours or engine.status != "starting"
        if self.control.picture.wanted(now):  # a status page is open: the newest picture every few seconds
            self.control.picture.offer(read_framebuffer(self.surface.ctx, size), now)
        if self.folder_ours:
            self.remote.tick(now, lambda: LiveStatus.of(state, self.remote.config.status_every),
                             lambda: read_framebuffer(self.surface.ctx, size))
        if self.outputs.draw(self.picture.shown, hud, self.presenter.blackout(now), now):
            self.surface.begin()  # the further windows made their own GL contexts current
        self.refreshes += 1
        return state

    def _snapshot(self, now: float) -> ControlState:
        """The one state of the show this refresh."""
        s, walk, stage = self.supervisor.state, self.stage.walk, self.stage
        if now - self._disk[1] >= DISK_CHECK_SECONDS:
            self._disk = (disk_free(self.run_dir), now)
        controls = {"lr": s.lr, "loss": s.objective, "batch": s.batch, "speed": s.limit,
                    "journey_minutes": s.journey_minutes,
                    "walk_period": walk.period, "walk_truncation": walk.truncation, "walk_seed": walk.seed,
                    "grid": int(walk.grid), "hud": int(stage.hud), "blackout": self.presenter.blackout_target}
        if bool(s.snapshots_suspended) != bool(self.state.snapshots_suspended):  # said as it begins and ends
            if s.snapshots_suspended:
                self.notices.error(f"snapshots suspended: {s.snapshots_suspended}")
            else:
                self.notices.say("snapshots are written again")
        # what stays true stays on screen after its message has gone: a restart that waits (a crash loop backing
        # off), a GPU lost, a run folder or snapshots that cannot be written
        lasting = (self.supervisor.notice(now), s.degraded, s.storage,
                   s.snapshots_suspended and f"snapshots suspended: {s.snapshots_suspended}")
        message = "\n".join(line for line in (self.notices.current(now), *lasting) if line)
        return ControlState(
            iteration=s.iteration, shown_iteration=self.picture.shown_iteration, status=s.status, paused=s.paused,
            loss=s.loss, d=s.probe_d,
            diversity=s.diversity, collapsed=s.collapsed, fps=self.fps, steps_per_second=s.steps_per_second,
            recording=self.recorder.recording, recording_path=self.recorder.path, export=self.exports.status,
            cycle=self.director.cycle, phase=self.director.phase, snapshots=s.snapshots, controls=controls,
            midi_learn=self.midi.learning, outputs=self.outputs.states(), branch=s.branch, landed=s.landed,
            refusals=s.refusals, device=s.device, degraded=s.degraded or "",
            snapshots_suspended=s.snapshots_suspended or "", saved_iteration=s.saved_iteration,
            snapshot_bytes_hour=s.snapshot_bytes_hour, batch_limit=s.batch_limit, message=message,
            last_error=self.notices.last_error, storage=s.storage or "",
            uptime=round(now - self.started, 1), disk_free=float(self._disk[0]),
            engine_restarts=self.supervisor.restarts,
            model=self.model, run_dir=str(self.run_dir))

    def run(self, stop: StopSignals, seconds: float | None, fps: float,
            presented: Callable[[float], None] = lambda now: None) -> np.ndarray:
        """Refresh until the surface closes, a stop signal or `seconds` have passed; an unpaced surface (offscreen)
        at `fps`. `presented(now)` after each refresh (systemd's watchdog). Returns the last picture, drawn once more
        after the end so what the audience saw is kept."""
        start = due = time.monotonic()
        surface = self.surface
        while not surface.should_close and not stop.requested and \
                (seconds is None or time.monotonic() - start < seconds):
            surface.begin()
            self.tick()
            surface.present()
            presented(time.monotonic())
            if not surface.paced:
                due = max(due + 1 / fps, time.monotonic() - 1 / fps)  # a late refresh is not made up for in a burst
                time.sleep(max(0.0, due - time.monotonic()))
        surface.begin()
        self.tick()
        return read_framebuffer(surface.ctx, surface.size).copy()
