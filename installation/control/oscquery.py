"""OSCQuery (Vidvox's proposal): the namespace as JSON, generated from the action table, and the values a LISTEN
client is sent. No sockets here: control/http.py serves it on the [http] port.

- `build_tree(state)`: a container per path segment; a method per OSC address with TYPE, ACCESS (3 for the
  controls whose applied value is published, 2 for the rest: triggers, rewind, record ...), RANGE (what the
  dispatcher accepts: an exclusive minimum is written as the least value an OSC argument of that type can carry
  above it, since the proposal's MIN is inclusive), DESCRIPTION and, where published, VALUE; `/uncanny/state/*`
  are read-only (ACCESS 1).
- `answer(path, query, state)`: the HTTP status and JSON body of `GET PATH?QUERY`: 404 no node, 204 an attribute
  the node does not have (VALUE of a trigger, of a value not measured yet, UNIT ...), 400 a name the proposal does
  not define.
- `values(state)`: every readable address and its OSC arguments: the VALUEs, and what LISTEN pushes on change.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .actions import BY_NAME, Arg, Spec, osc_specs
from .state import DESCRIPTIONS, ECHOED, STATE_FIELDS, TYPE_TAGS, control_values, state_address, state_value

NAME = "uncanny"  # HOST_INFO's NAME (ossia score takes a reply without one for something else) and the zeroconf name
SERVED = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION")
# every attribute the proposal names: one this server leaves out answers 204 (a valid request it has nothing for)
PROPOSAL = SERVED + ("TAGS", "EXTENDED_TYPE", "UNIT", "CRITICAL", "CLIPMODE", "OVERLOADS", "HTML")
# LISTEN: a websocket on the HTTP port takes {"COMMAND": "LISTEN"|"IGNORE", "DATA": path} text frames and pushes each
# listened value as a binary frame holding one OSC message, when it changes (and once at LISTEN)
EXTENSIONS = {**{name: name in SERVED for name in PROPOSAL if name not in ("FULL_PATH", "CONTENTS", "TYPE")},
              "LISTEN": True, "PATH_CHANGED": False, "PATH_ADDED": False, "PATH_REMOVED": False,
              "PATH_RENAMED": False}


def _least_above(arg: Arg) -> float | int:
    """The least value `arg` accepts when its range excludes `low`: the next integer, or the next 32-bit float (what
    an OSC `f` carries) above `low`."""
    assert arg.low is not None
    if arg.tag == "i":
        return int(math.floor(arg.low)) + 1
    value = np.float32(arg.low)
    while float(value) <= arg.low:
        value = np.nextafter(value, np.float32(np.inf))
    return float(value)


def _range(spec: Spec) -> list[dict[str, Any] | None]:
    """One entry per advertised argument; None (JSON null, the proposal's placeholder) for an unranged one."""
    ranges: list[dict[str, Any] | None] = []
    for arg in spec.args:
        if not arg.advertised:
            continue
        if arg.choices:
            ranges.append({"VALS": list(arg.choices)})
            continue
        bounds: dict[str, Any] = {}
        if arg.low is not None:
            bounds["MIN"] = _least_above(arg) if arg.low_open else arg.low
        if arg.high is not None:
            bounds["MAX"] = arg.high
        ranges.append(bounds or None)
    return ranges


def _method(spec: Spec, state: Any) -> dict[str, Any]:
    assert spec.address is not None
    node: dict[str, Any] = {"FULL_PATH": spec.address, "TYPE": spec.type_tags, "DESCRIPTION": spec.description,
                            "ACCESS": 3 if spec.name in ECHOED else 2}
    if ranges := _range(spec):
        node["RANGE"] = ranges
    if spec.name in ECHOED and spec.name in state.controls:
        node["VALUE"] = list(control_values(state, spec.name))[:len(spec.type_tags)]
    return node


def _state_node(name: str, state: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"FULL_PATH": state_address(name), "TYPE": TYPE_TAGS[name], "ACCESS": 1,
                            "DESCRIPTION": DESCRIPTIONS[name]}
    if (value := state_value(state, name)) is not None:
        node["VALUE"] = [value]
    return node


def build_tree(state: Any) -> dict[str, Any]:
    """The whole OSCQuery tree of the published `state`."""
    root: dict[str, Any] = {"FULL_PATH": "/", "ACCESS": 0, "CONTENTS": {}}

    def place(node: dict[str, Any]) -> None:
        parts = node["FULL_PATH"].strip("/").split("/")
        parent = root
        for depth, part in enumerate(parts[:-1]):
            contents = parent.setdefault("CONTENTS", {})
            parent = contents.setdefault(part, {"FULL_PATH": "/" + "/".join(parts[:depth + 1]), "ACCESS": 0})
        existing = parent.setdefault("CONTENTS", {}).get(parts[-1], {})
        parent["CONTENTS"][parts[-1]] = {**node, **({"CONTENTS": existing["CONTENTS"]} if "CONTENTS" in existing
                                                     else {})}

    for spec in osc_specs():
        place(_method(spec, state))
    for name in STATE_FIELDS:
        place(_state_node(name, state))
    return root


def find_node(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    node = tree
    for part in [p for p in path.strip("/").split("/") if p]:
        node = node.get("CONTENTS", {}).get(part)
        if node is None:
            return None
    return node


def methods(tree: dict[str, Any]) -> list[str]:
    """The writable addresses in a tree (ACCESS 2 or 3): what a client may send to."""
    found = [tree["FULL_PATH"]] if tree.get("ACCESS") in (2, 3) else []
    for child in tree.get("CONTENTS", {}).values():
        found += methods(child)
    return found


def host_info(osc_port: int | None) -> dict[str, Any]:
    """`?HOST_INFO`: where to send OSC (UDP, to the HTTP server's host) and what this server does."""
    info: dict[str, Any] = {"NAME": NAME, "EXTENSIONS": EXTENSIONS}
    if osc_port is not None:  # with OSC off there is nowhere to send (a missing OSC_PORT would mean the HTTP port)
        info |= {"OSC_PORT": osc_port, "OSC_TRANSPORT": "UDP"}
    return info


def answer(path: str, query: str, state: Any, osc_port: int | None) -> tuple[int, dict[str, Any] | None]:
    """(HTTP status, JSON body or None) for `GET path?query`; `query` is the raw query string."""
    attribute = query.split("&")[0].split("=")[0]
    if attribute == "HOST_INFO":  # any path; ossia score asks `?HOST_INFO=1` as well
        return 200, host_info(osc_port)
    node = find_node(build_tree(state), path)
    if node is None:
        return 404, {"error": f"no node at {path[:80]}"}
    if not attribute:
        return 200, node
    if attribute not in PROPOSAL:
        return 400, {"error": f"unknown attribute {attribute[:40]}; this server answers {', '.join(SERVED)}"}
    return (200, {attribute: node[attribute]}) if attribute in node else (204, None)


READABLE = frozenset([state_address(n) for n in STATE_FIELDS] + [BY_NAME[n].address for n in ECHOED
                                                                  if BY_NAME[n].address])


def values(state: Any) -> dict[str, tuple[Any, ...]]:
    """Address -> OSC arguments of every readable node that has a value now."""
    found = {state_address(n): (v,) for n in STATE_FIELDS if (v := state_value(state, n)) is not None}
    for name in ECHOED:
        address = BY_NAME[name].address
        if address and name in state.controls:
            found[address] = control_values(state, name)
    return found
