"""The OSC server: a python-osc BlockingOSCUDPServer in a daemon thread that turns datagrams into Actions.

Per datagram, in this order: the sender is checked against `[osc] allow` (refused senders are never parsed or
answered); the bytes are checked by packets.check_datagram (size, structure, time tags); python-osc's
Dispatcher(strict_timing=False) calls the handler mapped to the address, which validates the arguments against
the action table and puts the Action into the inbox. Handlers never touch the engine, GL or the pipe. Queries
(ping, state, snapshots) are answered at once from the state the live loop last published. Bad input from an
allowed sender gets one `/uncanny/error s` reply (rate-limited per sender) and one log line (rate-limited per
sender and kind), so a flood can neither fill the disk nor be amplified.

Feedback (a second daemon thread) sends `/uncanny/state/*` to every `feedback` target and to the reply address
of each sender heard from in the last RECENT_SECONDS: every value a changed field was published with (a reset's
iteration 0 too, however soon the next step follows), at once; everything every `state_every` seconds; and the
address of a control whose published value changed (the echo).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from .config import OscConfig, parse_target
from .actions import BY_NAME, ROOT, ActionError, Spec, make_action, osc_specs
from .inbox import Inbox
from .packets import PacketError, build_message, check_datagram
from .state import ON_CHANGE, STATE_FIELDS, ControlState, control_values, state_address, state_value

log = logging.getLogger(__name__)

ERROR_ADDRESS = f"{ROOT}/error"
PONG_ADDRESS = f"{ROOT}/pong"
RECENT_SECONDS = 300.0  # a sender keeps receiving feedback this long after its last valid message
MAX_RECENT = 32  # senders remembered for feedback
FEEDBACK_TICK = 0.05  # seconds between looks for a periodic broadcast (a change wakes the feedback at once)
MAX_CHANGES = 256  # published states with changes waiting for the feedback thread, at the most
LOG_EVERY = 10.0  # seconds between log lines per (sender, kind)
MAX_LOG_KEYS = 1024
ERROR_BURST, ERROR_RATE = 20.0, 10.0  # /uncanny/error replies per sender: a burst of 20, then 10 a second
MAX_SNAPSHOT_REPLY = 1000  # newest snapshot iterations in one /uncanny/snapshots reply (fits one datagram)
MAX_ERROR_TEXT = 400


class OscError(Exception):
    """The OSC server cannot start (port in use, bad address); one line."""


class _RateLimitedLog:
    """One warning per (sender, kind) per LOG_EVERY seconds, with the number of lines it held back."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], list[float]] = {}  # (sender, kind) -> [last logged, held back]
        self._lock = threading.Lock()

    def __call__(self, sender: str, kind: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) >= MAX_LOG_KEYS:
                self._seen.clear()  # many senders (a scan, spoofing): forget them rather than grow
            entry = self._seen.get((sender, kind))
            if entry is not None and now - entry[0] < LOG_EVERY:
                entry[1] += 1
                return
            held = int(entry[1]) if entry else 0
            self._seen[(sender, kind)] = [now, 0]
        log.warning("osc: %s from %s: %s%s", kind, sender, text,
                    f" ({held} more like it in the last {LOG_EVERY:g} s)" if held else "")


class _Bucket:
    """A token bucket per sender for error replies."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}

    def take(self, sender: str) -> bool:
        now = time.monotonic()
        if len(self._buckets) >= MAX_LOG_KEYS:
            self._buckets.clear()
        tokens, then = self._buckets.get(sender, [ERROR_BURST, now])
        tokens = min(ERROR_BURST, tokens + (now - then) * ERROR_RATE)
        self._buckets[sender] = [tokens - 1 if tokens >= 1 else tokens, now]
        return tokens >= 1


class _UDPServer(BlockingOSCUDPServer):
    """python-osc's server with our gatekeeping: allowlist before anything, check_datagram before parsing."""

    max_packet_size = 65536  # read oversized datagrams whole, so they are refused as such, not truncated

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, owner: OscServer) -> None:
        self.owner = owner
        super().__init__(address, dispatcher)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.owner._allowed(client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.owner._receive(request[0], client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.owner._log(str(client_address[0]), "internal", "unexpected error (see the debug log)")
        log.debug("osc: error handling a datagram", exc_info=True)


class OscServer:
    """Listens on `config.host:config.port` (bound in the constructor; OscError if it cannot), puts Actions
    into `inbox`. `start()` / `stop()`; `publish(state)` whenever the state changes (cheap: stores a reference)."""

    def __init__(self, config: OscConfig, inbox: Inbox) -> None:
        self.config, self.inbox = config, inbox
        self.stats: Counter[str] = Counter()  # received, actions, queries and one count per refused kind
        self._networks = [ipaddress.ip_network(n, strict=False) for n in config.allow]
        self._log = _RateLimitedLog()
        self._errors = _Bucket()
        self._state = ControlState()
        self._recent: OrderedDict[tuple[str, int], float] = OrderedDict()  # reply address -> last heard
        self._recent_lock = threading.Lock()
        dispatcher = Dispatcher(strict_timing=False)  # a future time tag must never sleep this thread
        for spec in osc_specs():
            dispatcher.map(spec.address, self._handle, spec, needs_reply_address=True)
        dispatcher.set_default_handler(self._unknown, needs_reply_address=True)
        self._dispatcher = dispatcher
        try:
            self._server = _UDPServer((config.host, config.port), dispatcher, self)
        except OSError as error:
            raise OscError(f"cannot listen for OSC on {config.host}:{config.port} ({error.strerror or error}); "
                           f"another program may hold the port: set [osc] port or --osc-port, or --no-osc") from None
        self.address: tuple[str, int] = self._server.server_address[:2]
        self._targets = self._resolve_targets()
        self._feedback = _Feedback(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="osc-server", daemon=True)

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread.start()
        self._feedback.start()

    def stop(self) -> None:
        """Stop both threads and close the socket; safe to call more than once."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._feedback.stop()
        self._server.server_close()

    def __enter__(self) -> OscServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> str:
        """One line for the start-up log: where it listens, whom it answers and accepts."""
        host, port = self.address
        replies = "the sender's address and port" if not self.config.reply_port \
            else f"the sender's IP at port {self.config.reply_port}"
        feedback = f"; state also to {', '.join(self.config.feedback)}" if self.config.feedback else ""
        return (f"OSC on udp {host}:{port}: replies to {replies}{feedback}; accepting "
                f"{', '.join(self.config.allow) or 'nobody'}")

    # ---------------------------------------------------------------------------------------- the live loop's side
    def publish(self, state: ControlState) -> None:
        """The newest state: answered to queries, broadcast by the feedback thread (changes and periodically)."""
        self._state = state
        self._feedback.published(state)

    def addresses(self) -> list[str]:
        """The addresses the dispatcher maps: the action table's."""
        return list(self._dispatcher._map)  # python-osc 1.10.2 has no public accessor for its mapping

    @property
    def state(self) -> ControlState:
        return self._state

    def error(self, action_reply_to: tuple[str, int] | None, text: str) -> None:
        """Tell an OSC sender that its action failed where it was applied (e.g. the engine refused it)."""
        if action_reply_to is not None:
            self._send(build_message(ERROR_ADDRESS, text[:MAX_ERROR_TEXT]), action_reply_to)

    # ---------------------------------------------------------------------------------------- receiving
    def _allowed(self, client: tuple[str, int]) -> bool:
        try:
            ip = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a v4 sender seen through a dual-stack socket
        if any(ip in network for network in self._networks):
            return True
        self.stats["refused sender"] += 1
        self._log(str(client[0]), "refused sender", "not in [osc] allow; ignored")
        return False

    def _receive(self, data: bytes, client: tuple[str, int]) -> None:
        self.stats["received"] += 1
        try:
            check_datagram(data)
        except PacketError as error:
            self._refuse(client, error.kind, str(error))
            return
        try:
            self._dispatcher.call_handlers_for_packet(data, client)
        except Exception as error:  # python-osc or a handler failed: this datagram is lost, the server goes on
            log.debug("osc: dispatch failed", exc_info=True)
            self._refuse(client, "internal", f"{type(error).__name__}: {error}")

    def _handle(self, client: tuple[str, int], address: str, fixed: list[Spec], *args: Any) -> None:
        spec = fixed[0]
        reply_to = self._reply_address(client)
        try:
            action = make_action(spec, args, source="osc", reply_to=reply_to)
        except ActionError as error:
            self._refuse(client, "invalid", str(error))
            self._echo_current(spec, reply_to)  # a fader pushed out of range snaps back to the truth
            return
        self._heard(reply_to)
        if spec.kind == "query":
            self.stats["queries"] += 1
            self._answer(action.name, action.value, reply_to)
        elif self.inbox.put(action):
            self.stats["actions"] += 1
        else:
            self._refuse(client, "busy", f"{address}: {self.inbox.capacity} actions are waiting; try again")

    def _unknown(self, client: tuple[str, int], address: str, *args: Any) -> None:
        self._refuse(client, "unknown address", f"unknown address {address[:80]}; the namespace is in "
                                                f"docs/osc.md (or send {ROOT}/state)")

    def _refuse(self, client: tuple[str, int], kind: str, text: str) -> None:
        self.stats[kind] += 1
        self._log(str(client[0]), kind, text)
        if self._errors.take(str(client[0])):
            self._send(build_message(ERROR_ADDRESS, text[:MAX_ERROR_TEXT]), self._reply_address(client))

    # ---------------------------------------------------------------------------------------- answering
    def _reply_address(self, client: tuple[str, int]) -> tuple[str, int]:
        return (client[0], self.config.reply_port or client[1])

    def _heard(self, reply_to: tuple[str, int]) -> None:
        with self._recent_lock:
            self._recent.pop(reply_to, None)
            self._recent[reply_to] = time.monotonic()
            while len(self._recent) > MAX_RECENT:
                self._recent.popitem(last=False)

    def recipients(self) -> list[tuple[str, int]]:
        """Where feedback goes now: the `feedback` targets and each sender heard from recently."""
        now = time.monotonic()
        with self._recent_lock:
            for address, heard in list(self._recent.items()):
                if now - heard > RECENT_SECONDS:
                    del self._recent[address]
            recent = list(self._recent)
        return self._targets + [a for a in recent if a not in self._targets]

    def _answer(self, name: str, value: Any, reply_to: tuple[str, int]) -> None:
        state = self._state
        if name == "ping":
            self._send(build_message(PONG_ADDRESS, *(() if value is None else (value,))), reply_to)
        elif name == "snapshots":
            self._send(build_message(f"{ROOT}/snapshots", *state.snapshots[-MAX_SNAPSHOT_REPLY:]), reply_to)
        else:  # state: every field, and every control's value so a fresh controller starts in sync
            for packet in state_messages(state, STATE_FIELDS) + control_messages(state, list(state.controls)):
                self._send(packet, reply_to)

    def _echo_current(self, spec: Spec, reply_to: tuple[str, int]) -> None:
        if spec.name in self._state.controls:
            for packet in control_messages(self._state, [spec.name]):
                self._send(packet, reply_to)

    def _send(self, packet: bytes, address: tuple[str, int]) -> None:
        try:
            self._server.socket.sendto(packet, address)
        except OSError as error:  # unreachable controller, closed socket while stopping: not worth more
            self._log(str(address[0]), "send failed", str(error))

    def _resolve_targets(self) -> list[tuple[str, int]]:
        targets = []
        for entry in self.config.feedback:
            host, port = parse_target(entry)
            try:
                info = socket.getaddrinfo(host, port, self._server.address_family, socket.SOCK_DGRAM)
            except (socket.gaierror, UnicodeError) as error:
                log.warning("osc: feedback target %s cannot be resolved (%s); skipped", entry, error)
                continue
            targets.append(info[0][4][:2])
        return targets


def state_messages(state: ControlState, names: tuple[str, ...] | list[str]) -> list[bytes]:
    return [build_message(state_address(n), value) for n in names if (value := state_value(state, n)) is not None]


def control_messages(state: ControlState, names: list[str]) -> list[bytes]:
    return [build_message(BY_NAME[n].address, *control_values(state, n)) for n in names if BY_NAME[n].address]


class _Feedback:
    """The feedback thread: sends each change as it is published, everything every `state_every` seconds."""

    def __init__(self, server: OscServer) -> None:
        self.server = server
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self._last = ControlState()  # the newest state published
        self._waiting: deque[ControlState] = deque(maxlen=MAX_CHANGES)  # states with changes not yet sent
        self._thread = threading.Thread(target=self._run, name="osc-feedback", daemon=True)

    def published(self, state: ControlState) -> None:
        """The live loop's side: a state that changes a field sent on change, or a control, is queued whole."""
        with self._lock:
            last, self._last = self._last, state
            if any(getattr(state, n) != getattr(last, n) for n in ON_CHANGE) or state.controls != last.controls:
                self._waiting.append(state)
                self._changed.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        every = self.server.config.state_every
        sent = ControlState()
        next_full = time.monotonic()
        while not self._stop.is_set():
            self._changed.wait(FEEDBACK_TICK)
            self._changed.clear()
            with self._lock:
                states, newest = list(self._waiting), self._last
                self._waiting.clear()
            packets = []
            for state in states:  # each change in the order it was published
                packets += self._messages(state, [n for n in ON_CHANGE if getattr(state, n) != getattr(sent, n)],
                                          [n for n, v in state.controls.items() if sent.controls.get(n) != v])
                sent = state
            if every and time.monotonic() >= next_full:
                packets += self._messages(newest, STATE_FIELDS, [])
                next_full = time.monotonic() + every
            for address in self.server.recipients() if packets else ():
                for packet in packets:
                    self.server._send(packet, address)

    def _messages(self, state: ControlState, fields: list[str] | tuple[str, ...], controls: list[str]) -> list[bytes]:
        try:
            return state_messages(state, fields) + control_messages(state, controls)
        except Exception as error:  # a value OSC cannot carry (an int beyond 32 bits): skip it, keep feeding
            self.server._log("feedback", "unsendable state", f"{type(error).__name__}: {error}")
            return []
