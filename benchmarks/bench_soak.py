#!/usr/bin/env python3
"""An accelerated soak: weeks of gallery duty squeezed into minutes, watching what grows.

    python3 benchmarks/bench_soak.py                 # 30 minutes (the figure to quote)
    python3 benchmarks/bench_soak.py --minutes 0.5   # the test suite's short version

A tiny model (thousands of iterations a minute) runs headless through run_installation.py, the director cycling
(`collapse` with a small max_iterations, short hold and fades), while a controller sends OSC traffic (walk changes,
state queries, pings) over loopback. Every few seconds every process of the installation is sampled (the display
process and all its descendants, by role: engine, ffmpeg, multiprocessing's resource tracker, an export): resident
memory and open file descriptors; at the end the slope of each after the warm-up (per hour; `SoakResult.slope`), the
run folder's size and growth (its videos apart, kept within [record] live_gb by rotation), cycles completed,
engine restarts, pings answered (UDP may drop a few on a loaded machine), and what was lost (a video that does not
decode, partial files, a missing final snapshot, an unclean exit). Printed with the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # bench_engine's cpu_name

from installation.control.packets import build_message  # noqa: E402

PRESET = """[engine]
device = "cpu"
threads = 1
batch = 1
probe_size = 2
probe_every = 5
snapshot_every = 10
keep_recent = 4
[walk]
keyframes = 3
period = 4.0
[render]
max_fps = 10
[display]
fps = 10.0
[record]
live_segment_minutes = {segment_minutes}
live_gb = {live_gb}
[gallery]
cycle = "collapse"
max_iterations = {max_iterations}
hold_seconds = 1.0
fade_seconds = 0.5
"""
ROLES = ("display", "engine", "ffmpeg", "resource tracker")  # always reported; others (an export) when they ran


@dataclass
class Sample:
    seconds: float
    processes: dict[str, tuple[int, int]]  # role -> (resident bytes, open descriptors), summed over its processes
    engine_pid: int
    run_bytes: int  # the run folder without its videos (snapshots, logs, director.json)
    video_bytes: int  # the headless live video's files (rotated within [record] live_gb)
    cycle: int

    def rss(self, role: str) -> int:
        return self.processes.get(role, (0, 0))[0]

    def fds(self, role: str) -> int:
        return self.processes.get(role, (0, 0))[1]


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    pings: int = 0
    pongs: int = 0
    restarts: int = 0
    resets: int = 0  # the engine's reset events: one per collapse cycle
    cycles: int = 0
    iterations: int = 0  # optimiser steps in all
    exit_code: int | None = None
    video_frames: int = 0
    lost: list[str] = field(default_factory=list)

    def slope(self, value: Callable[[Sample], float], warmup: float) -> float:
        """Growth of a sampled figure per hour after `warmup` of the run (a share, 0..1): the median of the slopes
        between every two samples (Theil-Sen). Least squares is thrown by a single step, and a shared machine makes
        them: the kernel reclaiming 20 MB from the display and the engine at once read as -60 MB/h over 35 minutes;
        so does a sample that falls on the live video's new ffmpeg."""
        points = [(s.seconds, value(s)) for s in self.samples]
        points = points[int(len(points) * warmup):]
        slopes = sorted((v2 - v1) / (t2 - t1) for i, (t1, v1) in enumerate(points) for t2, v2 in points[i + 1:]
                        if t2 > t1)
        if not slopes:
            return 0.0
        middle = len(slopes) // 2
        return (slopes[middle] if len(slopes) % 2 else (slopes[middle - 1] + slopes[middle]) / 2) * 3600


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def descendants(root: int) -> dict[int, str]:
    """Every process under `root` (itself included) with its role: display (root), engine, resource tracker,
    ffmpeg, or the program's name."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = {root: "display"}, [root]
    while frontier:
        parent = frontier.pop()
        for pid in [pid for pid, ppid in parents.items() if ppid == parent]:
            found[pid] = role(pid)
            frontier.append(pid)
    return found


def role(pid: int) -> str:
    try:
        argv = [arg.decode(errors="replace") for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg]
    except OSError:
        return "gone"
    text, name = " ".join(argv), Path(argv[0]).name if argv else "?"
    if "resource_tracker" in text:
        return "resource tracker"
    if "spawn_main" in text:
        return "engine"
    if name.startswith("ffmpeg"):
        return "ffmpeg"
    return "export" if " loop " in text or " film " in text else name


def engine_pid(parent: int) -> int:
    """The engine process: the spawned multiprocessing child of the display process (0 while there is none)."""
    return next((pid for pid, name in descendants(parent).items() if name == "engine"), 0)


def sample_processes(root: int) -> tuple[dict[str, tuple[int, int]], int]:
    """(role -> (resident bytes, descriptors) summed over its processes, the engine's pid)."""
    processes: dict[str, tuple[int, int]] = {}
    engine = 0
    for pid, name in descendants(root).items():
        engine = pid if name == "engine" else engine
        memory, descriptors = processes.get(name, (0, 0))
        processes[name] = (memory + rss(pid), descriptors + fds(pid))
    return processes, engine


def folder_bytes(path: Path, videos: bool) -> int:
    """Bytes in the run folder: its videos, or everything else."""
    total = 0
    for file in path.rglob("*") if path.exists() else ():
        try:
            total += file.stat().st_size if file.is_file() and file.name.startswith("live-") == videos else 0
        except OSError:  # rotated away while the folder was walked
            continue
    return total


def osc_port(log: IO[str]) -> int | None:
    """The OSC port the installation printed at start (it took a free one: --osc-port 0), once it has."""
    log.seek(0)
    found = re.search(r"OSC on udp [\d.]+:(\d+)", log.read())
    return int(found[1]) if found else None


def soak(minutes: float, workdir: Path, sample_every: float = 5.0, max_iterations: int = 40,
         segment_minutes: float = 1.0, live_gb: float = 0.05) -> SoakResult:
    from installation.models import create_stylegan1, save_gan

    checkpoint = workdir / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), checkpoint)
    preset = workdir / "soak.toml"
    preset.write_text(PRESET.format(max_iterations=max_iterations, segment_minutes=segment_minutes, live_gb=live_gb))
    run_dir = workdir / "run"
    log = open(workdir / "stderr.log", "w+")
    process = subprocess.Popen([sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(checkpoint),
                                "--preset", str(preset), "--headless", "--size", "64x48", "--run-dir", str(run_dir),
                                "--osc-port", "0", "--http-port", "0"], stdout=subprocess.DEVNULL, stderr=log,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    controller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    controller.bind(("127.0.0.1", 0))
    controller.setblocking(False)
    result = SoakResult()
    try:
        while (port := osc_port(log)) is None or engine_pid(process.pid) == 0 or \
                not (run_dir / "metrics.jsonl").exists():  # started up
            if process.poll() is not None:
                raise SystemExit(f"the installation exited at start: {log_tail(log)}")
            time.sleep(0.2)
        server = ("127.0.0.1", port)
        start = time.monotonic()
        end, next_sample, token = start + minutes * 60, start, 0
        while time.monotonic() < end and process.poll() is None:
            token += 1
            messages = [build_message("/uncanny/ping", token)]
            if token % 10 == 0:  # a full state reply is ~30 datagrams: twice a second, not to drown the pongs
                messages += [build_message("/uncanny/walk/period", 3.0 + token % 3), build_message("/uncanny/state")]
            for message in messages:
                controller.sendto(message, server)
            result.pings += 1
            result.pongs += drain(controller)
            now = time.monotonic()
            if now >= next_sample:
                next_sample += sample_every
                processes, engine = sample_processes(process.pid)
                result.samples.append(Sample(now - start, processes, engine, folder_bytes(run_dir, videos=False),
                                             folder_bytes(run_dir, videos=True), cycle_of(run_dir)))
            time.sleep(0.05)  # ~20 pings a second, 2 walk changes and 2 state queries
        time.sleep(0.5)
        result.pongs += drain(controller)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        result.exit_code = process.wait(timeout=120)
        controller.close()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    result.restarts = sum(e["event"] == "died" for e in events)
    result.resets = sum(e["event"] == "reset" for e in events)
    result.cycles = cycle_of(run_dir)
    result.iterations = (run_dir / "metrics.jsonl").read_text().count("\n")
    check_nothing_lost(result, run_dir, events, log)
    return result


def drain(sock: socket.socket) -> int:
    """Pongs waiting on the controller's socket (state replies are read and dropped)."""
    pongs = 0
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return pongs
        pongs += data.startswith(b"/uncanny/pong\0")


def cycle_of(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "director.json").read_text())["cycle"])
    except (OSError, ValueError, KeyError):
        return 0


def log_tail(log) -> str:
    log.seek(0)
    return "".join(log.readlines()[-5:])


def check_nothing_lost(result: SoakResult, run_dir: Path, events: list[dict], log) -> None:
    import imageio_ffmpeg

    if result.exit_code != 0:
        result.lost.append(f"exit code {result.exit_code}: {log_tail(log)}")
    log.seek(0)
    if "Traceback" in log.read():
        result.lost.append("a traceback in the log")
    if list(run_dir.glob("*.partial")):
        result.lost.append("partial recordings left")
    videos = sorted(run_dir.glob("live-*.mp4"))
    try:
        result.video_frames = sum(imageio_ffmpeg.count_frames_and_secs(str(v))[0] for v in videos)
    except Exception as error:
        result.lost.append(f"a video does not decode: {error}")
    if not videos or not result.video_frames:
        result.lost.append("no video frames")
    if not events or events[-1]["event"] != "stop":
        result.lost.append("no clean engine stop in events.jsonl")
    elif not (run_dir / "snapshots" / f"it{events[-1]['iteration']:08d}.pt").exists():
        result.lost.append("the final snapshot is missing")


def report(result: SoakResult, minutes: float) -> None:
    from bench_engine import cpu_name

    mb = 2**20
    roles = [*ROLES, *sorted({name for s in result.samples for name in s.processes} - set(ROLES))]
    print(f"soak: {minutes:g} min on {cpu_name()} ({os.cpu_count()} cores, {platform.system()}), engine on cpu")
    print(f"{'t s':>7} " + " ".join(f"{name[:12]:>12} MB {'fds':>4}" for name in roles)
          + f" {'run MB':>7} {'video MB':>8} {'cycle':>5}")
    for s in result.samples:
        print(f"{s.seconds:7.0f} " + " ".join(f"{s.rss(name) / mb:15.1f} {s.fds(name):4d}" for name in roles)
              + f" {s.run_bytes / mb:7.2f} {s.video_bytes / mb:8.2f} {s.cycle:5d}")
    print("slopes after the first 30%, per hour: " + "; ".join(
        f"{name} RSS {result.slope(lambda s, n=name: s.rss(n), 0.3) / mb:+.1f} MB, "
        f"fds {result.slope(lambda s, n=name: s.fds(n), 0.3):+.1f}" for name in roles)
        + f"; run folder {result.slope(lambda s: s.run_bytes, 0.3) / mb:+.1f} MB "
          f"(+ video {result.slope(lambda s: s.video_bytes, 0.3) / mb:+.1f} MB)")
    per_minute = result.iterations / minutes if minutes else 0
    print(f"cycles {result.cycles} ({result.resets} resets), iterations {result.iterations} ({per_minute:.0f}/min), "
          f"engine restarts {result.restarts}, pings {result.pongs}/{result.pings} answered (UDP), "
          f"video frames {result.video_frames}, exit code {result.exit_code}")
    print("lost: " + ("; ".join(result.lost) if result.lost else "nothing"))


def main(argv: list[str] | None = None) -> SoakResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-every", type=float, default=None, help="seconds between samples (default: "
                        "60 samples over the run, at least 2 s apart)")
    parser.add_argument("--max-iterations", type=int, default=40, help="the director's journey length")
    parser.add_argument("--segment-minutes", type=float, default=1.0,
                        help="[record] live_segment_minutes: the live video's segments (default 1, the least)")
    parser.add_argument("--live-gb", type=float, default=0.05, help="[record] live_gb (default 0.05: rotation soon)")
    args = parser.parse_args(argv)
    every = args.sample_every or max(2.0, args.minutes * 60 / 60)
    with tempfile.TemporaryDirectory(prefix="uncanny-soak-") as tmp:
        result = soak(args.minutes, Path(tmp), every, args.max_iterations, args.segment_minutes, args.live_gb)
    report(result, args.minutes)
    return result


if __name__ == "__main__":
    main()
