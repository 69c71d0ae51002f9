"""The key map as data: each key produces the same `Action` an OSC controller would send.

Key codes are GLFW's (they are fixed by glfw3.h), so this module needs no glfw import; a test compares them
with the glfw module where it is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .actions import Action, action

# (key name, GLFW key code, action name)
KEYS: tuple[tuple[str, int, str], ...] = (
    ("space", 32, "toggle_pause"),
    ("r", 82, "reset"),
    ("b", 66, "back"),
    ("left", 263, "back"),
    ("g", 71, "grid"),
    ("h", 72, "hud"),
    ("v", 86, "record_toggle"),
    ("m", 77, "midi_learn"),  # MIDI learn for the control last touched: touch it, press m, move a knob
    ("f", 70, "fullscreen"),
    ("q", 81, "quit"),
    ("escape", 256, "quit"),
)


def key_action(code: int) -> Action | None:
    """The action of a GLFW key code, or None for keys that do nothing."""
    for _, key, name in KEYS:
        if key == code:
            return action(name, source="keys")
    return None


def _press(put: Callable[[Action], object], name: str) -> None:
    put(action(name, source="keys"))


def key_handlers(put: Callable[[Action], object]) -> dict[int, Callable[[], None]]:
    """`Window.handlers` for the key map: each press puts its action (e.g. `put=inbox.put`)."""
    return {code: partial(_press, put, name) for _, code, name in KEYS}


def describe_keys() -> list[tuple[str, str]]:
    """(key names, action name) for docs and help, keys sharing an action joined."""
    joined: dict[str, list[str]] = {}
    for key, _, name in KEYS:
        joined.setdefault(name, []).append(key)
    return [(" / ".join(keys), name) for name, keys in joined.items()]
