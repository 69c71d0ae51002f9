"""OSCQuery: the namespace as JSON over HTTP, generated from the action table (Vidvox proposal, third revision).

`GET /` returns the whole tree, `GET /uncanny/lr` one node, `GET /uncanny/lr?VALUE` one attribute,
`GET /?HOST_INFO` the host description (ossia score asks for `?HOST_INFO=1` too). Control nodes carry TYPE,
RANGE, ACCESS 3 and, where the live loop has published one, VALUE; `/uncanny/state/*` nodes are read-only
(ACCESS 1) and carry the current state. No zeroconf advertisement and no WebSocket streaming (EXTENSIONS says so):
clients are pointed at http://HOST:PORT by hand. Requests from outside `[osc] allow` get 403.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from .actions import Spec, osc_specs
from .osc import OscError
from .state import DESCRIPTIONS, STATE_FIELDS, TYPE_TAGS, ControlState, control_values, state_address, state_value

log = logging.getLogger(__name__)

ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION")
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
              "CLIPMODE": False, "UNIT": False, "CRITICAL": False, "LISTEN": False, "PATH_CHANGED": False}


def _range(spec: Spec) -> list[dict[str, Any]]:
    ranges = []
    for arg in spec.args:
        if not arg.advertised:
            continue
        if arg.choices:
            ranges.append({"VALS": list(arg.choices)})
        else:
            bounds = {"MIN": arg.low} if arg.low is not None else {}
            if arg.high is not None:
                bounds["MAX"] = arg.high
            ranges.append(bounds)
    return ranges


def _method(spec: Spec, state: ControlState) -> dict[str, Any]:
    node: dict[str, Any] = {"FULL_PATH": spec.address, "TYPE": spec.type_tags, "DESCRIPTION": spec.description}
    if spec.type_tags == "N":
        node["ACCESS"] = 2  # a trigger: nothing to read
    else:
        node["ACCESS"] = 3
        node["RANGE"] = _range(spec)
        if spec.name in state.controls:
            node["VALUE"] = list(control_values(state, spec.name))[:len(spec.type_tags)]
    return node


def _state_node(name: str, state: ControlState) -> dict[str, Any]:
    node: dict[str, Any] = {"FULL_PATH": state_address(name), "TYPE": TYPE_TAGS[name], "ACCESS": 1,
                            "DESCRIPTION": DESCRIPTIONS[name]}
    value = state_value(state, name)
    if value is not None:
        node["VALUE"] = [value]
    return node


def build_tree(state: ControlState) -> dict[str, Any]:
    """The whole OSCQuery tree: containers for each path segment, methods from the action table, state nodes."""
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
    found = []
    if tree.get("ACCESS") in (2, 3):
        found.append(tree["FULL_PATH"])
    for child in tree.get("CONTENTS", {}).values():
        found += methods(child)
    return found


class OscQueryServer:
    """HTTP on `host:port` (port 0 = any free one, see `.address`), answering from `get_state()`."""

    def __init__(self, host: str, port: int, osc_port: int, get_state: Callable[[], ControlState],
                 allow: tuple[str, ...]) -> None:
        networks = [ipaddress.ip_network(n, strict=False) for n in allow]
        host_info = {"NAME": "uncanny", "OSC_PORT": osc_port, "OSC_TRANSPORT": "UDP", "EXTENSIONS": EXTENSIONS}

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a client that opens a connection and sends nothing is dropped

            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                ip = ipaddress.ip_address(self.client_address[0])
                ip = getattr(ip, "ipv4_mapped", None) or ip
                if not any(ip in network for network in networks):
                    self._reply(403, {"error": "not in [osc] allow"})
                    return
                url = urlsplit(self.path)
                query = unquote(url.query).split("=")[0]
                if query == "HOST_INFO":
                    self._reply(200, host_info)
                    return
                node = find_node(build_tree(get_state()), unquote(url.path))
                if node is None:
                    self._reply(404, {"error": f"no node at {url.path[:80]}"})
                elif not query:
                    self._reply(200, node)
                elif query not in ATTRIBUTES:
                    self._reply(400, {"error": f"unknown attribute {query[:40]}"})
                else:
                    self._reply(200, {query: node[query]} if query in node else {})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the http.server signature)
                log.debug("oscquery: %s %s", self.client_address[0], format % args)

        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        server_class = type("_HTTPServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        try:
            self._server = server_class((host, port), Handler)
        except OSError as error:
            raise OscError(f"cannot serve OSCQuery on {host}:{port} ({error.strerror or error}); set [osc] "
                           "oscquery_port (0 = off)") from None
        self.address: tuple[str, int] = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="oscquery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
