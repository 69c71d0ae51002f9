#!/usr/bin/env python3
"""MIDI -> effect latency: a CC sent by a controller until its Action is in the inbox, and until a refresh loop
at the display's rate has drained it (what the live loop applies at that refresh).

    python3 benchmarks/bench_midi.py                     # JACK periods 128 and 1024 frames at 48 kHz, 400 CCs each
    python3 benchmarks/bench_midi.py --periods 64 256 1024 --messages 1000

Real MIDI through a real MIDI system: a private JACK server (dummy backend; this machine has no sound card, so
no ALSA sequencer), a python-rtmidi client as the controller, the installation's MidiController reading its port
with a learned-style mapping `cc 1 74 /uncanny/walk/truncation`. JACK moves MIDI once per period, so the period
(the audio latency a JACK setup is run at) bounds what any JACK client sees; ALSA delivers without periods.
Each CC is sent at a random phase of the period (a jittered gap), timed from just before send_message to the
inbox's put() (a timing Inbox) and to the first 60 Hz refresh that drained it. The periods are interleaved in
rounds. Figures: median and p95 in milliseconds, per period, with the machine named; a CC that never arrives
(JACK drops the MIDI of a cycle that came too late, an xrun, which a loaded machine causes) is counted as lost.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_engine import cpu_name  # noqa: E402
from jack_midi import Controller, until  # noqa: E402

from installation.control.actions import Action  # noqa: E402
from installation.control.inbox import Inbox  # noqa: E402
from installation.control.actions import BY_NAME  # noqa: E402
from installation.control.midi import MidiConfig, MidiController, knob_value  # noqa: E402

REFRESH = 1 / 60  # the display's refresh period
TRUNCATION = BY_NAME["walk_truncation"].args[0]


class TimedInbox(Inbox):
    """The inbox, noting when each action was put (the measuring hook; the controller is unchanged)."""

    def __init__(self) -> None:
        super().__init__()
        self.put_at: dict[float, float] = {}  # action value -> perf_counter at put

    def put(self, action: Action) -> bool:
        self.put_at[action.value] = time.perf_counter()
        return super().put(action)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(period: int, messages: int, rng: random.Random, lost: list[int]) -> tuple[list[float], list[float]]:
    """(send -> inbox, send -> drained by a 60 Hz refresh) in ms for `messages` CCs on a server at `period`."""
    import subprocess

    import rtmidi
    from jack_midi import _answers, unique

    name = unique("uncanny-bench-")
    server = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p",
                               str(period)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        until(lambda: _answers(rtmidi), "the JACK server")
        knobs = Controller(unique("bench"))
        inbox = TimedInbox()
        config = MidiConfig(api="jack", input=knobs.port, mappings=("cc 1 74 /uncanny/walk/truncation",))
        midi = MidiController(config, inbox, None, lambda line: None)
        midi.start()
        drained: dict[float, float] = {}
        stop = threading.Event()

        def refresh_loop() -> None:  # the live loop's side: drain once per refresh
            next_refresh = time.perf_counter()
            while not stop.is_set():
                next_refresh += REFRESH
                time.sleep(max(0.0, next_refresh - time.perf_counter()))
                now = time.perf_counter()
                for act in inbox.drain():
                    drained[act.value] = now
        loop = threading.Thread(target=refresh_loop, daemon=True)
        loop.start()
        try:
            until(lambda: midi.ports, "the controller's port")
            to_inbox, to_refresh = [], []
            for i in range(messages):
                value = i % 128
                target = knob_value(TRUNCATION, value)
                drained.pop(target, None)
                inbox.put_at.pop(target, None)
                sent = time.perf_counter()
                knobs.cc(74, value)
                deadline = sent + 2.0
                while target not in drained and time.perf_counter() < deadline:
                    time.sleep(0.0005)
                if target not in drained:  # lost in an xrun: JACK drops a late cycle's MIDI (counted, not timed)
                    lost[0] += 1
                    continue
                to_inbox.append(1000 * (inbox.put_at[target] - sent))
                to_refresh.append(1000 * (drained[target] - sent))
                time.sleep(rng.uniform(0.0, 2 * period / 48000))  # the next CC at a random phase of the period
            return to_inbox, to_refresh
        finally:
            stop.set()
            loop.join(5)
            midi.stop()
            knobs.close()
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", type=int, nargs="+", default=[128, 1024], help="JACK period sizes (frames)")
    parser.add_argument("--messages", type=int, default=400, help="CCs per period size")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (messages split over them)")
    args = parser.parse_args()
    rng = random.Random(5)
    results: dict[int, tuple[list[float], list[float]]] = {p: ([], []) for p in args.periods}
    lost = {p: [0] for p in args.periods}
    for _ in range(args.rounds):
        for period in args.periods:
            inbox, refresh = measure(period, args.messages // args.rounds, rng, lost[period])
            results[period][0].extend(inbox)
            results[period][1].extend(refresh)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; JACK dummy backend at 48 kHz, python-rtmidi "
          f"{__import__('rtmidi').__version__}")
    print("period (frames, ms) | CCs timed (lost) | send -> inbox median / p95 ms | "
          "send -> 60 Hz refresh median / p95 ms")
    for period, (inbox, refresh) in results.items():
        print(f"{period:6d} ({1000 * period / 48000:5.1f} ms) | {len(inbox):4d} ({lost[period][0]}) | "
              f"{statistics.median(inbox):6.2f} / {percentile(inbox, 0.95):6.2f} | "
              f"{statistics.median(refresh):6.2f} / {percentile(refresh, 0.95):6.2f}")


if __name__ == "__main__":
    main()
