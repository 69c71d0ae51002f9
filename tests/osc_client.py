"""A controller for the tests: one UDP socket on loopback that sends OSC and collects the replies."""

from __future__ import annotations

import itertools
import socket
import time
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from installation.control.packets import build_message

WAIT = 10.0  # seconds: the bound on every wait (a loaded 2-core machine); a healthy server answers in ms
_tokens = itertools.count(1)


def typed_message(address: str, *args: Any) -> bytes:
    """A message as a generic OSC library types it: True/False as T/F, ints as i, floats as f (a button from a
    bridge that sends booleans)."""
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class Client:
    """A controller: one UDP socket on loopback (127.0.0.1, or ::1 for an IPv6 server address) that sends and
    collects replies."""

    def __init__(self, server: tuple[str, int], port: int = 0) -> None:
        self.server = server
        v6 = ":" in server[0]
        self.sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("::1" if v6 else "127.0.0.1", port))
        self.address = self.sock.getsockname()[:2]
        self.backlog: list[tuple[str, list[Any]]] = []  # replies received but not yet expected

    def send(self, address: str, *args: Any) -> None:
        self.sock.sendto(build_message(address, *args), self.server)

    def send_typed(self, address: str, *args: Any) -> None:
        self.sock.sendto(typed_message(address, *args), self.server)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def expect(self, address: str, where: Any = None, wait: float = WAIT) -> list[Any]:
        """The arguments of the oldest reply at `address` (whose arguments satisfy `where`), from the backlog or
        the socket; fails after `wait`. Replies passed over stay in the backlog for later expectations."""
        def wanted(reply: tuple[str, list[Any]]) -> bool:
            return reply[0] == address and (where is None or where(reply[1]))

        for reply in self.backlog:
            if wanted(reply):
                self.backlog.remove(reply)
                return reply[1]
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                message = OscMessage(self.sock.recv(65536))
            except TimeoutError:
                break
            reply = (message.address, list(message.params))
            if wanted(reply):
                return reply[1]
            self.backlog.append(reply)
        raise AssertionError(f"no {address} within {wait:g} s; got {[a for a, _ in self.backlog[-10:]]}")

    def sync(self) -> None:
        """Wait until everything sent so far has been handled (ping with a fresh token, wait for its pong)."""
        token = next(_tokens)
        self.send("/uncanny/ping", token)
        self.expect("/uncanny/pong", lambda args: args == [token])

    def received(self) -> list[str]:
        """The addresses of every reply received so far, kept in the backlog (after a sync: every reply to what
        was sent before it)."""
        while (data := self.pending()) is not None:
            message = OscMessage(data)
            self.backlog.append((message.address, list(message.params)))
        return [address for address, _ in self.backlog]

    def pending(self) -> bytes | None:
        self.sock.setblocking(False)
        try:
            return self.sock.recv(65536)
        except BlockingIOError:
            return None
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()
