"""More windows: the show on further monitors (projectors), each with its own view, drawn by the same loop.

An `[[output]] kind = "window"` opens a GLFW window (full-screen on its monitor, or windowed) with a presenter of its
own, fed each refresh with the frames the main screen shows: the `grid`, or one walk of the population (`walk = K`:
the walk whose seed is the [walk] seed + K, a cell of the grid; 0 is the main walk). When a window shows what the
main screen does not draw (the grid, another walk), the engine draws the whole population. Extra windows never wait
for a vertical blank (the main window's swap paces the loop), share the blackout and, with `hud`, the HUD. A monitor
that is not connected (yet: a projector switched on later) is retried with a back-off; `run_installation.py
monitors` lists the monitors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..display.config import MODES
from ..display.sinks import OutputState, OutputStatus, SinkContext
from ..messages import first_line
from ..validation import ConfigError, check_choice, check_int, check_size
from .sender import BACKOFF

VIEWS = ("walk", "grid")


def window_position(text: str) -> tuple[int, int] | None:
    """A window's "X,Y" on the desktop, None for ""; ConfigError names the form."""
    if text == "":
        return None
    x, _, y = text.partition(",")
    try:
        return int(x), int(y)
    except ValueError:
        raise ConfigError(f"position must be \"X,Y\" in pixels (e.g. \"1920,0\") or \"\", got {text!r}") from None


@dataclass(frozen=True)
class WindowConfig:
    """`[[output]] kind = "window"`."""

    kind: str = "window"
    monitor: str = "1"  # index ("1"; a TOML number is read as one) or part of the monitor's name
    fullscreen: bool = True
    size: str = "1280x720"  # "WIDTHxHEIGHT" when windowed
    position: str = ""  # "X,Y" of a window's top left corner on the desktop; "" = where the window manager puts it
    view: str = "walk"  # walk | grid
    walk: int = 0  # with view = "walk": which walk of the population (0 = the main walk)
    mode: str = "fit"  # fit (letterbox) | fill (crop) | stretch
    hud: bool = False

    def __post_init__(self) -> None:
        check_size(self.size)
        window_position(self.position)
        check_choice("view", self.view, VIEWS)
        check_int("walk", self.walk, 0, 63)
        check_choice("mode", self.mode, MODES)

    @property
    def label(self) -> str:
        """The output's name in the HUD, OSC and status.json."""
        what = "grid" if self.view == "grid" else f"walk{self.walk}"
        return f"window:{self.monitor or 'primary'}:{what}"

    @property
    def needs_population(self) -> bool:
        """Whether it shows walks the main screen may not draw."""
        return self.view == "grid" or self.walk > 0


class WindowOutput:
    """A `Sink` that reads nothing back: the loop calls `draw` after its own refresh."""

    hud = False  # it takes no readback (capture_for), whatever it shows

    def __init__(self, config: WindowConfig, context: SinkContext) -> None:
        self.config, self.name, self.report, self.letterbox = config, config.label, context.report, context.letterbox
        self.frames = 0
        self._window: Any = None
        self._presenter: Any = None
        self._failures, self._retry_at = 0, 0.0
        self.status, self.detail = OutputStatus.RETRYING, "opening"
        if context.headless:
            self.status, self.detail = OutputStatus.FAILED, "a window needs a display: the installation is headless"
            self.report(f"output {self.name}: {self.detail}")

    def capture_for(self, now: float, output: tuple[int, int]) -> None:
        return None

    def draw(self, pixels: tuple[tuple[int, np.ndarray], tuple[int, np.ndarray], float] | None, hud: str | None,
             blackout: float, now: float) -> None:
        """Show `pixels` ((key, frames) older, newer, mix; None before the first frame) on this window, then swap;
        the caller makes its own context current again."""
        if self.status is OutputStatus.FAILED or (self._window is None and not self._open(now)):
            return
        window, presenter = self._window, self._presenter
        window.begin()
        if window.should_close:  # closed by hand (or the window manager): open again after a back-off
            self._lost(now, "the window was closed")
            return
        if pixels is not None:
            older, newer, mix = pixels
            presenter.show_pair(self._view(older), self._view(newer), mix, now)
        presenter.set_hud(hud if self.config.hud else None)
        presenter.set_blackout(blackout, 0.0, now)
        width, height = window.size
        if (presenter.width, presenter.height) != (width, height):
            presenter.resize(width, height)
        presenter.render(now)
        window.present()
        self.frames += 1

    def _view(self, frame: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
        key, cells = frame
        if self.config.view == "grid":
            return key, cells
        k = self.config.walk if self.config.walk < len(cells) else 0  # the population not drawn yet: the main walk
        return key, cells[k:k + 1]

    def _open(self, now: float) -> bool:
        if now < self._retry_at:
            return False
        from ..display.presenter import Presenter
        from ..display.window import Window

        config = self.config
        monitor = int(config.monitor) if config.monitor.isdigit() else config.monitor or None
        try:
            self._window = Window(*check_size(config.size), fullscreen=config.fullscreen, monitor=monitor,
                                  title=f"uncanny {self.name}", vsync=False, strict_monitor=True)
            if (position := window_position(config.position)) is not None and not config.fullscreen:
                self._window.move(*position)
            self._presenter = Presenter(self._window.ctx, *self._window.size, letterbox=self.letterbox,
                                        mode=config.mode)
        except Exception as error:
            self._lost(now, first_line(error))
            return False
        self._failures, self.status, self.detail = 0, OutputStatus.ON, ""
        return True

    def _lost(self, now: float, why: str) -> None:
        delay = BACKOFF[min(self._failures, len(BACKOFF) - 1)]
        if self._failures == 0:
            self.report(f"output {self.name}: {why}; trying again every few seconds")
        self._failures += 1
        self._retry_at = now + delay
        self.status, self.detail = OutputStatus.RETRYING, f"{why}; again in {delay:g} s"
        self.close()

    def state(self) -> OutputState:
        return OutputState(self.name, self.status, self.detail, self.frames)

    def close(self) -> None:
        if self._presenter is not None:
            self._window.begin()
            self._presenter.release()
        if self._window is not None:
            self._window.close()
        self._window = self._presenter = None
