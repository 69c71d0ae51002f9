"""The range rules every input goes through: presets, the command line, engine commands and OSC.

Each check returns the value when it is allowed and raises ConfigError with one line naming the setting, the value
and what is allowed. The engine's own rules (lr, batch, loss, device) build on these in engine/config.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .exits import BadInput


class ConfigError(BadInput, ValueError):
    """A setting is out of range; the message is one line naming the setting, the value and what is allowed."""


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be an integer {allowed}, got {value!r}")
    return value


def check_float(name: str, value: Any, low: float, high: float | None = None, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        allowed = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise ConfigError(f"{name} must be a finite number {allowed}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of the named choices (a loss, a codec, a display mode ...)."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


SIDE_PIXELS = (16, 16384)  # a picture's width or height: --size, [display] width/height and [record] size


def parse_size(text: str) -> tuple[int, int] | None:
    """"WIDTHxHEIGHT" (any case of x), each side within SIDE_PIXELS; None when it is not one."""
    width, _, height = text.lower().partition("x")
    if not (width.isascii() and width.isdigit() and height.isascii() and height.isdigit()):
        return None
    low, high = SIDE_PIXELS
    size = int(width), int(height)
    return size if low <= size[0] <= high and low <= size[1] <= high else None


def check_size(text: Any, alternative: str = "") -> tuple[int, int]:
    """A picture's "WIDTHxHEIGHT" (parse_size); ConfigError names the form, and `alternative`, what else the key
    takes."""
    size = parse_size(text) if isinstance(text, str) else None
    if size is None:
        low, high = SIDE_PIXELS
        raise ConfigError(f"size must be \"WIDTHxHEIGHT\" ({low} to {high} each, e.g. \"1280x720\"){alternative}, "
                          f"got {text!r}")
    return size


# The latent walk's rules: the preset's [walk] table and the live walk controls share them.
def check_period(value: Any) -> float:
    return check_float("period", value, 0.0, 86400.0, low_open=True)


def check_truncation(value: Any) -> float:
    return check_float("truncation", value, 0.0, 2.0, low_open=True)


def check_seed(value: Any) -> int:
    return check_int("seed", value, 0, 2**31 - 1)
