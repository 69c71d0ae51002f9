"""The HUD's text: the numbers a performer watches, and messages that show even with the HUD off."""

from __future__ import annotations

import math

from ..engine.state import EngineState


def hud_text(state: EngineState, fps: float, message: str | None, show_numbers: bool,
             gallery: str | None = None) -> str | None:
    """`gallery`: the director's cycle and phase (control/director.py), None while it is off."""
    lines = [message] if message else []  # errors show even with the HUD off
    if show_numbers:
        numbers = [f"iteration {state.iteration}", f"loss {_fmt(state.loss)}", f"D {_fmt(state.probe_d)}",
                   f"{state.steps_per_second:.1f} steps/s", f"{fps:.0f} fps", state.status]
        if state.collapsed:
            numbers.append("collapsed")
        if gallery:
            numbers.append(gallery)
        lines.append("  ".join(numbers))
    return "\n".join(lines) or None


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"
