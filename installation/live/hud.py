"""The HUD's text: the numbers a performer watches, and the lines said on screen (shown even with the HUD off)."""

from __future__ import annotations

import logging
import math
import time

from ..control.state import ControlState
from ..display.sinks import OutputStatus

log = logging.getLogger(__name__)

MESSAGE_SECONDS = 10.0  # how long a line stays on screen after it was said


class Notices:
    """What the installation says: one line in the log and on screen for MESSAGE_SECONDS. `error` marks a line as a
    fault (kept as `last_error` for status.json); `say` is for everything else."""

    def __init__(self) -> None:
        self.last_error = ""
        self._line: tuple[str, float] | None = None

    def say(self, message: str, now: float | None = None) -> None:
        log.warning("%s", message)
        self._line = (message, time.monotonic() if now is None else now)

    def error(self, message: str) -> None:
        self.last_error = message
        self.say(message)

    def current(self, now: float) -> str | None:
        if self._line is not None and now - self._line[1] < MESSAGE_SECONDS:
            return self._line[0]
        return None


def hud_text(state: ControlState, show_numbers: bool, gallery: str | None = None) -> str | None:
    """`state.message` shows even with the HUD off; `gallery`: the director's cycle and phase, None while it is
    off."""
    lines = [state.message] if state.message else []
    if show_numbers:
        numbers = [f"iteration {state.iteration}", f"loss {_fmt(state.loss)}", f"D {_fmt(state.d)}",
                   f"{state.steps_per_second:.1f} steps/s", f"{state.fps:.0f} fps", state.status,
                   state.device or "device ?"]
        if minutes := state.controls.get("journey_minutes"):
            numbers.insert(4, f"journey {minutes:g} min")
        if state.collapsed:
            numbers.append("collapsed")
        if gallery:
            numbers.append(gallery)
        lines.append("  ".join(numbers))
        if outputs := [f"{o.name} {o.status}" for o in state.outputs if o.status is not OutputStatus.OFF]:
            lines.append("outputs: " + ", ".join(outputs))
    return "\n".join(lines) or None


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"

