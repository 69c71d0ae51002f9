"""The TouchOSC layout (docs/uncanny.tosc), from the same pages as the Open Stage Control session (layouts.py).

A .tosc file is a raw zlib stream of one XML document: `<lexml version="6">` holding one GROUP `<node>`, each node
with `<properties>` (typed: s string, b boolean, i integer, f float, r frame, c colour), `<values>` (x, touch,
text), `<messages>` (`<osc>`: send / receive flags, `<triggers>` on a value rising, falling or changing, the
address and the arguments built from "partials": a CONSTANT, or a VALUE scaled from 0..1 to a range) and
`<children>`; keys and strings are CDATA. A fader's x is 0..1 and its message scales it to the argument's fader
range; buttons send on the rise of x; a rewind fader sends when the touch ends. What one message cannot carry
(two controls' values together; a list of snapshots into a label) is a Lua script on the control.
Node IDs are derived from the control ids, so the file is the same on every run.
"""

from __future__ import annotations

import uuid
import zlib
from typing import Any

from .layouts import Item, Ref, holders, pages

VERSION = "6"
SIZE = (1024, 768)
COLUMNS, ROW, GAP, TABBAR = 4, 76, 6, 40
CONNECTIONS = "1" * 10  # every connection slot
COMMON = {"background": True, "color": (0.25, 0.25, 0.25, 1.0), "cornerRadius": 0.0, "grabFocus": True,
          "interactive": True, "locked": False, "orientation": 0, "outline": True, "outlineStyle": 1,
          "pointerPriority": 0, "shape": 1, "visible": True}
TEXT = {"font": 0, "textAlignH": 2, "textAlignV": 2, "textColor": (1.0, 1.0, 1.0, 1.0), "textSize": 14}
BY_TYPE = {
    "BUTTON": {"buttonType": 0, "press": True, "release": True, "valuePosition": False},
    "FADER": {"response": 0, "responseFactor": 100, "grid": True, "gridColor": (0.0, 0.0, 0.0, 0.25),
              "cursor": True, "cursorDisplay": 0, "bar": True, "barDisplay": 0, "gridSteps": 13,
              "orientation": 1},  # east: a horizontal fader, low end on the left
    "LABEL": {**TEXT, "interactive": False, "textClip": True, "textLength": 0},
    "GROUP": {"grabFocus": False, "outlineStyle": 0, "interactive": False},
    "PAGER": {"grabFocus": False, "outlineStyle": 0, "tabLabels": True, "tabbar": True, "tabbarDoubleTap": False,
              "tabbarSize": TABBAR, "textSizeOff": 14, "textSizeOn": 14},
}
SNAPSHOT_SCRIPT = """function onReceiveOSC(message)
  if message[1] ~= '{address}' then return end
  local list = {{}}
  for _, argument in ipairs(message[2]) do list[#list + 1] = tostring(argument.value) end
  self.values.text = table.concat(list, ' ')
end"""


def _id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"uncanny.tosc/{name}"))


def _cdata(text: str) -> str:
    return f"<![CDATA[{text.replace(']]>', ']]]]><![CDATA[>')}]]>"


def _number(value: float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _property(key: str, value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 4 and key in ("frame",):
        body, kind = "".join(f"<{k}>{_number(v)}</{k}>" for k, v in zip("xywh", value)), "r"
    elif isinstance(value, tuple):
        body, kind = "".join(f"<{k}>{_number(v)}</{k}>" for k, v in zip("rgba", value)), "c"
    elif isinstance(value, str):
        body, kind = _cdata(value), "s"
    else:
        kind = "b" if isinstance(value, bool) else "i" if isinstance(value, int) else "f"
        body = _number(value)
    return f"<property type='{kind}'><key>{_cdata(key)}</key><value>{body}</value></property>"


def _value(key: str, default: Any) -> str:
    text = ("true" if default else "false") if isinstance(default, bool) else str(default)
    return (f"<value><key>{_cdata(key)}</key><locked>0</locked><lockedDefaultCurrent>0</lockedDefaultCurrent>"
            f"<default>{_cdata(text)}</default><defaultPull>0</defaultPull></value>")


def _partial(kind: str, conversion: str, value: Any, low: float = 0, high: float = 1) -> str:
    return (f"<partial><type>{kind}</type><conversion>{conversion}</conversion><value>{_cdata(str(value))}</value>"
            f"<scaleMin>{_number(low)}</scaleMin><scaleMax>{_number(high)}</scaleMax></partial>")


def _constant(value: Any) -> str:
    conversion = "STRING" if isinstance(value, str) else "INTEGER" if isinstance(value, int) else "FLOAT"
    return _partial("CONSTANT", conversion, value if isinstance(value, str) else _number(value))


def _osc(address: str, arguments: list[str], trigger: tuple[str, str] | None, send: bool = True) -> str:
    triggers = "" if trigger is None else \
        f"<triggers><trigger><var>{_cdata(trigger[0])}</var><condition>{trigger[1]}</condition></trigger></triggers>"
    return (f"<osc><enabled>1</enabled><send>{int(send)}</send><receive>1</receive><feedback>0</feedback>"
            f"<noDuplicates>0</noDuplicates><connections>{CONNECTIONS}</connections>{triggers}"
            f"<path>{_partial('CONSTANT', 'STRING', address)}</path><arguments>{''.join(arguments)}</arguments></osc>")


def _lua(value: Any) -> str:
    """A button argument in a TouchOSC script: a constant, or a holder fader's x scaled to its range."""
    if not isinstance(value, Ref):
        return f"'{value}'" if isinstance(value, str) else _number(value)
    item = holders()[value.id]
    low, high = item.range
    scaled = f"{_number(low)} + root:findByName('{value.id}', true).values.x * {_number(high - low)}"
    return f"math.floor({scaled} + 0.5)" if item.integer else scaled


def _node(kind: str, name: str, frame: tuple[float, float, float, float], properties: dict[str, Any],
          values: list[str], messages: list[str] = (), children: list[str] = (), root: bool = False) -> str:
    props = {**COMMON, **BY_TYPE.get(kind, {}), "name": name, "frame": frame, **properties}
    return (f"<node ID='{_id(name)}' type='{kind}'>{'<includes></includes>' if root else ''}"
            f"<properties>{''.join(_property(k, props[k]) for k in sorted(props))}</properties>"
            f"<values>{''.join(values)}</values>"
            + (f"<messages>{''.join(messages)}</messages>" if messages else "")
            + (f"<children>{''.join(children)}</children>" if children else "") + "</node>")


def _control(item: Item, frame: tuple[float, float, float, float]) -> str:
    x, touch = _value("x", 0), _value("touch", False)
    if item.kind == "label":
        properties: dict[str, Any] = {}
        if item.id == "snapshot_list":
            properties["script"] = SNAPSHOT_SCRIPT.format(address=item.address)
        message = _osc(item.address, [_partial("VALUE", "STRING", "text")], None, send=False)
        return _node("LABEL", item.id, frame, properties, [_value("text", "-"), touch], [message])
    if item.kind == "toggle":
        message = _osc(item.address, [_partial("VALUE", "INTEGER", "x")], ("x", "ANY"))
        return _node("BUTTON", item.id, frame, {"buttonType": 1}, [x, touch], [message])
    if item.kind == "button":
        if any(isinstance(a, Ref) for a in item.args):
            call = ", ".join([f"'{item.address}'", *map(_lua, item.args)])
            script = (f"function onValueChanged(key)\n  if key == 'x' and self.values.x == 1 then\n"
                      f"    sendOSC({call})\n  end\nend")
            return _node("BUTTON", item.id, frame, {"script": script}, [x, touch])
        message = _osc(item.address, [_constant(a) for a in item.args], ("x", "RISE"))
        return _node("BUTTON", item.id, frame, {}, [x, touch], [message])
    if item.address is None:  # a holder: its value is read by a button's script
        return _node("FADER", item.id, frame, {}, [x, touch])
    low, high = item.range
    argument = _partial("VALUE", "INTEGER" if item.integer else "FLOAT", "x", low, high)
    message = _osc(item.address, [argument], ("touch", "FALL") if item.on_release else ("x", "ANY"))
    return _node("FADER", item.id, frame, {}, [x, touch], [message])


def touchosc_xml() -> str:
    width, height = SIZE
    cell = (width - GAP * (COLUMNS + 1)) / COLUMNS
    groups = []
    for page_id, title, items in pages():
        controls = []
        for index, item in enumerate(items):
            column, row = index % COLUMNS, index // COLUMNS
            controls.append(_control(item, (GAP + column * (cell + GAP), GAP + row * (ROW + GAP), cell, ROW)))
        groups.append(_node("GROUP", page_id, (0, TABBAR, width, height - TABBAR), {"tabLabel": title},
                            [_value("touch", False)], children=controls))
    pager = _node("PAGER", "pages", (0, 0, width, height), {}, [_value("page", 0), _value("touch", False)],
                  children=groups)
    root = _node("GROUP", "uncanny", (0, 0, width, height), {}, [_value("touch", False)], children=[pager], root=True)
    return f"<?xml version='1.0' encoding='UTF-8'?><lexml version='{VERSION}'>{root}</lexml>"


def touchosc_layout() -> bytes:
    """The .tosc file: the XML, zlib-compressed (level 9, so the bytes are the same on every run)."""
    return zlib.compress(touchosc_xml().encode("utf-8"), 9)
