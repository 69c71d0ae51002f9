"""MIDI controllers ([midi] table): knobs, faders and pads become the same validated Actions as keys and OSC.

    midi = MidiController(preset.midi, control.inbox, run_dir, say)  # reads RUN_DIR/midi.json, opens nothing yet
    midi.start(); print(midi.describe())      # never raises: no python-rtmidi or no MIDI system is that one line
    ... each refresh: for action in inbox.drain(): midi.observe(action); apply(action)
                      midi.publish(ControlState(..., midi_learn=midi.learning))
    midi.stop()

Input: python-rtmidi (ALSA or JACK) opens every input port whose name contains `[midi] input` ("" = all of them),
looked for again every SCAN_SECONDS, so a controller plugged in during the show is found and one unplugged is
let go. rtmidi calls back on its own thread (JACK's process thread on JACK); there a message is parsed (mido),
looked up and put into the inbox, each under a lock held for microseconds: no file, no display, no waiting.
Bad input (SysEx, data bytes without a status byte, i.e. running status, truncated messages, controls nobody
mapped, pitch bend and the like) is ignored with one rate-limited log line per port and kind.

A mapping is one line, in the preset's `mappings` and in RUN_DIR/midi.json alike:

    cc 1 74 /uncanny/walk/truncation          KIND CHANNEL(1-16) NUMBER(0-127) ADDRESS [ARGS...]
    note 10 36 /uncanny/reset
    note 10 37 /uncanny/view/blackout 1 3

- A CC on an address with a number (or a choice) to set is a knob: 0..127 covers the argument's fader range
  (`Arg.fader_range`, the one the controller layouts use), choices are split into equal bands; ARGS written after
  the address follow the knob's value (`cc 1 20 /uncanny/view/blackout 2`: a 2 s fade).
- A CC on a trigger (reset, back, snapshot, record/start ...) is a button: it fires when the value rises through
  PRESS (controllers send 127 on press, 0 on release); the release does nothing.
- A note-on is a press: with ARGS, the action with those arguments; on a trigger, the trigger (on grid/hud: toggle);
  on an address that needs a value, the value flips between the ends of its fader range (a pad for blackout) or
  steps through the choices (a pad for the loss). Note-off and velocity 0 do nothing.

MIDI learn: `/uncanny/midi/learn ADDRESS` (or the key m: the address last touched from OSC or a key) arms it; the
next CC or note-on from any port is mapped to ADDRESS, replacing what that control and that address had learned
before, and is kept in RUN_DIR/midi.json (written atomically) over restarts; learned mappings win over the
preset's. The learning message itself does nothing else. Unused for LEARN_SECONDS, learn is cancelled.

Feedback (`[midi] output`): the published state goes back to the controller's LEDs and motor faders on every
output port whose name contains `output`: a knob's value as its CC, a pad's on/off (a flag, a blackout, the
loss it selects, paused, recording) as note velocity 127/0; sent only on change, and never to a knob whose own
position already means the value shown, so a motor fader does not fight the hand moving it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..messages import RateLimitedLog, first_line
from ..storage import atomic_write_bytes
from ..validation import ConfigError, check_choice
from .actions import BY_ADDRESS, Action, ActionError, Arg, Spec, check_learnable, make_action
from .inbox import Inbox
from .state import ControlState

log = logging.getLogger(__name__)

APIS = ("auto", "alsa", "jack")
KINDS = ("cc", "note")
FILE_NAME = "midi.json"
MAX_FILE = 256 * 1024  # bytes of midi.json read at most (a few thousand mappings)
CLIENT = "uncanny"  # our MIDI client name; ports of clients named so are never opened as inputs (no loops)
SCAN_SECONDS = 2.0  # how often ports are looked for (controllers plugged in or out during a show)
TICK = 0.05  # seconds between feedback passes
LEARN_SECONDS = 60.0  # an armed learn waits this long for a control to move
PRESS = 64  # a CC value at or above this is a pressed button
LAMPS = {"toggle_pause": "paused", "pause": "paused", "record_start": "recording", "record_toggle": "recording"}

Control = tuple[str, int, int]  # (kind, channel 1-16, number 0-127)


@dataclass(frozen=True)
class Mapping:
    kind: str  # cc | note
    channel: int  # 1..16, as controllers number them
    number: int  # the CC or note number, 0..127
    address: str
    args: tuple[Any, ...] = ()  # a CC knob: the arguments after its value; a note: all of its arguments

    @property
    def control(self) -> Control:
        return self.kind, self.channel, self.number

    @property
    def spec(self) -> Spec:
        return BY_ADDRESS[self.address]

    @property
    def knob(self) -> Arg | None:
        """The argument a CC sets, or None when the CC is a button (a trigger, record/start's optional codec)."""
        args = self.spec.args
        if self.kind != "cc" or not args or (args[0].optional and args[0].tag == "s"):
            return None
        return args[0]

    def text(self) -> str:
        return " ".join([self.kind, str(self.channel), str(self.number), self.address, *map(str, self.args)])


def knob_value(arg: Arg, value: int) -> Any:
    """A CC value 0..127 as the argument's value: across its fader range, or one of its choices."""
    if arg.choices:
        return arg.choices[min(value * len(arg.choices) // 128, len(arg.choices) - 1)]
    span = arg.fader_range
    if span is None:
        raise ActionError(f"{arg.name} has no range a knob can cover")
    low, high = span
    number = high if value >= 127 else low + (high - low) * value / 127
    return round(number) if arg.tag == "i" else float(number)


def knob_position(arg: Arg, value: Any) -> int | None:
    """The CC value (0..127) that shows `value` (the inverse of knob_value), or None when it cannot."""
    if arg.choices:
        return (128 * arg.choices.index(value) + 64) // len(arg.choices) if value in arg.choices else None
    span = arg.fader_range
    if span is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    low, high = span
    return min(127, max(0, round((value - low) / (high - low) * 127)))


def _press_value(arg: Arg, current: Any) -> Any:
    """A pad on a control that needs a value: the next choice, or the other end of the fader range."""
    if arg.choices:
        return arg.choices[(arg.choices.index(current) + 1) % len(arg.choices) if current in arg.choices else 0]
    if arg.fader_range is None:
        raise ActionError(f"{arg.name} has no range a pad can toggle")
    low, high = arg.fader_range
    return low if isinstance(current, (int, float)) and current >= (low + high) / 2 else high


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (tuple, list)) and value else value


def mapping_action(mapping: Mapping, value: int, state: ControlState) -> Action:
    """The Action for one message of a mapped control: a CC's value or a note-on's velocity (1..127)."""
    spec = mapping.spec
    if (arg := mapping.knob) is not None:
        args: tuple[Any, ...] = (knob_value(arg, value), *mapping.args)
    elif mapping.args or spec.required == 0:
        args = mapping.args
    else:
        args = (_press_value(spec.args[0], _first(state.controls.get(spec.name))),)
    return make_action(spec, args, source="midi")


def _scalar(word: str) -> Any:
    for kind in (int, float):
        try:
            return kind(word)
        except ValueError:
            pass
    return word


def _number(text: str, name: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {text!r}")
    return int(text)


def parse_mapping(text: Any) -> Mapping:
    """One mapping line -> Mapping; ConfigError with one line naming the entry. Every action the mapping can
    produce is built once here, so a mapping that is accepted never fails on a controller's message."""
    if not isinstance(text, str):
        raise ConfigError(f"mappings are strings like \"cc 1 74 /uncanny/walk/truncation\", got {text!r}")
    words = text.split()
    if len(words) < 4 or words[0].lower() not in KINDS:
        raise ConfigError(f"mapping {text[:80]!r}: write KIND CHANNEL NUMBER ADDRESS [ARGS...] with KIND cc or note, "
                          f"e.g. \"cc 1 74 /uncanny/walk/truncation\"")
    try:
        kind, channel, number, address, *args = words
        spec = BY_ADDRESS.get(address)
        if spec is None or spec.kind == "query" or spec.name == "midi_learn":
            check_learnable(address)  # its one line for addresses no control can drive
        mapping = Mapping(kind.lower(), _number(channel, "channel", 1, 16), _number(number, "number", 0, 127),
                          address, tuple(map(_scalar, args)))
        for value in ((0, 127) if mapping.knob is not None else (127,)):
            mapping_action(mapping, value, ControlState())
    except (ConfigError, ActionError) as error:
        raise ConfigError(f"mapping {text[:80]!r}: {error}") from None
    return mapping


def _mappings(entries: Any) -> dict[Control, Mapping]:
    found: dict[Control, Mapping] = {}
    for entry in entries:
        mapping = parse_mapping(entry)
        if mapping.control in found:
            raise ConfigError(f"mapping {entry!r}: {mapping.kind} {mapping.channel}/{mapping.number} is mapped twice")
        found[mapping.control] = mapping
    return found


@dataclass(frozen=True)
class MidiConfig:
    """MIDI controllers ([midi] table, control/midi.py): which ports, which API, which mappings."""

    enabled: bool = True  # without python-rtmidi or a MIDI system this is one line at start, nothing more
    api: str = "auto"  # auto (ALSA, else JACK) | alsa | jack
    input: str = ""  # open the input ports whose name contains this; "" = every input port
    output: str = ""  # LED / motor-fader feedback to output ports whose name contains this; "" = none
    mappings: tuple[str, ...] = ()  # "cc 1 74 /uncanny/walk/truncation", "note 10 36 /uncanny/reset", ...

    def __post_init__(self) -> None:
        check_choice("api", self.api, APIS)
        for name in ("input", "output"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string (part of a port name), got {getattr(self, name)!r}")
        _mappings(self.mappings)


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """ALSA and libjack print their own complaints on stderr when there is no MIDI system; our one line says it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _ours(port: str) -> bool:
    return port.split(":", 1)[0].startswith(CLIENT)


class MidiController:
    """MIDI input -> Actions in `inbox`, MIDI learn kept in `run_dir`/midi.json, LED feedback from `publish()`.
    `say` gets the lines a performer should see (learn armed, learned, cancelled, a bad midi.json)."""

    def __init__(self, config: MidiConfig, inbox: Inbox, run_dir: Path | None = None,
                 say: Callable[[str], None] = log.warning) -> None:
        self.config, self.inbox, self.say = config, inbox, say
        self.path = Path(run_dir) / FILE_NAME if run_dir is not None else None
        self.stats: Counter[str] = Counter()  # received, actions, and one count per kind of ignored message
        self._log = RateLimitedLog(log, "midi")
        self._lock = threading.Lock()
        self._preset = _mappings(config.mappings)
        self._bad_file = False
        self._learned = self._load()
        self._learning: tuple[str, float] | None = None  # (address, deadline)
        self._touched: str | None = None  # the address last touched from OSC or a key
        self._heard: dict[Control, int] = {}  # the value each control was last heard at (CC buttons' edges)
        self._sent: dict[Control, int] = {}  # the value feedback last sent to each control
        self._last: dict[Control, Any] = {}  # the value a knob last put into the inbox
        self._said: list[str] = []  # lines for `say` from the MIDI threads, said by the worker
        self._pending = False  # a learned mapping waits to be written to midi.json
        self._state = ControlState()
        self._line = "MIDI off ([midi] enabled = false)"
        self._rtmidi: Any = None
        self._mido: Any = None
        self._api: Any = None
        self._scanner: Any = None  # a client that only lists the input ports
        self._out_scanner: Any = None  # ... and one listing the output ports, when [midi] output asks for feedback
        self._inputs: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the MIDI system and the ports; never raises (describe() says what happened)."""
        if not self.config.enabled:
            return
        try:
            import mido
            import rtmidi
        except ImportError as error:
            package = {"rtmidi": "python-rtmidi"}.get(error.name or "rtmidi", error.name)
            self._line = (f"MIDI off: {package} is not installed (pip install 'uncanny[midi]'); the show goes on "
                          "without it")
            return
        self._rtmidi, self._mido = rtmidi, mido
        apis = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK}
        reasons = []
        for name in ("alsa", "jack") if self.config.api == "auto" else (self.config.api,):
            if apis[name] not in rtmidi.get_compiled_api():
                reasons.append(f"{name}: not built into python-rtmidi")
                continue
            try:
                with _quiet_stderr():
                    self._scanner = rtmidi.MidiIn(apis[name], CLIENT)
            except rtmidi.RtMidiError as error:
                reasons.append(f"{name}: {first_line(error)}")
                continue
            self._api = apis[name]
            self._line = f"MIDI on {name.upper()}"
            if self.config.output:
                self._out_scanner = rtmidi.MidiOut(self._api, CLIENT)
            break
        else:
            self._line = (f"MIDI off: no MIDI system ({'; '.join(reasons)}); the show goes on without it "
                          "(start one, set [midi] api, or enabled = false)")
            return
        self._scan()
        self._thread = threading.Thread(target=self._run, name="midi", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker, close every port; safe to call more than once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(5)
        for ports in (self._inputs, self._outputs):
            for port in ports.values():
                self._close(port)
            ports.clear()
        for scanner in (self._scanner, self._out_scanner):
            if scanner is not None:
                self._close(scanner)
        self._scanner = self._out_scanner = None
        if self._pending:
            self._save()

    def __enter__(self) -> MidiController:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> str:
        """One line for the start-up log: off and why, or the ports, the mappings and where learned ones go."""
        if self._api is None:
            return self._line
        inputs = f"reading {', '.join(self.ports)}" if self.ports else \
            f"no input port {'matching ' + repr(self.config.input) + ' ' if self.config.input else ''}yet " \
            f"(looked for every {SCAN_SECONDS:g} s)"
        kept = f"learned ones kept in {self.path}" if self.path else "learned ones not kept (no run folder)"
        feedback = f"; feedback to {', '.join(self._outputs) or 'no port yet'} (matching {self.config.output!r})" \
            if self.config.output else ""
        return f"{self._line}: {inputs}; {len(self.mappings())} mappings, {kept}{feedback}"

    # ------------------------------------------------------------------------------------------ the live loop's side
    @property
    def ports(self) -> list[str]:
        """The input ports open now."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[str]:
        return list(self._outputs)

    @property
    def learning(self) -> str:
        """The address waiting for a control to be moved; "" when none (ControlState.midi_learn)."""
        learning = self._learning
        return learning[0] if learning else ""

    def mappings(self) -> dict[Control, Mapping]:
        """Every mapping in force: the preset's, with the learned ones over them."""
        with self._lock:
            return {**self._preset, **self._learned}

    def observe(self, action: Action) -> None:
        """Each action the live loop drains: a learn request arms learn; the address of an OSC or key control is
        remembered as what a learn without an address means."""
        if action.name == "midi_learn":
            address = action.value or self._touched
            if address is None:
                self.say("MIDI learn: touch a control on the OSC controller (or press its key) first, then learn")
            elif self._api is None:
                self.say(f"MIDI learn for {address}: {self._line}")
            else:
                with self._lock:
                    self._learning = (address, time.monotonic() + LEARN_SECONDS)
                self.say(f"MIDI learn: move a knob, fader or pad for {address} (within {LEARN_SECONDS:g} s)")
        elif action.source in ("osc", "keys") and action.spec.address:
            try:
                self._touched = check_learnable(action.spec.address)
            except ConfigError:
                pass

    def publish(self, state: ControlState) -> None:
        """The newest state: what pads toggle from and what the feedback shows (a reference swap: cheap)."""
        self._state = state

    # ------------------------------------------------------------------------------------------ receiving
    def _receive(self, event: tuple[list[int], float], port: str) -> None:
        """rtmidi's callback: nothing may escape into rtmidi's thread."""
        try:
            self._handle(event[0], port)
        except Exception as error:
            self._refuse(port, "internal", f"{type(error).__name__}: {error}")

    def _handle(self, data: list[int], port: str) -> None:
        self.stats["received"] += 1
        try:
            message = self._mido.Message.from_bytes(data)
        except (ValueError, TypeError, IndexError) as error:
            kind = "running status" if data and data[0] < 0x80 else "malformed"
            self._refuse(port, kind, f"{' '.join(f'{b:02x}' for b in data[:8])}: {error} (ignored)")
            return
        if message.type not in ("control_change", "note_on", "note_off"):
            self._refuse(port, message.type, f"{message.type} ignored (only CC and notes are mapped)")
            return
        kind = "cc" if message.type == "control_change" else "note"
        control = (kind, message.channel + 1, message.control if kind == "cc" else message.note)
        value = message.value if kind == "cc" else message.velocity if message.type == "note_on" else 0
        with self._lock:
            if self._learning is not None and (kind == "cc" or value > 0):
                self._learn(control, value, self._learning[0])
                return
            mapping = self._learned.get(control) or self._preset.get(control)
            previous = self._heard.get(control)
            self._heard[control] = value
        if mapping is None:
            self._refuse(port, "unmapped", f"{kind} {control[1]}/{control[2]} is not mapped (map it in [midi] "
                                           f"mappings or learn it: /uncanny/midi/learn ADDRESS, then move it)")
            return
        if kind == "note" and value == 0:
            return  # a release
        knob = mapping.knob is not None
        if kind == "cc" and not knob and (value < PRESS or (previous is not None and previous >= PRESS)):
            return  # a CC button: only its press counts
        try:
            action = mapping_action(mapping, value, self._state)
        except ActionError as error:
            self._refuse(port, "invalid", str(error))
            return
        if knob:
            with self._lock:
                if self._last.get(control) == action.value:
                    return  # a knob step that does not change the value (a batch knob has 16 values in 128)
                self._last[control] = action.value
        if self.inbox.put(action):
            self.stats["actions"] += 1
        else:
            self._refuse(port, "busy", f"{mapping.text()}: {self.inbox.capacity} actions are waiting; dropped")

    def _learn(self, control: Control, value: int, address: str) -> None:
        """(Under the lock.) Map `control` to `address`; the worker saves the file and says so."""
        self._learning = None
        try:
            mapping = parse_mapping(f"{control[0]} {control[1]} {control[2]} {address}")
        except ConfigError as error:
            self._said.append(f"MIDI learn: {error}")
        else:
            self._learned = {c: m for c, m in self._learned.items()
                             if c != control and (m.address != address or m.args)}
            self._learned[control] = mapping
            self._heard[control] = value
            self._last.pop(control, None)
            where = f"kept in {self.path}" if self.path else "not kept (no run folder)"
            self._said.append(f"MIDI learn: {mapping.text()} ({where})")
            self._pending = True
        self._wake.set()

    def _refuse(self, port: str, kind: str, text: str) -> None:
        self.stats[kind] += 1
        self._log(port, kind, text)

    # ------------------------------------------------------------------------------------------ the worker
    def _run(self) -> None:
        next_scan = time.monotonic() + SCAN_SECONDS
        while not self._stop.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            try:
                if self._pending:
                    self._save()
                with self._lock:
                    said, self._said = self._said, []
                    if self._learning is not None and time.monotonic() > self._learning[1]:
                        said.append(f"MIDI learn for {self._learning[0]}: no control moved in {LEARN_SECONDS:g} s; "
                                    "cancelled")
                        self._learning = None
                for line in said:
                    self.say(line)
                if time.monotonic() >= next_scan:
                    self._scan()
                    next_scan = time.monotonic() + SCAN_SECONDS
                self._feedback()
            except Exception as error:  # a port vanishing under us, a MIDI system gone: keep going, say it
                self._refuse("worker", "internal", f"{type(error).__name__}: {first_line(error)}")

    def _scan(self) -> None:
        """Open the matching ports that appeared, let go of those that vanished."""
        rtmidi = self._rtmidi
        self._match(self._inputs, self._scanner.get_ports(), self.config.input, rtmidi.MidiIn)
        if self._out_scanner is not None and \
                self._match(self._outputs, self._out_scanner.get_ports(), self.config.output, rtmidi.MidiOut):
            with self._lock:
                self._sent.clear()  # a port (re)opened: show it everything

    def _match(self, opened: dict[str, Any], names: list[str], part: str, kind: type) -> bool:
        for name in [n for n in opened if n not in names]:
            self._close(opened.pop(name))
            log.warning("midi: %s is gone; it is opened again if it comes back", name)
        new = [n for n in names if part.lower() in n.lower() and not _ours(n) and n not in opened]
        for name in new:
            port = kind(self._api, CLIENT)
            try:
                if kind is self._rtmidi.MidiIn:
                    port.ignore_types(sysex=False, timing=True, active_sense=True)  # SysEx is seen, and refused
                    port.set_callback(self._receive, name)
                port.open_port(port.get_ports().index(name), "feedback" if kind is self._rtmidi.MidiOut else "in")
            except (ValueError, self._rtmidi.RtMidiError) as error:  # gone between the two listings
                self._close(port)
                self._refuse(name, "cannot open", first_line(error))
                continue
            opened[name] = port
        return bool(new)

    @staticmethod
    def _close(port: Any) -> None:
        try:
            if hasattr(port, "cancel_callback"):
                port.cancel_callback()
            port.close_port()
            port.delete()
        except Exception:  # closing a port of a MIDI system that went away
            pass

    # ------------------------------------------------------------------------------------------ feedback
    def _feedback(self) -> None:
        if not self._outputs:
            return
        state, sends = self._state, []
        with self._lock:
            for control, mapping in {**self._preset, **self._learned}.items():
                value = _shown(mapping, state)
                if value is None or value == self._sent.get(control):
                    continue
                heard = self._heard.get(control)
                if mapping.knob is not None and heard is not None and \
                        _same(knob_value(mapping.knob, heard), _first(state.controls.get(mapping.spec.name))):
                    continue  # the knob is where the value is: a motor fader must not fight the hand
                self._sent[control] = value
                sends.append([(0xB0 if mapping.kind == "cc" else 0x90) | (mapping.channel - 1), mapping.number, value])
        for port in list(self._outputs.values()):
            for message in sends:
                port.send_message(message)

    # ------------------------------------------------------------------------------------------ midi.json
    def _load(self) -> dict[Control, Mapping]:
        if self.path is None or not (self.path.exists() or self.path.is_symlink()):
            return {}
        try:
            if not self.path.is_file():
                raise ValueError("not a file")
            if self.path.stat().st_size > MAX_FILE:
                raise ValueError(f"larger than {MAX_FILE // 1024} KB")
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = data.get("mappings") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise ValueError('not {"mappings": [...]}')
        except (OSError, ValueError, RecursionError) as error:
            self._bad_file = True
            self.say(f"MIDI: {self.path} cannot be read ({first_line(error)}); its mappings are ignored (it is kept "
                     f"as {FILE_NAME}.bad once a control is learned)")
            return {}
        learned, refused = {}, []
        for entry in entries:
            try:
                mapping = parse_mapping(entry)
            except ConfigError as error:
                refused.append(str(error))
                continue
            learned[mapping.control] = mapping
        if refused:
            self.say(f"MIDI: {self.path}: {len(refused)} mapping(s) ignored, the first: {refused[0]}")
        return learned

    def _save(self) -> None:
        with self._lock:
            self._pending = False
            entries = [m.text() for m in self._learned.values()]
        if self.path is None:
            return
        try:
            if self._bad_file:
                os.replace(self.path, self.path.with_name(FILE_NAME + ".bad"))
                self._bad_file = False
            atomic_write_bytes(self.path, (json.dumps({"mappings": entries}, indent=1) + "\n").encode())
        except OSError as error:
            self.say(f"MIDI learn: cannot write {self.path} ({error.strerror or error}); the mapping works until "
                     "the installation stops")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return a == b


def _shown(mapping: Mapping, state: ControlState) -> int | None:
    """What the controller should show for `mapping`: a knob's CC value, a pad's velocity 127 (on) or 0 (off);
    None when the state says nothing about it (a trigger like reset)."""
    spec = mapping.spec
    if spec.name in LAMPS:
        return 127 if getattr(state, LAMPS[spec.name]) else 0
    if spec.name not in state.controls:
        return None
    current = _first(state.controls[spec.name])
    if mapping.knob is not None:
        return knob_position(mapping.knob, current)
    if mapping.args:
        return 127 if _same(_first(mapping.args), current) else 0
    if not spec.args or spec.args[0].choices or (span := spec.args[0].fader_range) is None:
        return None  # a cycle through choices: no single lamp
    return 127 if isinstance(current, (int, float)) and current >= (span[0] + span[1]) / 2 else 0
