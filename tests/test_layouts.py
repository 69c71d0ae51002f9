"""The controller layouts shipped in docs/ are generated from the action table, and every value any of their controls
can send is accepted by the server's own validation (make_action): read from the files, as the apps read them
(the .tosc decompressed and parsed as XML, scripts read for what they send)."""

from __future__ import annotations

import itertools
import json
import re
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import pytest

from installation.control.actions import BY_ADDRESS, SPECS, make_action
from installation.control.docs import session_json, session_widgets
from installation.control.state import STATE_FIELDS, state_address
from installation.control.touchosc import touchosc_layout

DOCS = Path(__file__).resolve().parents[1] / "docs"
SHOWN = {state_address(n) for n in STATE_FIELDS} | {"/uncanny/snapshots"}  # what labels may show
SENT = {s.address for s in SPECS if s.address} - {"/uncanny/ping"}  # what the layouts must be able to send


def accepted(address: str, candidates: list[list[Any]]) -> None:
    """Every combination of the arguments' possible values is accepted for `address` (raises ActionError)."""
    for args in itertools.product(*candidates):
        make_action(BY_ADDRESS[address], list(args))


def test_every_fader_range_is_accepted_at_both_ends():
    for spec in SPECS:
        for arg in spec.args:
            if arg.fader_range is not None:
                for end in arg.fader_range:
                    arg.check(int(end) if arg.tag == "i" else float(end))


# ------------------------------------------------------------------------------------------ Open Stage Control
JS_SEND = re.compile(r"send\('(/[^']+)'((?:, [^,]+)*)\)$")


def _js_values(expression: str, widget: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> list[Any]:
    if (found := re.fullmatch(r"(Math\.round\()?(value|get\('(\w+)'\))\)?", expression)) is None:
        return [json.loads(expression)]
    source = widget if found.group(2) == "value" else by_id[found.group(3)]
    assert source["type"] == "fader" and source.get("bypass"), source  # a holder, or the fader itself
    ends = [source["range"]["min"], source["range"]["max"]]
    return [round(end) for end in ends] if found.group(1) else ends


def test_open_stage_control_session_is_generated_and_sends_only_what_the_server_accepts():
    text = (DOCS / "uncanny.json").read_text()
    assert text == session_json(), "regenerate: python3 -m installation.control.docs --session > docs/uncanny.json"
    document = json.loads(text)
    assert document["version"] > "1.24.2" and document["type"] == "session"  # else loaded as a 0.x file
    widgets = session_widgets(document)
    ids = [w["id"] for w in widgets] + [t["id"] for t in document["content"]["tabs"]]
    assert len(ids) == len(set(ids)), "Open Stage Control ids must be unique (a shared id makes clones)"
    by_id, sent = {w["id"]: w for w in widgets}, set()
    for widget in widgets:
        if widget["type"] == "text":
            assert widget["address"] in SHOWN
            continue
        script = widget.get("onValue") or widget.get("onTouch")
        if widget.get("bypass"):
            if script is None:  # a holder fader: read by a button's script
                assert widget["type"] == "fader" and "address" not in widget
                continue
            if widget.get("onTouch"):
                assert script.startswith("if (event.type === 'stop') ")  # sent once, when the fader is let go
                script = script.removeprefix("if (event.type === 'stop') ")
            found = JS_SEND.match(script)
            assert found, script
            address, args = found.group(1), [a for a in found.group(2).split(", ") if a]
            accepted(address, [_js_values(a, widget, by_id) for a in args])
        else:
            address = widget["address"]
            if widget["type"] == "fader":  # both ends of the fader must be accepted values
                accepted(address, [[widget["range"]["min"], widget["range"]["max"]]])
            elif widget["mode"] == "momentary":
                accepted(address, [])  # sent without an argument
            else:
                accepted(address, [[v for v in (widget["on"], widget.get("off")) if v is not None]])
        sent.add(address)
    assert sent == SENT


# ------------------------------------------------------------------------------------------ TouchOSC
def _properties(node: ET.Element) -> dict[str, str]:
    return {p.findtext("key"): p.findtext("value") or "" for p in node.find("properties")}


def _partial_values(partial: ET.Element) -> list[Any]:
    kind, conversion = partial.findtext("type"), partial.findtext("conversion")
    convert = {"INTEGER": int, "FLOAT": float, "STRING": str}[conversion]
    if kind == "CONSTANT":
        return [convert(partial.findtext("value"))]
    assert kind == "VALUE" and partial.findtext("value") == "x"
    return [convert(float(partial.findtext(end))) for end in ("scaleMin", "scaleMax")]


LUA_ARG = re.compile(r"math\.floor\((?P<ilow>[-\d.e]+) \+ root:findByName\('(?P<iname>\w+)', true\)\.values\.x \* "
                     r"(?P<ispan>[-\d.e]+) \+ 0\.5\)|(?P<low>[-\d.e]+) \+ root:findByName\('(?P<name>\w+)', true\)"
                     r"\.values\.x \* (?P<span>[-\d.e]+)|'(?P<text>[^']*)'|(?P<number>[-\d.e]+)")


def _lua_values(match: re.Match[str], faders: set[str]) -> list[Any]:
    if match["text"] is not None:
        return [match["text"]]
    if match["number"] is not None:
        return [float(match["number"])]
    integer = match["iname"] is not None
    name, low, span = (match["iname"], match["ilow"], match["ispan"]) if integer else \
        (match["name"], match["low"], match["span"])
    assert name in faders, name
    ends = [float(low) + x * float(span) for x in (0.0, 1.0)]
    return [int(end + 0.5) for end in ends] if integer else ends


def test_touchosc_layout_is_generated_and_sends_only_what_the_server_accepts():
    data = (DOCS / "uncanny.tosc").read_bytes()
    assert data == touchosc_layout(), \
        "regenerate: python3 -m installation.control.docs --touchosc > docs/uncanny.tosc"
    root = ET.fromstring(zlib.decompress(data))  # a raw zlib stream of one <lexml> document
    assert root.tag == "lexml" and root.get("version") == "6" and [n.get("type") for n in root] == ["GROUP"]
    nodes = list(root.iter("node"))
    names = [_properties(n)["name"] for n in nodes]
    assert len(names) == len(set(names)) and len({n.get("ID") for n in nodes}) == len(nodes)
    faders = {_properties(n)["name"] for n in nodes if n.get("type") == "FADER"}
    sent = set()
    for node in nodes:
        properties = _properties(node)
        for osc in node.findall("messages/osc"):
            address = osc.find("path/partial").findtext("value")
            if osc.findtext("send") == "0":  # a label showing a value
                assert node.get("type") == "LABEL" and address in SHOWN
                continue
            trigger = (osc.findtext("triggers/trigger/var"), osc.findtext("triggers/trigger/condition"))
            if node.get("type") == "BUTTON":  # a press (x rises) or a toggle (x changes, its value sent)
                assert trigger == (("x", "ANY") if properties["buttonType"] == "1" else ("x", "RISE"))
            elif address == "/uncanny/rewind":
                assert trigger == ("touch", "FALL")  # sent once, when the fader is let go
            accepted(address, [_partial_values(p) for p in osc.findall("arguments/partial")])
            sent.add(address)
        if "sendOSC(" in properties.get("script", ""):
            call = re.search(r"sendOSC\('(/[^']+)', (.*)\)\n", properties["script"])
            accepted(call[1], [_lua_values(m, faders) for m in LUA_ARG.finditer(call[2])])
            sent.add(call[1])
    assert sent == SENT


def test_touchosc_layout_reads_back_in_an_independent_tosc_library():
    py2tosc = pytest.importorskip("py2tosc", reason="optional: pip install py2tosc")
    document = py2tosc.loads(zlib.decompress((DOCS / "uncanny.tosc").read_bytes()).decode())
    assert document.validate() == []
    assert document.dumps() == zlib.decompress(touchosc_layout()).decode()  # byte for byte as we wrote it
