"""The controller layouts' contents, from the action table: one list of pages that the Open Stage Control session
(docs/uncanny.json, control/docs.py) and the TouchOSC layout (docs/uncanny.tosc, control/touchosc.py) both draw.

An item is a button (sends its address on press, with constant arguments or the values of holder faders), a toggle
(1 / 0), a fader (its argument's fader range; a rewind fader sends once, when let go), a holder fader (no address:
it only holds a value a button sends, e.g. the fade time of "fade to black") or a label (shows a state value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .actions import BY_NAME, Arg
from .state import DESCRIPTIONS, STATE_FIELDS, state_address


@dataclass(frozen=True)
class Ref:
    """A button argument taken from a holder fader's value at the press."""

    id: str


@dataclass(frozen=True)
class Item:
    kind: str  # button | toggle | fader | label
    id: str  # unique in the layout
    label: str
    address: str | None = None  # None: a holder fader
    args: tuple[Any, ...] = ()  # a button's arguments: constants and Refs
    arg: Arg | None = None  # a fader's argument: its range and type
    on_release: bool = False  # a fader that sends once when let go, not while it moves

    @property
    def range(self) -> tuple[float, float]:
        assert self.arg is not None and self.arg.fader_range is not None
        return self.arg.fader_range

    @property
    def integer(self) -> bool:
        return self.arg is not None and self.arg.tag == "i"

    @property
    def decimals(self) -> int:
        """Digits a fader shows and sends: none for integers, enough to see a step of a thousandth of the range."""
        low, high = self.range
        return 0 if self.integer else max(1, 3 - math.floor(math.log10(high - low)))


def button(name: str, label: str, *args: Any, id: str | None = None) -> Item:
    return Item("button", id or name, label, BY_NAME[name].address, args)


def fader(name: str, label: str, index: int = 0, on_release: bool = False) -> Item:
    return Item("fader", name, label, BY_NAME[name].address, arg=BY_NAME[name].args[index], on_release=on_release)


def holder(id: str, label: str, name: str, index: int) -> Item:
    return Item("fader", id, label, arg=BY_NAME[name].args[index])


def label(id: str, text: str, address: str) -> Item:
    return Item("label", id, text, address)


def pages() -> list[tuple[str, str, list[Item]]]:
    """(id, title, items) per page."""
    losses = [button("loss", f"loss {c}", c, id=f"loss_{c}") for c in BY_NAME["loss"].args[0].choices]
    codecs = [button("record_start", f"record {c}", c, id=f"record_{c}")
              for c in BY_NAME["record_start"].args[0].choices]
    journey = [
        button("pause", "pause"), button("resume", "resume"), button("toggle_pause", "pause / resume"),
        button("reset", "reset to realism"), button("back", "one snapshot back"), button("snapshot", "snapshot now"),
        fader("rewind", "rewind to iteration (on release)", on_release=True),
        fader("lr", "learning rate"), fader("speed", "steps/s (0 = free)"),
        fader("journey_minutes", "journey minutes (0 = free)"), fader("batch", "batch"), *losses,
        button("snapshots", "list snapshots"), label("snapshot_list", "snapshots", BY_NAME["snapshots"].address),
    ]
    view = [
        fader("walk_period", "walk period s"), fader("walk_truncation", "truncation"), fader("walk_seed", "walk seed"),
        Item("toggle", "grid", "population grid", BY_NAME["grid"].address),
        Item("toggle", "hud", "HUD", BY_NAME["hud"].address),
        fader("blackout", "blackout (at once)"), holder("fade_seconds", "fade time s", "blackout", 1),
        button("blackout", "fade to black", 1.0, Ref("fade_seconds"), id="fade_to_black"),
        button("blackout", "fade back", 0.0, Ref("fade_seconds"), id="fade_back"),
    ]
    record = [
        button("record_start", "record ([record] codec)"), *codecs, button("record_stop", "stop recording"),
        *(label(f"record_{n}", DESCRIPTIONS[n], state_address(n)) for n in ("recording", "recording_path", "export")),
        holder("loop_iteration", "loop of iteration", "record_loop", 0),
        holder("loop_seconds", "loop seconds", "record_loop", 1),
        button("record_loop", "export loop", Ref("loop_iteration"), Ref("loop_seconds")),
    ]
    status = [*(label(f"state_{n}", DESCRIPTIONS[n], state_address(n)) for n in STATE_FIELDS),
              button("state", "refresh", id="refresh"), button("midi_learn", "MIDI learn (the control last touched)")]
    return [("journey", "Journey", journey), ("view", "Walk & view", view), ("record", "Record", record),
            ("status", "State", status)]


def holders() -> dict[str, Item]:
    """The holder faders by id (what a Ref names)."""
    return {item.id: item for _, _, items in pages() for item in items if item.kind == "fader" and not item.address}
