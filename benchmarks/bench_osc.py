#!/usr/bin/env python3
"""The OSC server on its own: how fast it absorbs malformed datagrams, and the ping round trip.

    python3 benchmarks/bench_osc.py                    # 10^5 fuzz datagrams, 2000 pings
    python3 benchmarks/bench_osc.py --fuzz 1000000 --pings 10000

Three measurements over real loopback UDP against the real server (no installation, no engine):
1. paced fuzz: every datagram is handled (a ping waits for its pong every --batch datagrams, so the kernel drops
   nothing); the rate is datagrams handled per second of wall time, the inbox must stay empty;
2. flood: the same datagrams as fast as one socket sends them; how many the server received before the kernel's
   receive buffer overflowed, and that a ping still answers afterwards;
3. ping round trip (send -> pong received), idle and while a second socket floods malformed datagrams;
4. amplification: --queries `/uncanny/state` questions from one sender (paced, none dropped), then --listen
   seconds more of listening: the datagrams and bytes that came back for those sent (a state answer is ~25
   datagrams, and a sender used to be subscribed to the periodic state for 300 s after any message).
The message -> presented-frame latency needs the live loop and is measured with it (bench_live.py).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_engine import cpu_name  # noqa: E402
from osc_fuzz import datagrams  # noqa: E402

from installation.control.inbox import Inbox  # noqa: E402
from installation.control.osc import OscServer  # noqa: E402
from installation.control.packets import build_message  # noqa: E402
from installation.control.config import OscConfig  # noqa: E402
from installation.control.state import ControlState  # noqa: E402

CONTROLS = {"lr": 5e-05, "loss": "logit", "batch": 4, "speed": 0.0, "walk_period": 30.0, "walk_truncation": 0.7,
            "walk_seed": 0, "grid": 0, "hud": 0, "blackout": 0.0}  # what a live installation publishes


def ping(sock: socket.socket, server: tuple[str, int], token: int, timeout: float = 5.0,
         resend: float | None = 0.5) -> float | None:
    """Seconds until the pong with `token` came back (other replies skipped), None if none did within `timeout`.
    The ping is sent again every `resend` seconds: behind a burst the kernel may have dropped it."""
    start = time.perf_counter()
    message, expected = build_message("/uncanny/ping", token), build_message("/uncanny/pong", token)
    sock.sendto(message, server)
    deadline, again = start + timeout, start + (resend or timeout)
    while (left := min(deadline, again) - time.perf_counter()) > 0 or time.perf_counter() < deadline:
        if left <= 0:
            sock.sendto(message, server)
            again += resend or timeout
            continue
        sock.settimeout(left)
        try:
            if sock.recv(65536) == expected:
                return time.perf_counter() - start
        except TimeoutError:
            pass
    return None


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"median {statistics.median(values) * 1e3:.3f} ms, p95 {p95 * 1e3:.3f} ms, max {values[-1] * 1e3:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=100_000, help="malformed datagrams (default 10^5)")
    parser.add_argument("--batch", type=int, default=64_000,
                        help="bytes sent between pacing pings, well inside the kernel's receive buffer (default 64000)")
    parser.add_argument("--pings", type=int, default=2000, help="pings per round-trip measurement (default 2000)")
    parser.add_argument("--queries", type=int, default=500, help="/uncanny/state questions (default 500)")
    parser.add_argument("--listen", type=float, default=5.0, help="seconds of listening after them (default 5)")
    args = parser.parse_args()

    amplified = amplification(args.queries, args.listen)
    inbox = Inbox()
    server = OscServer(OscConfig(host="127.0.0.1", port=0, state_every=0.0), inbox)
    server.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    token = 0
    try:
        packets = list(datagrams(args.fuzz, seed=1))
        start = time.perf_counter()
        queued = 0
        for i, packet in enumerate(packets, 1):
            client.sendto(packet, server.address)
            queued += len(packet) + 512  # about what the kernel charges per datagram against the buffer
            if queued > args.batch:
                token, queued = token + 1, 0
                if ping(client, server.address, token) is None:
                    raise SystemExit(f"paced fuzz: no pong after {i} datagrams")
        token += 1
        if ping(client, server.address, token) is None:
            raise SystemExit("paced fuzz: no pong at the end")
        paced = time.perf_counter() - start
        handled = server.stats["received"] - server.stats["queries"]  # the pacing pings are not fuzz
        if leaked := inbox.drain():
            raise SystemExit(f"malformed datagrams reached the inbox: {leaked[:3]}")

        before = server.stats["received"]
        start = time.perf_counter()
        for packet in packets:
            client.sendto(packet, server.address)
        sent_for = time.perf_counter() - start
        token += 1
        flood_pong = ping(client, server.address, token, timeout=30.0)
        received = server.stats["received"] - before - 1

        idle = []
        for _ in range(args.pings):
            token += 1
            if (rtt := ping(client, server.address, token, resend=None)) is not None:
                idle.append(rtt)

        stop = threading.Event()

        def flood() -> None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            while not stop.is_set():
                for packet in packets[:1000]:
                    sock.sendto(packet, server.address)
            sock.close()
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        loaded, lost = [], 0
        for _ in range(args.pings):
            token += 1
            if (rtt := ping(client, server.address, token, timeout=1.0, resend=None)) is None:
                lost += 1
            else:
                loaded.append(rtt)
        stop.set()
        flooder.join()
        token += 1
        after = ping(client, server.address, token, timeout=30.0)
    finally:
        client.close()
        server.stop()

    print(f"device: CPU {cpu_name()} (the OSC server is CPU-only), python-osc BlockingOSCUDPServer on loopback")
    print(f"paced fuzz: {args.fuzz} malformed datagrams, {handled} handled in {paced:.2f} s = "
          f"{handled / paced:,.0f} datagrams/s (with {token} pacing pings); none reached the inbox")
    print(f"flood: {args.fuzz} sent in {sent_for:.2f} s ({args.fuzz / sent_for:,.0f}/s), {received} received "
          f"({received / args.fuzz:.0%}; the rest overflowed the kernel's receive buffer); ping afterwards "
          f"{'answered' if flood_pong is not None else 'NOT answered'}")
    print(f"ping round trip, idle: {percentiles(idle)} ({len(idle)} of {args.pings})")
    if loaded:
        print(f"ping round trip under a malformed flood: {percentiles(loaded)} ({len(loaded)} of {args.pings}, "
              f"{lost} lost to the full receive buffer); ping after: {'answered' if after else 'NOT answered'}")
    else:
        print(f"ping round trip under a malformed flood: all {lost} lost; ping after: "
              f"{'answered' if after else 'NOT answered'}")
    sent, sent_bytes, back, back_bytes = amplified
    print(f"amplification: {sent} /uncanny/state questions ({sent_bytes:,} bytes) -> {back:,} datagrams "
          f"({back_bytes:,} bytes) back within {args.listen:g} s after them (state_every 1 s, a live state with "
          f"{len(CONTROLS)} controls): x{back_bytes / sent_bytes:.1f} in bytes")


def amplification(queries: int, listen: float) -> tuple[int, int, int, int]:
    """(questions, their bytes, datagrams back, their bytes) for `queries` state questions from one socket, paced in
    bursts of 50 the receive buffer holds, and everything that arrives until `listen` s after the last."""
    server = OscServer(OscConfig(host="127.0.0.1", port=0, state_every=1.0), Inbox())
    server.start()
    server.publish(ControlState(iteration=1234, status="running", loss=-2.5, d=0.5, diversity=0.3, fps=30.0,
                                steps_per_second=3.0, controls=CONTROLS))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    question = build_message("/uncanny/state")
    back = back_bytes = 0

    def receive(until: float) -> None:
        nonlocal back, back_bytes
        while (left := until - time.perf_counter()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return
            back, back_bytes = back + 1, back_bytes + len(data)
    try:
        for sent in range(queries):
            sock.sendto(question, server.address)
            if sent % 50 == 49:
                receive(time.perf_counter() + 0.05)  # the answers drain (and the server catches up)
        receive(time.perf_counter() + listen)
    finally:
        sock.close()
        server.stop()
    return queries, queries * len(question), back, back_bytes


if __name__ == "__main__":
    main()
