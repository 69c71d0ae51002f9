"""The display side of the live installation: frames to the screen, controls to the engine, the HUD."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..display.presenter import Presenter
from ..engine import EngineProcess
from ..engine.state import EngineState
from ..frames import FrameChannel
from ..presets import Preset
from .hud import hud_text
from .renderer import FrameRenderer, WalkSettings
from .supervisor import EngineSupervisor

log = logging.getLogger(__name__)

MESSAGE_SECONDS = 10.0  # how long a message stays on screen after it was reported


class DisplayError(Exception):
    """The picture cannot be shown here (no GL, no display, not enough shared memory); one line."""


class Installation:
    """Engine process + frame channel + presenter; `tick()` once per screen refresh.

    Controls: `send(command)` for the engine's commands (pause, back, reset, lr, ...), `set_walk(...)` and
    `toggle_grid()` for what the engine draws, `toggle_hud()` and `set_blackout(...)` for the display itself.
    """

    def __init__(self, preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, ctx: Any,
                 size: tuple[int, int]) -> None:
        self.preset = preset
        display = preset.display
        _check_shared_memory(resolution, preset.walk.grid)
        self.channel = FrameChannel.create(resolution, resolution, max_count=preset.walk.grid**2)
        try:
            crossfade = None if display.crossfade < 0 else display.crossfade
            self.presenter = Presenter(ctx, *size, crossfade=crossfade, letterbox=display.letterbox,
                                       mode=display.mode)
        except BaseException:
            self.channel.close()
            raise
        # The display's copy of the renderer is what every (re)started engine process gets, so walk changes
        # made here survive an engine restart.
        self.renderer = FrameRenderer(self.channel.name, preset.walk, preset.render,
                                      WalkSettings.start(preset.walk, display.show_grid))
        self.engine = EngineProcess(checkpoint, run_dir, preset.engine, resolution=resolution,
                                    use_ema=not preset.model.raw_generator, between_steps=self.renderer)
        self.supervisor = EngineSupervisor(self.engine, self.say)
        self.hud = display.hud
        self.last_sequence = 0  # of the newest frame shown
        self.frame_iteration = 0  # the training iteration of the weights that drew it
        self._refreshes: deque[float] = deque(maxlen=60)
        self._message: tuple[str, float] | None = None
        try:
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
    def send(self, command: Any) -> None:
        """An engine command; when the engine is down, say so and keep showing."""
        try:
            self.engine.send(command)
        except Exception as error:
            self.say(f"{command}: {error}")

    def set_walk(self, **changes: Any) -> WalkSettings:
        """Change the walk (period, truncation, seed, grid) without a jump; returns the settings now in force."""
        settings = self.renderer.settings
        if "period" in changes:
            settings = settings.with_period(changes.pop("period"))
        settings = settings.replace(**changes)
        self.renderer.settings = settings
        self.send(("render", settings))
        return settings

    def toggle_grid(self) -> None:
        self.set_walk(grid=not self.renderer.settings.grid)

    def toggle_hud(self) -> None:
        self.hud = not self.hud

    def set_blackout(self, level: float, seconds: float = 0.0) -> None:
        self.presenter.set_blackout(level, seconds, time.monotonic())

    def say(self, message: str) -> None:
        """One line in the log and on screen (also with the HUD off) for MESSAGE_SECONDS."""
        log.warning("%s", message)
        self._message = (message, time.monotonic())

    # ------------------------------------------------------------------------------------------ the loop
    def tick(self, size: tuple[int, int]) -> None:
        """Take the newest frame and engine state, look after the engine, draw one refresh."""
        now = time.monotonic()
        self._refreshes.append(now)
        frame = self.channel.read(newer_than=self.last_sequence)
        if frame is not None:
            self.last_sequence, self.frame_iteration = frame.sequence, frame.iteration
            if len(frame.pixels) > 1:
                self.presenter.set_grid(frame.pixels, now)
            else:
                self.presenter.set_frame(frame.pixels[0], now)
        self.supervisor.watch(now)
        if (self.presenter.width, self.presenter.height) != size:
            self.presenter.resize(*size)
        message = self._message[0] if self._message and now - self._message[1] < MESSAGE_SECONDS else None
        self.presenter.set_hud(hud_text(self.state, self.fps, message, self.hud))
        self.presenter.render(now)

    def close(self) -> None:
        try:
            self.engine.stop()
        finally:
            self.presenter.release()
            self.channel.close()


def _check_shared_memory(resolution: int, grid: int, slots: int = 3) -> None:
    """The frame channel lives in /dev/shm, which containers often keep small (Docker: 64 MB)."""
    need = slots * grid**2 * resolution**2 * 3
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return  # not Linux-like: shared memory is not a file system here
    free = stats.f_bavail * stats.f_frsize
    if need > free:
        raise DisplayError(f"the frames need {need / 2**20:.0f} MB of shared memory but /dev/shm has "
                           f"{free / 2**20:.0f} MB free; lower [walk] grid (now {grid}) or enlarge /dev/shm")
