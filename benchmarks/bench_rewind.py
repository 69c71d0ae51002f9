#!/usr/bin/env python3
"""OSC rewind / reset -> the first presented frame drawn by the target weights, on a real running installation
while it trains; this tree against another (e.g. the code before the frame drawer), interleaved.

    python3 benchmarks/bench_rewind.py --before OLD_TREE --after NEW_TREE   # 4 rounds of 6 tries per tree
    python3 benchmarks/bench_rewind.py --rounds 2 --tries 4                # this tree only

Each round starts a fresh process for one tree (trees alternate; `git archive COMMIT | tar -x -C DIR` makes one
that stays put while you work): it imports `installation` from that tree, runs an
installation on an EGL framebuffer refreshed at 60 Hz (the embedded 64 px model training on the CPU, a snapshot every
5 iterations, OSC on a loopback port), and a controller socket sends real datagrams, alternately
`/uncanny/rewind N` (N the newest snapshot at least 3 iterations back) and `/uncanny/reset`, each once the screen shows
frames 3 or more iterations newer than the target. Measured from the send:
- drawn: to the moment the engine published the first frame drawn by the target weights (the frame's own time);
- presented: to the end of the first refresh whose framebuffer shows a frame drawn by the target weights;
- shown_iteration: to the arrival at the controller of `/uncanny/state/shown_iteration` = target (trees that have it);
- iteration: to the arrival of `/uncanny/state/iteration` = target (the engine's own report; 10 s at most).
Prints the median and p95 of each per tree and kind, with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
REFRESH = 1 / 60
WAIT = 10.0  # seconds a try waits for the target, at the most


def child(tree: Path, tries: int) -> None:
    """One round in this process: the installation of `tree`, `tries` jumps; one JSON line per try."""
    sys.path.insert(0, str(tree))
    import moderngl
    from pythonosc.osc_message import OscMessage

    from installation.control.config import OscConfig
    from installation.control.packets import build_message
    from installation.control.service import ControlService
    from installation.display.config import DisplayConfig
    from installation.display.offscreen import Offscreen
    from installation.engine import EngineConfig
    from installation.engine.config import RenderConfig
    from installation.models import default_checkpoint, load_gan
    from installation.presets import Preset

    assert Path(sys.modules["installation"].__file__).is_relative_to(tree), "imported another tree's installation"
    checkpoint = default_checkpoint()
    resolution = load_gan(checkpoint, require_discriminator=True).resolution
    width, height = 640, 360
    preset = Preset(engine=EngineConfig(device="cpu", snapshot_every=5),
                    display=DisplayConfig(width=width, height=height, crossfade=0.0), render=RenderConfig(),
                    osc=OscConfig(host="127.0.0.1", port=0, state_every=0.0))
    ctx = moderngl.create_standalone_context(backend="egl")
    surface = Offscreen(width, height, ctx=ctx)
    control = ControlService(preset.osc)
    control.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    arrivals: list[tuple[float, str, list]] = []
    with tempfile.TemporaryDirectory() as tmp:
        installation = _open(preset, checkpoint, resolution, Path(tmp) / "run", surface, control)
        due = time.perf_counter()

        def refresh() -> float:
            """One refresh at the 60 Hz cadence; returns when it ended. Feedback that came is noted."""
            nonlocal due
            time.sleep(max(0.0, due - time.perf_counter()))
            due = max(due + REFRESH, time.perf_counter() - REFRESH)
            installation.tick()
            surface.read()
            ended = time.perf_counter()
            while True:
                try:
                    message = OscMessage(sock.recv(65536))
                except BlockingIOError:
                    return ended
                arrivals.append((time.perf_counter(), message.address, list(message.params)))

        def until(predicate, timeout: float = 120.0) -> float | None:
            start = time.perf_counter()
            while time.perf_counter() - start < timeout:
                ended = refresh()
                if predicate():
                    return ended
            return None

        def need(predicate, what: str) -> None:
            if until(predicate) is None:
                raise SystemExit(f"no {what} within 120 s; engine: {installation.state}")

        def arrival(address: str, value: int, since: float) -> float | None:
            return next((t - since for t, a, params in arrivals if t >= since and a == address and params == [value]),
                        None)

        try:
            sock.sendto(build_message("/uncanny/ping"), control.osc.address)  # a recent sender gets the feedback
            need(lambda: installation.state.iteration >= 12, "training")
            rate = installation.state.steps_per_second  # before the first jump restarts its measure
            for k in range(tries):
                if k % 2 == 0:  # a rewind: to a snapshot after iteration 0, 3 or more iterations back
                    need(lambda: any(0 < s <= installation.state.iteration - 3 for s in installation.state.snapshots),
                         "snapshot to rewind to")
                state = installation.state
                target = 0 if k % 2 else max(s for s in state.snapshots if 0 < s <= state.iteration - 3)
                need(lambda: installation.frame_iteration >= target + 3 and installation.state.iteration >= target + 3,
                     "frames of newer weights")
                arrivals.clear()
                sequence = installation.last_sequence
                sent, sent_wall = time.perf_counter(), time.time()
                sock.sendto(build_message("/uncanny/reset") if target == 0 else
                            build_message("/uncanny/rewind", target), control.osc.address)
                presented = until(lambda: installation.frame_iteration == target, WAIT)
                drawn = next((f.time - sent_wall for f in installation.channel.read_since(sequence)
                              if f.iteration == target), None)
                until(lambda: arrival("/uncanny/state/iteration", target, sent) is not None, WAIT)
                print(json.dumps({"kind": "reset" if target == 0 else "rewind", "drawn": drawn,
                                  "presented": presented - sent if presented is not None else None,
                                  "shown_iteration": arrival("/uncanny/state/shown_iteration", target, sent),
                                  "iteration": arrival("/uncanny/state/iteration", target, sent)}), flush=True)
            print(json.dumps({"display": ctx.info["GL_RENDERER"],
                              "steps_per_second": rate,
                              "model": f"{checkpoint.name} at {resolution} px"}), flush=True)
        finally:
            installation.close()
            control.stop()
            surface.release()


class _Show:
    """The measured tree's live loop (live/run.py live_show), with what a round reads of it."""

    def __init__(self, preset, checkpoint, resolution, run_dir, surface, control) -> None:
        import contextlib

        from installation.live.run import live_show

        self._stack, self._surface = contextlib.ExitStack(), surface
        self._loop = self._stack.enter_context(live_show(preset, checkpoint, resolution, run_dir, surface, control))
        self.channel = self._loop.picture.channel

    def tick(self) -> None:
        self._surface.begin()
        self._loop.tick()

    @property
    def state(self):
        return self._loop.state

    @property
    def frame_iteration(self) -> int:
        return self._loop.picture.shown_iteration

    @property
    def last_sequence(self) -> int:
        return self._loop.picture.last_sequence

    def close(self) -> None:
        self._stack.close()


class _Installation:
    """A tree from before the one render loop (live/installation.py), read the same way."""

    def __init__(self, preset, checkpoint, resolution, run_dir, surface, control) -> None:
        from installation.live.installation import Installation

        self._surface = surface
        self._show = Installation(preset, checkpoint, resolution, run_dir, surface.ctx,
                                  (surface.width, surface.height), control)
        self.channel = self._show.channel

    def tick(self) -> None:
        self._surface.use()
        self._show.tick((self._surface.width, self._surface.height))

    def __getattr__(self, name: str):
        return getattr(self._show, name)


def _open(preset, checkpoint, resolution, run_dir, surface, control):
    import importlib.util

    live = importlib.util.find_spec("installation.live.run")
    source = Path(live.origin).read_text() if live is not None else ""
    return (_Show if "def live_show" in source else _Installation)(preset, checkpoint, resolution, run_dir, surface,
                                                                   control)


def percentiles(values: list[float | None]) -> str:
    done = sorted(v for v in values if v is not None)
    if not done:
        return "never (n=%d)" % len(values)
    p95 = done[min(len(done) - 1, round(0.95 * (len(done) - 1)))]
    missed = f", {len(values) - len(done)} not within {WAIT:g} s" if len(done) < len(values) else ""
    return f"median {1000 * statistics.median(done):6.0f} ms, p95 {1000 * p95:6.0f} ms (n={len(done)}{missed})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another tree of the project, measured in alternate rounds")
    parser.add_argument("--after", type=Path, default=HERE, help="the tree measured against it (default: this one)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per tree")
    parser.add_argument("--tries", type=int, default=6, help="jumps per round (rewind and reset in turn)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child.resolve(), args.tries)
        return
    trees = {"before": args.before.resolve()} if args.before else {}
    trees["after"] = args.after.resolve()
    results: dict[str, list[dict]] = {name: [] for name in trees}
    facts: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name, tree in trees.items():
            done = subprocess.run([sys.executable, __file__, "--child", str(tree), "--tries", str(args.tries)],
                                  capture_output=True, text=True, timeout=1200)
            lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                sys.exit(f"{name} round {round_ + 1} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
            facts[name] = lines[-1]
            results[name] += lines[:-1]
            print(f"round {round_ + 1} {name}: {len(lines) - 1} tries", file=sys.stderr, flush=True)
    from bench_engine import cpu_name  # here, not in a round: it imports this tree's installation

    fact = next(iter(facts.values()))
    print(f"machine: {cpu_name()} ({os.cpu_count()} cores, no GPU in use), display {fact['display']}; "
          f"{fact['model']} training on the CPU; screen 640x360 refreshed at 60 Hz")
    for name, tree in trees.items():
        rate = facts[name]["steps_per_second"]
        print(f"\n{name} ({tree}): training at {rate:.2f} steps/s (its last round, before the jumps)")
        for kind in ("rewind", "reset"):
            tries = [r for r in results[name] if r["kind"] == kind]
            for measure in ("drawn", "presented", "shown_iteration", "iteration"):
                print(f"  {kind:6} -> {measure:15} {percentiles([r[measure] for r in tries])}")
        both = results[name]
        print(f"  both   -> presented       {percentiles([r['presented'] for r in both])}")


if __name__ == "__main__":
    main()
