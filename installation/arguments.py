"""argparse types for every command: text to a checked value, or one line naming what is allowed.

Where a rule exists in validation.py or the engine's config (a batch size, a learning rate), the argument type is
built from that rule (`checked`), so the command line, presets, engine commands and OSC accept the same values.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .validation import ConfigError, parse_size


from .exits import EXIT_BAD_INPUT, EXIT_TRY_AGAIN, BadInput  # noqa: F401  # the codes' first home, still importable


class UsageError(BadInput):
    """Bad user input found after parsing; printed as one line, exit code 2."""


def checked(convert: type, check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse type from one rule: the text converted with `convert` (int or float), then `check`ed."""
    def parse(text: str) -> Any:
        try:
            return check(convert(text))
        except ConfigError as error:  # the rule's own words, about the text as typed
            raise argparse.ArgumentTypeError(f"{str(error).rsplit(', got ', 1)[0]}, got {text!r}") from None
        except ValueError:
            kind = "a whole number" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    return parse


def parse_seeds(text: str) -> list[int]:
    """'0-15' or '1,4,7-9' -> a list of seeds (argparse type)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            lo, hi = int(first), int(last or first)
            if lo < 0 or hi < lo:
                raise ValueError
            seeds.extend(range(lo, hi + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}; write e.g. 0-15 or 1,4,7-9") from None
    if len(seeds) > 1024:
        raise argparse.ArgumentTypeError(f"{len(seeds)} seeds is too many for one grid; use at most 1024")
    return seeds


def _finite(text: str, allowed: Callable[[float], bool], wanted: str) -> float:
    """A finite float for which `allowed` holds, else one line: expected `wanted`."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and allowed(value)):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _finite(text, lambda v: v > 0, "a positive number")


def whole_number(low: int, high: int | None = None):
    """An argparse type for whole numbers in [low, high]."""
    allowed = f"from {low} to {high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected a whole number {allowed}, got {text!r}")
        return value
    return parse


def resolution_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 4 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"resolution must be a power of two >= 4 (e.g. 256), got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    return _finite(text, lambda v: v >= 0, "a number >= 0")


def size_arg(text: str) -> tuple[int, int]:
    size = parse_size(text)
    if size is None:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT in pixels, e.g. 1920x1080, got {text!r}")
    return size


def checkpoint_or_default(checkpoint: Path | None) -> Path:
    """The checkpoint asked for, or the embedded default model where none was given."""
    from .models.config import default_checkpoint

    if checkpoint is not None:
        return checkpoint
    if (default := default_checkpoint()) is None:
        raise UsageError("the embedded default model is missing from this installation (installation/assets/"
                         "default.pt); reinstall uncanny, or pass a checkpoint file")
    return default


def default_run_dir(checkpoint: Path) -> Path:
    """The run folder when none is given: runs/CHECKPOINT-NAME under the working folder."""
    return Path("runs") / checkpoint.stem
