"""Telling systemd (a `Type=notify` unit with `WatchdogSec=`) that the display is alive, with no dependency.

The protocol (sd_notify(3)): one datagram of `KEY=VALUE` lines to the AF_UNIX socket named by $NOTIFY_SOCKET; a name
starting with `@` is in the abstract namespace (a NUL byte in its place). The live loop calls `presented()` after
each frame reaches the screen: the first sends READY=1, later ones WATCHDOG=1, at most once per `interval` (half of
$WATCHDOG_USEC where systemd sets it, and at most a second), so a frozen GL driver or a stuck loop stops the pings
and systemd restarts the service. `stopping()` sends STOPPING=1. Without $NOTIFY_SOCKET every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

MAX_INTERVAL = 1.0  # seconds between watchdog pings at the most


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.name = name = environ.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if name.startswith("@"):
            self.address = b"\0" + name[1:].encode()
        elif name.startswith("/"):
            self.address = name
        elif name:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name (@...); not notifying", name)
        self.interval = MAX_INTERVAL
        usec = environ.get("WATCHDOG_USEC", "")
        if usec.isdigit() and int(usec) > 0:
            self.interval = min(MAX_INTERVAL, int(usec) / 2e6)
        self.ready = False
        self._last_ping = -float("inf")
        self._socket: socket.socket | None = None
        self._failed = False

    def presented(self, now: float) -> None:
        """A frame reached the screen (monotonic `now`): READY=1 the first time, then WATCHDOG=1, rate-limited."""
        if self.address is None:
            return
        if not self.ready:
            self.ready = True
            self._last_ping = now
            self._send("READY=1\nSTATUS=presenting frames")
        elif now - self._last_ping >= self.interval:
            self._last_ping = now
            self._send("WATCHDOG=1")

    def stopping(self) -> None:
        if self.address is not None:
            self._send("STOPPING=1\nSTATUS=stopping")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> None:
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message.encode(), self.address)
            self._failed = False
        except OSError as error:
            if not self._failed:  # once per failure spell: a missing listener must not flood the log
                log.warning("cannot notify systemd at %s: %s", self.name, error)
            self._failed = True
