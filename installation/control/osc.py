"""The OSC server: a python-osc BlockingOSCUDPServer in a daemon thread that turns datagrams into Actions.

Per datagram, in this order: the sender is checked against `[osc] allow` (refused senders are never parsed or
answered); the bytes are checked by packets.check_datagram (size, structure, time tags); python-osc's
Dispatcher(strict_timing=False) calls the handler mapped to the address, which validates the arguments against
the action table (a button's release is ignored there) and puts the Action into the inbox. Handlers never touch the
engine, GL or the pipe. Queries (ping, state, snapshots) are answered at once from the state the live loop last
published, state and snapshots at a bounded rate per sender. Bad input from an allowed sender gets one
`/uncanny/error s` reply and the value in force echoed (both rate-limited per sender) and one log line
(rate-limited per sender and kind), so a flood can neither fill the disk nor be amplified.

Feedback (a second daemon thread) sends `/uncanny/state/*` to every `feedback` target and to the reply address
of each sender of a control (not of a query: one question, one answer) in the last RECENT_SECONDS: changed fields
within FEEDBACK_TICK, everything every `state_every` seconds, the address of a control whose published value
changed (the echo), and after a jump (rewind, back, reset) the iteration it landed on, even when training had moved
on before the live loop published.

The engine's refusal of a command reaches the sender of that command: each action put in the inbox is remembered
by id, and `publish()` answers the ids in `ControlState.refusals`.

IPv6: with `host = "::"` one socket takes both families (IPV6_V6ONLY off). With `0.0.0.0` (or a loopback address)
and an IPv6 network in `allow`, a second socket listens on `::` (or `::1`) at the same port.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import Counter, OrderedDict
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from ..exits import TryAgain
from ..messages import MAX_LOG_KEYS, RateLimitedLog
from .config import OscConfig, parse_target
from .actions import BY_NAME, ROOT, ActionError, Spec, make_action, osc_specs
from .inbox import Inbox
from .packets import PacketError, build_message, check_datagram
from .state import ON_CHANGE, STATE_FIELDS, ControlState, control_values, state_address, state_value

log = logging.getLogger(__name__)

ERROR_ADDRESS = f"{ROOT}/error"
PONG_ADDRESS = f"{ROOT}/pong"
RECENT_SECONDS = 300.0  # a sender of a control keeps receiving feedback this long after its last control
MAX_RECENT = 32  # senders remembered for feedback
FEEDBACK_TICK = 0.05  # seconds: how soon a changed state field goes out
ERROR_BURST, ERROR_RATE = 20.0, 10.0  # /uncanny/error replies per sender: a burst of 20, then 10 a second
ECHO_BURST, ECHO_RATE = 20.0, 10.0  # echoes of the value in force after a refused value, per sender
# datagrams of answers to /uncanny/state (about 25 each) and /uncanny/snapshots (1) per sender: 4 state answers at
# once, then 2 a second; a snapshots poll is cheap
ANSWER_BURST, ANSWER_RATE = 100.0, 50.0
MAX_SNAPSHOT_REPLY = 1000  # newest snapshot iterations in one /uncanny/snapshots reply (fits one datagram)
MAX_ERROR_TEXT = 400
MAX_SENT = 4096  # actions remembered by id until the engine refuses them or newer ones push them out


class OscError(TryAgain):
    """The OSC server cannot start (the port is held, the address not up yet); one line. A start refused so may
    work later: exit code 75, relaunched by the service."""


class _Bucket:
    """A token bucket per sender: `burst` at once, then `rate` a second."""

    def __init__(self, burst: float, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()  # the IPv4 and IPv6 sockets' threads share it

    def take(self, sender: str, cost: float = 1.0) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= MAX_LOG_KEYS:
                self._buckets.clear()
            tokens, then = self._buckets.get(sender, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            self._buckets[sender] = (tokens - cost if tokens >= cost else tokens, now)
        return tokens >= cost


class _UDPServer(BlockingOSCUDPServer):
    """python-osc's server with our gatekeeping: allowlist before anything, check_datagram before parsing."""

    max_packet_size = 65536  # read oversized datagrams whole, so they are refused as such, not truncated

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, owner: OscServer, v6only: bool) -> None:
        self.owner, self.v6only = owner, v6only
        super().__init__(address, dispatcher)  # python-osc picks the family from the address

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:  # off: IPv4 senders arrive as ::ffff:a.b.c.d
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(self.v6only))
        super().server_bind()

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
        self.stats: Counter[str] = Counter()  # received, actions, queries, released and one count per refused kind
        self._networks = [ipaddress.ip_network(n, strict=False) for n in config.allow]
        self._log = RateLimitedLog(log, "osc")
        self._errors = _Bucket(ERROR_BURST, ERROR_RATE)
        self._echoes = _Bucket(ECHO_BURST, ECHO_RATE)
        self._answers = _Bucket(ANSWER_BURST, ANSWER_RATE)
        self._state = ControlState()
        self._recent: OrderedDict[tuple[str, int], float] = OrderedDict()  # reply address -> last heard
        self._lock = threading.Lock()  # the recent senders and the sent actions
        self._sent: OrderedDict[int, tuple[str, int]] = OrderedDict()  # action id -> its sender's reply address
        dispatcher = Dispatcher(strict_timing=False)  # a future time tag must never sleep this thread
        for spec in osc_specs():
            dispatcher.map(spec.address, self._handle, spec, needs_reply_address=True)
        dispatcher.set_default_handler(self._unknown, needs_reply_address=True)
        self._dispatcher = dispatcher
        self._servers = self._bind(dispatcher)
        self._server = self._servers[0]
        self.address: tuple[str, int] = self._server.server_address[:2]
        self._targets = self._resolve_targets()
        self._feedback = _Feedback(self)
        self._threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="osc-server", daemon=True) for server in self._servers]

    def _bind(self, dispatcher: Dispatcher) -> list[_UDPServer]:
        """The socket at [osc] host and port, and the IPv6 one beside it where `allow` names IPv6 networks."""
        host, port = self.config.host, self.config.port
        try:
            servers = [_UDPServer((host, port), dispatcher, self, v6only=host != "::")]
        except OSError as error:
            raise OscError(f"cannot listen for OSC on {host}:{port} ({error.strerror or error}); "
                           f"another program may hold the port: set [osc] port or --osc-port, or --no-osc") from None
        ip = ipaddress.ip_address(host)
        pair = "::" if host == "0.0.0.0" else "::1" if ip.version == 4 and ip.is_loopback else None
        if pair and any(n.version == 6 for n in self._networks):
            port = servers[0].server_address[1]
            try:
                servers.append(_UDPServer((pair, port), dispatcher, self, v6only=True))
            except OSError as error:  # no IPv6 on this machine: IPv4 goes on alone
                log.warning("osc: [osc] allow names IPv6 networks but [%s]:%d cannot be bound (%s); IPv4 only",
                            pair, port, error.strerror or error)
        return servers

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._feedback.start()

    def stop(self) -> None:
        """Stop the threads and close the sockets; safe to call more than once."""
        for server, thread in zip(self._servers, self._threads):
            if thread.is_alive():
                server.shutdown()
                thread.join(5)
        self._feedback.stop()
        for server in self._servers:
            server.server_close()

    def __enter__(self) -> OscServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> str:
        """One line for the start-up log: where it listens, whom it answers and accepts."""
        where = " and ".join(f"{_bracketed(s.server_address[0])}:{s.server_address[1]}" for s in self._servers)
        where += " (IPv4 and IPv6)" if self.address[0] == "::" else ""
        replies = "the sender's address and port" if not self.config.reply_port \
            else f"the sender's IP at port {self.config.reply_port}"
        feedback = f"; state also to {', '.join(self.config.feedback)}" if self.config.feedback else ""
        return (f"OSC on udp {where}: replies to {replies}{feedback}; accepting "
                f"{', '.join(self.config.allow) or 'nobody'}")

    # ---------------------------------------------------------------------------------------- the live loop's side
    def publish(self, state: ControlState) -> None:
        """The newest state: answered to queries, broadcast by the feedback thread (changes and periodically). The
        engine's refusals in it go to the senders of the refused actions, once each."""
        self._state = state
        for action_id, text in state.refusals:
            with self._lock:
                reply_to = self._sent.pop(action_id, None)
            if reply_to is not None:
                self.error(reply_to, text)

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

    def alert(self, text: str) -> None:
        """Tell every controller listening (feedback targets, recent senders) of a fault nobody asked about (an
        output that failed)."""
        for address in self.recipients():
            self._send(build_message(ERROR_ADDRESS, text[:MAX_ERROR_TEXT]), address)

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
            if self._echoes.take(str(client[0])):
                self._echo_current(spec, reply_to)  # a fader pushed out of range snaps back to the truth
            return
        if action is None:
            self.stats["released"] += 1  # a button's release: nothing to do, nothing to say
            return
        if spec.kind == "query":
            self.stats["queries"] += 1
            size = len(STATE_FIELDS) + len(self._state.controls) if spec.name == "state" else 1
            if spec.name == "ping" or self._answers.take(str(client[0]), size):  # a pong is no bigger than its ping
                self._answer(action.name, action.value, reply_to)
            else:
                self._refuse(client, "too often", f"{address}: answers are limited to {ANSWER_RATE:g} datagrams a "
                                                  f"second per sender (a state answer is {size}); a feedback "
                                                  f"target, or any control sent, keeps the values coming")
            return
        self._heard(reply_to)
        if self.inbox.put(action):
            self.stats["actions"] += 1
            with self._lock:
                self._sent[action.id] = reply_to
                while len(self._sent) > MAX_SENT:
                    self._sent.popitem(last=False)
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
        with self._lock:
            self._recent.pop(reply_to, None)
            self._recent[reply_to] = time.monotonic()
            while len(self._recent) > MAX_RECENT:
                self._recent.popitem(last=False)

    def recipients(self) -> list[tuple[str, int]]:
        """Where feedback goes now: the `feedback` targets and each sender heard from recently."""
        now = time.monotonic()
        with self._lock:
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
        route = self._route(address[0])
        if route is None:
            self._log(str(address[0]), "send failed", "no socket of this address family")
            return
        try:
            route[0].sendto(packet, (route[1], address[1]))
        except OSError as error:  # unreachable controller, closed socket while stopping: not worth more
            self._log(str(address[0]), "send failed", str(error))

    def _route(self, host: str) -> tuple[socket.socket, str] | None:
        """The socket that reaches `host` (an IP address), and the address to give it."""
        v6 = ":" in host
        for server in self._servers:
            if (server.address_family == socket.AF_INET6) == v6:
                return server.socket, host
        dual = self._server
        if not v6 and dual.address_family == socket.AF_INET6 and not dual.v6only:
            return dual.socket, f"::ffff:{host}"  # an IPv4 peer through the dual-stack socket
        return None

    def _resolve_targets(self) -> list[tuple[str, int]]:
        targets = []
        for entry in self.config.feedback:
            host, port = parse_target(entry)
            try:
                info = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM)
            except (socket.gaierror, UnicodeError) as error:
                log.warning("osc: feedback target %s cannot be resolved (%s); skipped", entry, error)
                continue
            reachable = [i[4][:2] for i in info if self._route(i[4][0]) is not None]
            if not reachable:
                log.warning("osc: feedback target %s is not reachable from the OSC sockets (%s); skipped", entry,
                            " and ".join(_bracketed(s.server_address[0]) for s in self._servers))
                continue
            targets.append(reachable[0])
        return targets


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def state_messages(state: ControlState, names: tuple[str, ...] | list[str]) -> list[bytes]:
    return [build_message(state_address(n), value) for n in names if (value := state_value(state, n)) is not None]


def control_messages(state: ControlState, names: list[str]) -> list[bytes]:
    return [build_message(BY_NAME[n].address, *control_values(state, n)) for n in names if BY_NAME[n].address]


class _Feedback:
    """The feedback thread: sends what changed every FEEDBACK_TICK, everything every `state_every` seconds."""

    def __init__(self, server: OscServer) -> None:
        self.server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osc-feedback", daemon=True)

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
        while not self._stop.wait(FEEDBACK_TICK):
            state = self.server.state
            now = time.monotonic()
            try:
                # a jump first: the iteration it landed on, which a cue may wait for (0 after a reset) although the
                # engine may have stepped on before this state was published
                packets = state_messages(ControlState(iteration=state.landed), ["iteration"]) \
                    if state.branch != sent.branch else []
                if every and now >= next_full:
                    packets += state_messages(state, STATE_FIELDS)
                    next_full = now + every
                else:
                    changed = [n for n in ON_CHANGE if state_value(state, n) != state_value(sent, n)]
                    packets += state_messages(state, changed)
                packets += control_messages(state, [n for n, v in state.controls.items()
                                                    if sent.controls.get(n) != v])
            except Exception as error:  # a value OSC cannot carry (an int beyond 32 bits): skip it, keep feeding
                self.server._log("feedback", "unsendable state", f"{type(error).__name__}: {error}")
                packets = []
            sent = state
            for address in self.server.recipients() if packets else ():
                for packet in packets:
                    self.server._send(packet, address)
