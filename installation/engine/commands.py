"""Commands the engine takes between steps, and their validation.

A command arrives as a `Command`, a line of text ("lr 0.0005", "rewind 300"), a mapping
({"name": "lr", "value": 0.0005}) or a (name, value) pair, so a console, OSC or a test can send it without
importing anything. Text values are converted with int()/float() only; nothing is ever evaluated.
Checks that need the engine's state happen in `Engine.apply`.

A `Command` (or a mapping with "id") may carry an `id`, opaque to the engine: when the engine refuses that command
it names the id in `EngineState.refusals`, so the refusal reaches whoever sent that command (control/osc.py), not
whoever happened to send the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import ConfigError, check_batch, check_choice, check_int, check_journey_minutes, check_loss, check_lr, \
    check_rate

FAULTS = ("loss", "grad", "weight")


class CommandError(ValueError):
    """A command is malformed or cannot be applied now; one line, and the engine carries on."""


def _number(kind: type, name: str) -> Callable[[Any], Any]:
    """Accept a number of `kind` or its text form; a float is not silently truncated to an int."""
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return kind(value.strip())
            except ValueError:
                raise CommandError(f"{name}: {value!r} is not {'an integer' if kind is int else 'a number'}") from None
        return value
    return convert


def _fault(value: Any) -> str:
    return check_choice("fault", value, FAULTS)


# name -> (value check or None when the command takes no value, default value, help)
COMMANDS: dict[str, tuple[Callable[[Any], Any] | None, Any, str]] = {
    "pause": (None, None, "stop stepping (frames are still drawn)"),
    "resume": (None, None, "step again; also clears a pause after repeated rollbacks"),
    "toggle_pause": (None, None, "pause when running, resume when paused (as the engine sees it, never stale)"),
    "limit": (lambda v: check_rate(_number(float, "limit")(v)), None, "at most N steps per second; 0 = no limit"),
    "journey_minutes": (lambda v: check_journey_minutes(_number(float, "journey_minutes")(v)), None,
                        "play the journey's arc over N minutes of training; 0 = as fast as the device goes"),
    "lr": (lambda v: check_lr(_number(float, "lr")(v)), None,
           "learning rate of the synthesis network; 0 = the model's own"),
    "loss": (check_loss, None, "logit, softplus or log"),
    "batch": (lambda v: check_batch(_number(int, "batch")(v)), None, "images per step, 1..64"),
    "rewind": (lambda v: check_int("rewind iteration", _number(int, "rewind")(v), 0), None,
               "restore the newest snapshot at or before iteration N (or now, if N is ahead) and go on from there"),
    "back": (None, None, "one snapshot further back than the last back (or than now), down to iteration 0"),
    "reset": (None, None, "restore iteration 0 (the unmodified model)"),
    "snapshot": (None, None, "take a snapshot now"),
    "shutdown": (None, None, "snapshot, stop and exit"),
    "fault": (_fault, "weight", "drill: make the next step non-finite (loss, grad or weight) to exercise the guard"),
    "render": (lambda v: v, None, "new walk settings for the frame drawer (it checks them)"),
}


# commands whose newest value is all that counts: while the engine is not reading (a long step), a newer one replaces
# an older one waiting to be sent (engine/process.py); every other command is a trigger, delivered in order
SETTINGS = frozenset({"limit", "lr", "loss", "batch", "render"})
MAX_WAITING = 256  # triggers the caller holds while the engine's command pipe is full; one more is refused


@dataclass(frozen=True)
class Command:
    name: str
    value: Any = None
    id: int | None = None  # the sender's token for this command, echoed in EngineState.refusals


def command_name(raw: Any) -> Any:
    """The name a raw command gives itself, without validating it (None when it has none)."""
    if isinstance(raw, Command):
        return raw.name
    if isinstance(raw, str):
        return raw.split(maxsplit=1)[0] if raw.strip() else None
    if isinstance(raw, Mapping):
        return raw.get("name")
    if isinstance(raw, Sequence) and raw:
        return raw[0]
    return None


def command_id(raw: Any) -> int | None:
    """The id a raw command carries (Command.id or a mapping's "id"), if it is an int."""
    value = raw.id if isinstance(raw, Command) else raw.get("id") if isinstance(raw, Mapping) else None
    return value if type(value) is int else None


def parse_command(raw: Command | str | Mapping[str, Any] | Sequence[Any]) -> Command:
    """Normalise and validate one command; raises CommandError with a one-line message."""
    if isinstance(raw, Command):
        name, value = raw.name, raw.value
    elif isinstance(raw, str):
        parts = raw.split()
        if not parts or len(parts) > 2:
            raise CommandError(f"cannot read command {raw!r}; write a name and at most one value, e.g. 'lr 0.0005'")
        name, value = parts[0], parts[1] if len(parts) == 2 else None
    elif isinstance(raw, Mapping):
        name, value = raw.get("name"), raw.get("value")
    elif isinstance(raw, Sequence) and 1 <= len(raw) <= 2:
        name, value = raw[0], raw[1] if len(raw) == 2 else None
    else:
        raise CommandError(f"cannot read command {raw!r}; send a name and an optional value")
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    check, default, _ = COMMANDS[name]
    if check is None:
        if value is not None:
            raise CommandError(f"{name} takes no value, got {value!r}")
        return Command(name, id=command_id(raw))
    if value is None:
        if default is None:
            raise CommandError(f"{name} needs a value ({COMMANDS[name][2]})")
        value = default
    try:
        return Command(name, check(value), command_id(raw))
    except ConfigError as error:
        raise CommandError(str(error)) from None  # the message already names the setting
