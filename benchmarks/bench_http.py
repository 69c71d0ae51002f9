#!/usr/bin/env python3
"""The HTTP server on its own: LISTEN push latency, and what HTTP clients cost a display loop beside it.

    python3 benchmarks/bench_http.py                  # 400 pushes per mode, 20 s of display loop
    python3 benchmarks/bench_http.py --pushes 2000 --loop-seconds 60

Over real loopback sockets against the real server (no installation, no engine); the client is the `websockets`
package, as ossia score or Chataigne would be a websocket client:
1. LISTEN push latency: a new state is published (a reference swap and notify(), as the live loop does) ->
   the binary OSC frame with the new iteration arrives at the client (changes 50 ms apart). Two modes, interleaved
   in blocks: "quiet" (a state is published only when it changes) and "display" (a thread also publishes an
   unchanged state 60 times a second, as the live loop does every refresh);
2. a stand-in display loop (60 Hz, sleeping to each deadline, publishing each refresh) on its own thread: its
   refresh intervals (median, p99, max) with nobody connected and with 8 LISTEN clients plus a client polling the
   page's /ui/api/state and /ui/api/journey as fast as it is answered, interleaved in blocks.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_engine import cpu_name  # noqa: E402
from bench_osc import percentiles  # noqa: E402

from installation.control.config import HttpConfig  # noqa: E402
from installation.control.http import HttpServer  # noqa: E402
from installation.control.inbox import Inbox  # noqa: E402
from installation.control.state import ControlState  # noqa: E402


class Show:
    """The live loop's side: the published state, and a 60 Hz publisher thread when asked."""

    def __init__(self) -> None:
        self.state = ControlState(iteration=0, status="running", controls={"blackout": 0.0})
        self.server = HttpServer(HttpConfig(host="127.0.0.1", port=0), lambda: self.state, Inbox(), 8000)
        self.refreshing = threading.Event()
        self.intervals: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._display, daemon=True)

    def publish(self, **changes: object) -> None:
        self.state = dataclasses.replace(self.state, **changes)
        self.server.notify()

    def _display(self) -> None:
        due = last = time.perf_counter()
        while not self._stop.is_set():
            due += 1 / 60
            time.sleep(max(0.0, due - time.perf_counter()))
            now = time.perf_counter()
            if self.refreshing.is_set():
                self.publish(fps=60.0)  # an unchanged listened value: compared, not pushed
                self.intervals.append(now - last)
            last = now

    def __enter__(self) -> Show:
        self.server.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.server.stop()


def push_latency(show: Show, rounds: int, block: int = 50) -> dict[str, list[float]]:
    from websockets.sync.client import connect

    found: dict[str, list[float]] = {"quiet": [], "display": []}
    with connect(f"ws://127.0.0.1:{show.server.address[1]}/") as ws:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/uncanny/state/iteration"}))
        ws.recv(5)
        while min(len(v) for v in found.values()) < rounds:
            for mode in found:
                (show.refreshing.set if mode == "display" else show.refreshing.clear)()
                for _ in range(block):
                    start = time.perf_counter()
                    show.publish(iteration=show.state.iteration + 1)
                    ws.recv(5)
                    found[mode].append(time.perf_counter() - start)
                    time.sleep(0.05)  # training steps come at tens a second at most
    show.refreshing.clear()
    return found


def loop_under_load(show: Show, seconds: float, block: float = 2.0) -> dict[str, list[float]]:
    from websockets.sync.client import connect

    found: dict[str, list[float]] = {"nobody connected": [], "8 listeners + a page polling": []}
    stack = contextlib.ExitStack()
    sockets = [stack.enter_context(connect(f"ws://127.0.0.1:{show.server.address[1]}/")) for _ in range(8)]
    for ws in sockets:
        for name in ("iteration", "fps", "uptime", "loss"):
            ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": f"/uncanny/state/{name}"}))
    load = threading.Event()
    stop = threading.Event()

    def drain(ws: object) -> None:
        while not stop.is_set():
            try:
                ws.recv(0.2)  # type: ignore[attr-defined]
            except TimeoutError:
                pass
            except Exception:
                return

    def poll() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", show.server.address[1], timeout=5)
        while not stop.is_set():
            if not load.wait(0.1):
                continue
            for path in ("/ui/api/state", "/ui/api/journey"):
                connection.request("GET", path)
                connection.getresponse().read()

    threads = [threading.Thread(target=drain, args=(ws,), daemon=True) for ws in sockets]
    threads.append(threading.Thread(target=poll, daemon=True))
    for thread in threads:
        thread.start()
    show.refreshing.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for mode in found:
            (load.set if mode != "nobody connected" else load.clear)()
            show.intervals.clear()
            time.sleep(block)
            found[mode] += show.intervals[1:]
    show.refreshing.clear()
    stop.set()
    for thread in threads:
        thread.join(5)
    stack.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=400, help="state changes per mode (default 400)")
    parser.add_argument("--loop-seconds", type=float, default=20.0, help="display loop seconds in all (default 20)")
    args = parser.parse_args()
    print(f"machine: {cpu_name()}; Python {sys.version.split()[0]}")
    with Show() as show:
        for mode, values in push_latency(show, args.pushes).items():
            print(f"LISTEN push latency, {mode:7s} (publish -> frame at the client, n={len(values)}): "
                  f"{percentiles(values)}")
        for mode, values in loop_under_load(show, args.loop_seconds).items():
            ordered = sorted(values)
            print(f"60 Hz display loop beside the server, {mode}: refresh interval median "
                  f"{statistics.median(values) * 1e3:.2f} ms, p99 {ordered[int(0.99 * len(ordered))] * 1e3:.2f} ms, "
                  f"max {ordered[-1] * 1e3:.2f} ms (n={len(values)})")


if __name__ == "__main__":
    main()
