"""The one action vocabulary: every control (keys, OSC, later the gallery director) becomes a validated `Action`.

`SPECS` is the single table of actions. The OSC dispatcher, the OSCQuery tree, docs/osc.md and the Open Stage
Control session are all generated from it, so they cannot disagree. Ranges are enforced by the same check
functions the engine and the presets use (engine/config.py, WalkConfig there too): one rule per range.

Kinds: `engine` actions go down the engine's command pipe (`Action.engine_command()`, carrying the action's id so
the engine's refusal finds its sender), `display` actions apply in the display process through the `effect`
registered in their Spec, on the live loop's `Stage` (live/stage.py), `query` actions are answered by the OSC server
from the published state and never queued. Adding an action is one more `Spec` in `SPECS` (and, for a display
action, the Stage method its effect calls).

Buttons (`button()`, one rule for every controller, applied by `make_action`): a trigger address (one without
arguments, or whose optional first argument is marked `button`) also takes one button value. A press (T, or a
non-zero number) triggers it as if it came without an argument; a release (F, 0 or 0.0) does nothing, so a TouchOSC
button sending 1.0 on press and 0.0 on release acts once. On `/uncanny/rewind`, whose argument is an iteration, only
1 and T are presses and 0 and F releases; any other number is an iteration. `action()`, for code (keys, the
director), reads no buttons: its arguments mean what they say.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engine.commands import Command
from ..engine.config import LOSSES, MAX_BATCH, MAX_JOURNEY_MINUTES, ConfigError, check_batch, check_float, \
    check_int, check_journey_minutes, check_loss, check_lr, check_rate, WalkConfig
from ..recording import CODECS, check_codec

MAX_LOOP_SECONDS = 600.0  # the longest loop /uncanny/record/loop exports (a seamless loop is seconds to minutes)
MAX_STRING = 64  # the longest string argument any action takes (loss and codec names)
JOURNEY = 3000  # iterations a rewind fader covers: the journey to collapse takes about 2000
ROOT = "/uncanny"


class ActionError(ValueError):
    """An action cannot be built from this input; one line naming the address (or action) and what is allowed."""


@dataclass(frozen=True)
class Arg:
    """One argument: its OSC type tag (`i`, `f` or `s`), the check that enforces its native range, and that range
    written out for the docs and OSCQuery (a test holds `low`/`high`/`choices` to what `check` accepts)."""

    name: str
    tag: str
    check: Callable[[Any], Any]
    low: float | None = None
    high: float | None = None  # None: no upper bound
    low_open: bool = False  # the range excludes `low` itself
    choices: tuple[str, ...] = ()
    optional: bool = False
    default: Any = None  # the value when an optional argument is left out
    advertised: bool = True  # part of the OSCQuery TYPE; False for extras a fader does not send
    button: bool = False  # optional, and a button value in its place presses (leaves it out) or releases
    note: str = ""
    # the part of the range a fader or knob covers (the controller layouts, a MIDI CC's 0..127), where the range
    # is open-ended or mostly useless on a fader (lr up to 1, a period of a day); None: low .. high
    span: tuple[float, float] | None = None

    @property
    def fader_range(self) -> tuple[float, float] | None:
        """(low, high) a fader or knob covers, both ends accepted; None for strings and ranges without an end."""
        if self.span is not None:
            return self.span
        if self.choices or self.low is None or self.high is None or self.low_open:
            return None
        return self.low, self.high

    def range_text(self) -> str:
        if self.choices:
            text = " | ".join(self.choices)
        elif self.tag == "s":
            text = f"a string of at most {MAX_STRING} characters"
        elif self.high is None:
            text = f"{'>' if self.low_open else '>='} {_number(self.low)}"
        elif self.low_open:
            text = f"> {_number(self.low)}, <= {_number(self.high)}"
        else:
            text = f"{_number(self.low)} .. {_number(self.high)}"
        return f"{text} ({self.note})" if self.note else text


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value:g}"


class Stage(Protocol):
    """What display actions act on: the live loop's side of the show (live/stage.py). Each method says in one line
    to the action's sender (an OSC controller) what went wrong, if anything did."""

    def set_walk(self, **changes: Any) -> None: ...

    def set_grid(self, on: bool | None) -> None: ...  # None: toggle

    def set_hud(self, on: bool | None) -> None: ...

    def set_blackout(self, level: float, seconds: float) -> None: ...

    def record(self, action: Action) -> None: ...  # record_start / record_stop / record_toggle

    def export_loop(self, iteration: int, seconds: float, action: Action) -> None: ...

    def toggle_fullscreen(self) -> None: ...

    def quit(self) -> None: ...


Effect = Callable[[Stage, "Action"], None]


def _blackout(stage: Stage, action: Action) -> None:
    level, seconds = action.value if isinstance(action.value, tuple) else (action.value, 0.0)
    stage.set_blackout(level, seconds)


def _switch(value: Any) -> bool | None:
    return None if value is None else bool(value)


@dataclass(frozen=True)
class Spec:
    name: str
    address: str | None  # None: not reachable over OSC (window-only actions like quit)
    kind: str  # engine | display | query
    description: str
    args: tuple[Arg, ...] = ()
    continuous: bool = False  # coalesced in the inbox: only the newest value counts
    command: str | None = None  # the engine command (engine actions)
    bare_command: str | None = None  # the engine command when the optional argument is left out
    effect: Effect | None = None  # what a display action does to the Stage

    @property
    def required(self) -> int:
        return sum(not a.optional for a in self.args)

    @property
    def type_tags(self) -> str:
        """The OSCQuery TYPE: the advertised arguments, or N (a trigger without arguments)."""
        return "".join(a.tag for a in self.args if a.advertised) or "N"

    @property
    def trigger(self) -> bool:
        """A button may press it: no arguments, or an optional first argument a button value stands in for."""
        return not self.args or self.args[0].button


def button(value: Any) -> bool | None:
    """A controller's button value: True for a press (T, or a finite non-zero number: TouchOSC and most hardware
    bridges send 1.0, some int 1), False for a release (F, 0 or 0.0), None for anything else (a string, NaN)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value != 0
    return None


def _pressed(spec: Spec, args: Sequence[Any]) -> bool | None:
    """Whether `args` are one button value on a trigger address: True a press, False a release, None when they are
    arguments of their own (none, several, a string, or a number that is the argument's value, like rewind 500)."""
    if len(args) != 1 or not spec.trigger:
        return None
    value = args[0]
    if spec.args and spec.args[0].tag != "s" and not isinstance(value, bool) and value not in (0, 1):
        return None
    return button(value)


def _walk(field: str) -> Callable[[Any], Any]:
    """The walk's own rule (engine.config.WalkConfig), so a walk control accepts exactly what a preset file does."""
    def check(value: Any) -> Any:
        return getattr(WalkConfig(**{field: value}), field)
    return check


def _flag(name: str) -> Callable[[Any], int]:
    return lambda value: check_int(name, value, 0, 1)


def _iteration(value: Any) -> int:
    return check_int("rewind iteration", value, 0)


def _token(value: Any) -> int:
    return check_int("ping token", value, -2**31, 2**31 - 1)


def _loop_iteration(value: Any) -> int:
    return check_int("loop iteration", value, 0)


def _loop_seconds(value: Any) -> float:
    return check_float("loop seconds", value, 0.0, MAX_LOOP_SECONDS, low_open=True)


def check_learnable(value: Any) -> str:
    """An address one MIDI control (one value, or a press) can drive: an action's, not a query's."""
    spec = BY_ADDRESS.get(value) if isinstance(value, str) else None
    if spec is None or spec.kind == "query" or spec.name == "midi_learn":
        raise ConfigError(f"must be the address of a control in docs/osc.md (e.g. {ROOT}/walk/truncation), "
                          f"got {value!r}")
    if spec.required > 1:
        raise ConfigError(f"{value} takes {spec.required} arguments and one MIDI control gives one; write it in "
                          f"[midi] mappings with its other arguments")
    return value


def _blackout_level(value: Any) -> float:
    return check_float("blackout level", value, 0.0, 1.0)


def _fade_seconds(value: Any) -> float:
    return check_float("blackout seconds", value, 0.0, 600.0)


SPECS: tuple[Spec, ...] = (
    Spec("pause", f"{ROOT}/pause", "engine", "stop training; the walk keeps moving", command="pause"),
    Spec("resume", f"{ROOT}/resume", "engine", "train again (also clears a pause after repeated rollbacks)",
         command="resume"),
    Spec("toggle_pause", f"{ROOT}/toggle_pause", "engine",
         "pause if training, resume if paused (decided by the engine, from its own state)", command="toggle_pause"),
    Spec("reset", f"{ROOT}/reset", "engine", "back to realism: iteration 0, the unmodified model", command="reset"),
    Spec("rewind", f"{ROOT}/rewind", "engine",
         "no argument or a press (1, 1.0, T): one snapshot back; a release (0, F): nothing; N: the newest snapshot "
         "at or before iteration N (or the newest of all, if the journey has not reached N)",
         (Arg("iteration", "i", _iteration, low=0, optional=True, button=True, span=(0, JOURNEY),
              note="0 and 1: a button's release and press"),),
         command="rewind", bare_command="back"),
    Spec("back", f"{ROOT}/back", "engine",
         "one snapshot back, counted from the engine's own position (repeated presses walk down to 0)",
         command="back"),
    Spec("snapshot", f"{ROOT}/snapshot", "engine", "take a snapshot now", command="snapshot"),
    Spec("lr", f"{ROOT}/lr", "engine", "learning rate of the synthesis network",
         (Arg("rate", "f", check_lr, low=0.0, high=1.0, note="0 = the model's own rate", span=(0.0, 0.0005)),),
         continuous=True,
         command="lr"),
    Spec("loss", f"{ROOT}/loss", "engine", "the inverted objective",
         (Arg("name", "s", check_loss, choices=LOSSES),), command="loss"),
    Spec("batch", f"{ROOT}/batch", "engine", "images per training step",
         (Arg("images", "i", check_batch, low=1, high=MAX_BATCH, span=(1, 16)),), command="batch"),
    Spec("speed", f"{ROOT}/speed", "engine", "training steps per second at most",
         (Arg("steps_per_second", "f", check_rate, low=0.0, note="0 = as fast as the device goes", span=(0.0, 30.0)),),
         continuous=True, command="limit"),
    Spec("journey_minutes", f"{ROOT}/journey/minutes", "engine",
         "play the journey's arc ([engine] journey_iterations) over this many minutes of training, on any device",
         (Arg("minutes", "f", check_journey_minutes, low=0.0, high=MAX_JOURNEY_MINUTES,
              note="0 = as fast as the device goes", span=(0.0, 120.0)),), continuous=True,
         command="journey_minutes"),
    Spec("walk_period", f"{ROOT}/walk/period", "display", "seconds per loop of the latent walk, changed without a "
         "jump in the picture",
         (Arg("seconds", "f", _walk("period"), low=0.0, high=86400.0, low_open=True, span=(2.0, 120.0)),),
         continuous=True, effect=lambda stage, a: stage.set_walk(period=a.value)),
    Spec("walk_truncation", f"{ROOT}/walk/truncation", "display",
         "latent truncation: 1 = none, lower = closer to the average face",
         (Arg("truncation", "f", _walk("truncation"), low=0.0, high=2.0, low_open=True, span=(0.1, 1.5)),),
         continuous=True, effect=lambda stage, a: stage.set_walk(truncation=a.value)),
    Spec("walk_seed", f"{ROOT}/walk/seed", "display", "a different walk through the latent space",
         (Arg("seed", "i", _walk("seed"), low=0, high=2**31 - 1, span=(0, 127)),),
         effect=lambda stage, a: stage.set_walk(seed=a.value)),
    Spec("grid", f"{ROOT}/view/grid", "display", "the N x N population grid",
         (Arg("on", "i", _flag("grid"), low=0, high=1, optional=True, note="no argument = toggle"),),
         effect=lambda stage, a: stage.set_grid(_switch(a.value))),
    Spec("hud", f"{ROOT}/view/hud", "display", "the HUD (iteration, loss, D score, fps)",
         (Arg("on", "i", _flag("hud"), low=0, high=1, optional=True, note="no argument = toggle"),),
         effect=lambda stage, a: stage.set_hud(_switch(a.value))),
    Spec("blackout", f"{ROOT}/view/blackout", "display", "fade the output to black (1) or back (0)",
         (Arg("level", "f", _blackout_level, low=0.0, high=1.0),
          Arg("seconds", "f", _fade_seconds, low=0.0, high=600.0, optional=True, default=0.0, advertised=False,
              note="fade time, default 0 = at once", span=(0.0, 10.0))), continuous=True, effect=_blackout),
    Spec("record_start", f"{ROOT}/record/start", "display",
         "start recording the presented picture into the [record] folder (recordings/ in the run folder; "
         "the HUD only if [record] hud)",
         (Arg("codec", "s", check_codec, choices=tuple(CODECS), optional=True, button=True,
              note="no argument or a press = [record] codec"),), effect=lambda stage, a: stage.record(a)),
    Spec("record_stop", f"{ROOT}/record/stop", "display", "stop recording; the file is finalised",
         effect=lambda stage, a: stage.record(a)),
    Spec("record_toggle", None, "display", "start or stop recording", effect=lambda stage, a: stage.record(a)),
    Spec("record_loop", f"{ROOT}/record/loop", "display",
         "export a seamless loop of the snapshot at (or before) an iteration, in a separate low-priority process "
         "while the show goes on; the finished path comes back on /uncanny/state/export",
         (Arg("iteration", "i", _loop_iteration, low=0, span=(0, JOURNEY)),
          Arg("seconds", "f", _loop_seconds, low=0.0, high=MAX_LOOP_SECONDS, low_open=True, span=(1.0, 60.0))),
         effect=lambda stage, a: stage.export_loop(*a.value, a)),
    Spec("midi_learn", f"{ROOT}/midi/learn", "display",
         "MIDI learn: the next MIDI control moved (knob, fader, pad) drives ADDRESS from then on, kept in midi.json "
         "in the run folder; no argument = the address last touched on an OSC controller or by a key",
         (Arg("address", "s", check_learnable, optional=True, note="an address a single control can drive"),),
         effect=lambda stage, a: None),  # the MIDI controller takes it: it watches every action (control/midi.py)
    Spec("fullscreen", None, "display", "switch between full-screen and a window",
         effect=lambda stage, a: stage.toggle_fullscreen()),
    Spec("quit", None, "display", "close the installation", effect=lambda stage, a: stage.quit()),
    Spec("state", f"{ROOT}/state", "query", "reply with every /uncanny/state/* value now"),
    Spec("snapshots", f"{ROOT}/snapshots", "query", "reply /uncanny/snapshots with the snapshot iterations as ints"),
    Spec("ping", f"{ROOT}/ping", "query", "reply /uncanny/pong (with the token, if one was sent)",
         (Arg("token", "i", _token, low=-2**31, high=2**31 - 1, optional=True, advertised=False),)),
)

BY_NAME: dict[str, Spec] = {s.name: s for s in SPECS}
BY_ADDRESS: dict[str, Spec] = {s.address: s for s in SPECS if s.address}
_ids = itertools.count(1)


@dataclass(frozen=True)
class Action:
    """One validated action. `value`: None (no argument), the argument, or a tuple where there are several.
    `reply_to` is where an OSC sender wants answers (None for keys and the director). `id` is unique in this
    process; the engine names it when it refuses the action's command."""

    name: str
    value: Any = None
    source: str = "keys"
    reply_to: tuple[str, int] | None = None
    id: int = field(default_factory=lambda: next(_ids), compare=False)

    @property
    def spec(self) -> Spec:
        return BY_NAME[self.name]

    def engine_command(self) -> Command:
        """The engine command for `engine.send()`: Command("lr", 0.001, id), Command("back", id=id), ..."""
        spec = self.spec
        if spec.kind != "engine":
            raise ValueError(f"{self.name} is a {spec.kind} action, not an engine command")
        if self.value is None:
            return Command(spec.bare_command or spec.command, id=self.id)
        return Command(spec.command, self.value, self.id)


def _convert(tag: str, value: Any) -> Any:
    """OSC values to the argument's type. Controllers send numbers as floats (TouchOSC, Open Stage Control), so an
    integral float counts as an integer and True/False as 1/0; anything lossy is refused."""
    if tag == "s":
        if not isinstance(value, str):
            raise ActionError(f"expects a string, got {_show(value)}")
        if len(value) > MAX_STRING:
            raise ActionError(f"string of {len(value)} characters; at most {MAX_STRING}")
        return value
    if isinstance(value, bool):
        return int(value) if tag == "i" else float(value)  # T on a float control is 1.0: echoed as a float
    if not isinstance(value, (int, float)):
        raise ActionError(f"expects {'an integer' if tag == 'i' else 'a number'}, got {_show(value)}")
    if not math.isfinite(value):
        raise ActionError(f"expects a finite number, got {value!r}")
    if tag == "i":
        if value != int(value):
            raise ActionError(f"expects an integer, got {value!r}")
        return int(value)
    return _decimal(float(value))


def _decimal(value: float) -> float:
    """OSC floats are 32-bit: 0.001 arrives as 0.0010000000474974513. Where the value is a float32, take the
    shortest decimal that rounds to the same float32, i.e. what the performer typed or the fader showed."""
    try:
        packed = struct.pack(">f", value)
    except OverflowError:
        return value
    if struct.unpack(">f", packed)[0] != value:
        return value  # a 64-bit value (an OSC double or a key): keep it
    for digits in range(1, 10):
        shorter = float(f"{value:.{digits}g}")
        if struct.pack(">f", shorter) == packed:
            return shorter
    return value


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"a blob of {len(value)} bytes"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def make_action(spec: Spec, args: Sequence[Any], source: str = "keys",
                reply_to: tuple[str, int] | None = None) -> Action | None:
    """Validate `args` from a controller (OSC, MIDI...) against `spec`; raises ActionError with one line. One button
    value on a trigger address is a press (the action, as if sent without it) or a release (None: nothing to do)."""
    args = [a for a in args if a is not None]  # ,N (nil) arguments: the OSCQuery trigger type, carries nothing
    pressed = _pressed(spec, args)
    if pressed is False:
        return None
    return _validated(spec, [] if pressed else args, source, reply_to, buttons=spec.trigger)


def action(name: str, *args: Any, source: str = "keys") -> Action:
    """An action by name from code (keys, the director), e.g. `action("lr", 0.0005)`: its arguments mean what they
    say (`action("rewind", 1)` is iteration 1: no button reading); raises ActionError for unknown names or bad
    values."""
    if name not in BY_NAME:
        raise ActionError(f"unknown action {name!r}; known: {', '.join(BY_NAME)}")
    return _validated(BY_NAME[name], args, source, None, buttons=False)


def _validated(spec: Spec, args: Sequence[Any], source: str, reply_to: tuple[str, int] | None,
               buttons: bool) -> Action:
    where = spec.address or spec.name
    if not spec.required <= len(args) <= len(spec.args):
        counts = f"{spec.required}" if spec.required == len(spec.args) else f"{spec.required} to {len(spec.args)}"
        buttons = buttons and not spec.args
        got = (_show(args[0]) if len(args) == 1 else f"{len(args)} arguments") if buttons else str(len(args))
        raise ActionError(f"{where}: takes {counts} argument{'s' if len(spec.args) != 1 else ''}"
                          f"{' (' + ', '.join(f'{a.tag} {a.name}' for a in spec.args) + ')' if spec.args else ''}"
                          f"{' or 1 button value (a number, T or F)' if buttons else ''}, got {got}")
    values = []
    for arg, raw in zip(spec.args, args):
        try:
            values.append(arg.check(_convert(arg.tag, raw)))
        except (ActionError, ConfigError) as error:
            raise ActionError(f"{where}: {arg.name} {error}" if isinstance(error, ActionError)
                              else f"{where}: {error}") from None
    values += [a.default for a in spec.args[len(values):] if a.default is not None]
    value = None if not values else values[0] if len(values) == 1 else tuple(values)
    return Action(spec.name, value, source, reply_to)


def osc_specs() -> list[Spec]:
    return [s for s in SPECS if s.address]
