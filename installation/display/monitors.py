"""The monitors GLFW sees, for choosing `[display] monitor` / `--monitor` and for `run_installation.py monitors`.

Only glfw here (no GL context, no torch): listing the monitors is a fast command. GLFW counts the RandR outputs of
the X screen in DISPLAY, the primary one first; a second X screen (`:0.1`) is another display, not a monitor.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import glfw

log = logging.getLogger(__name__)


class MonitorNotFound(LookupError):
    """A monitor asked for by index or name is not connected; one line listing those that are."""


class NoDisplay(Exception):
    """GLFW cannot reach a display (DISPLAY unset, no X server yet); one line."""


@dataclass(frozen=True)
class Monitor:
    index: int  # what `--monitor N` counts
    name: str
    width: int  # its current video mode, in pixels
    height: int
    x: int  # its top-left corner on the virtual desktop
    y: int
    refresh_hz: int  # 0 where the driver does not say (virtual screens)
    primary: bool

    def describe(self) -> str:
        refresh = f", {self.refresh_hz} Hz" if self.refresh_hz else ""
        return (f"{self.index}  {self.name}: {self.width}x{self.height} at {self.x},{self.y}{refresh}"
                + ("  (primary)" if self.primary else ""))

    def as_json(self) -> dict:
        return asdict(self)


def monitor_names() -> list[str]:
    """Names of the connected monitors, in the order `Window(monitor=index)` counts them (needs glfw.init)."""
    return [glfw.get_monitor_name(m).decode(errors="replace") for m in glfw.get_monitors()]


def find_monitor(which: int | str | None, strict: bool = False) -> object:
    """A monitor by index or (case-insensitive, partial) name; the primary one for None. One not found is the
    primary too, with a warning (a gallery machine should still show something, on the main screen), or with
    `strict` MonitorNotFound (a further window must not cover the main one)."""
    monitors, names = glfw.get_monitors(), monitor_names()
    if isinstance(which, int) and 0 <= which < len(monitors):
        return monitors[which]
    if isinstance(which, str):
        for monitor, name in zip(monitors, names):
            if which.lower() in name.lower():
                return monitor
    if which is not None:
        listed = ", ".join(f"{index} {name!r}" for index, name in enumerate(names))
        if strict:
            raise MonitorNotFound(f"monitor {which!r} is not connected (connected: {listed}; "
                                  "`run_installation.py monitors` lists them)")
        log.warning("monitor %r not found among %s; using the primary monitor", which, listed)
    return glfw.get_primary_monitor()


def list_monitors() -> list[Monitor]:
    """Every connected monitor, as `--monitor` counts them; NoDisplay where GLFW cannot start."""
    reporting, glfw.ERROR_REPORTING = glfw.ERROR_REPORTING, "ignore"  # the reason is said below, in one line
    try:
        if not glfw.init():
            raise NoDisplay("no display to list monitors on (DISPLAY is unset or its X server is not running); "
                            "run it in the gallery's graphical session, or set DISPLAY (e.g. DISPLAY=:0)")
        try:
            found = []
            for index, (handle, name) in enumerate(zip(glfw.get_monitors(), monitor_names())):
                mode = glfw.get_video_mode(handle)
                x, y = glfw.get_monitor_pos(handle)
                # GLFW lists the primary monitor first (glfwGetMonitors' documented order)
                found.append(Monitor(index, name, mode.size.width, mode.size.height, x, y, mode.refresh_rate,
                                     primary=index == 0))
            return found
        finally:
            glfw.terminate()
    finally:
        glfw.ERROR_REPORTING = reporting
