"""What the remote checks cost the two processes: a status.json rewrite and a thumbnail (one framebuffer read at the
output size, resized and saved as JPEG) in the display loop, and a metrics.jsonl compaction in the engine
(between two training steps, every few hours at the default journal_mb).

Each figure is the median of interleaved repeats, printed with the machine it ran on; no pass or fail.

    python benchmarks/bench_remote_checks.py [--size 1920x1080 --lines 200000 --repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from installation.display.offscreen import Offscreen  # noqa: E402
from installation.journal import compact_metrics  # noqa: E402
from installation.display.surface import read_framebuffer  # noqa: E402
from installation.live.status import LiveStatus, ThumbnailLog, write_status  # noqa: E402


def metrics_lines(count: int) -> bytes:
    line = {"branch": 0, "session": 1, "time": 1.8e9, "loss": 0.123456789, "batch_d": -1.23456789,
            "grad_norm": 12.3456789, "lr": 0.002, "objective": "logit", "batch": 4, "probe_d": -2.3456789,
            "diversity": 0.3456789}
    return "".join(json.dumps({"iteration": i, **line}) + "\n" for i in range(count)).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080", help="output size WIDTHxHEIGHT (default 1920x1080)")
    parser.add_argument("--lines", type=int, default=200_000, help="metrics lines to compact (default 200000)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; GL: llvmpipe/EGL offscreen")
    status = LiveStatus(iteration=1, cycle=0, phase="running", fps=30.0, uptime=1.0, last_error="",
                        engine_status="running", engine_restarts=0, steps_per_second=1.0, collapsed=False,
                        disk_free=0, recording="", model="m.pt", run_dir="/r", every=5.0)
    journal = metrics_lines(args.lines)
    figures: dict[str, list[float]] = {"status.json write": [], "thumbnail (read + JPEG)": [], "compaction": []}
    with tempfile.TemporaryDirectory() as tmp, Offscreen(width, height) as surface:
        folder = Path(tmp)
        surface.use()
        surface.ctx.clear(0.2, 0.4, 0.6)
        thumbnails = ThumbnailLog(folder / "thumbnails", 320, 50 * 2**20)
        for repeat in range(args.repeats):  # interleaved, so a burst of load on the box hits all three alike
            start = time.perf_counter()
            write_status(folder, status)
            figures["status.json write"].append(time.perf_counter() - start)
            start = time.perf_counter()
            thumbnails.save(read_framebuffer(surface.ctx, (width, height)), repeat, stamp=1e9 + repeat)
            figures["thumbnail (read + JPEG)"].append(time.perf_counter() - start)
            path = folder / "metrics.jsonl"
            path.write_bytes(journal)
            start = time.perf_counter()
            compact_metrics(path, len(journal) - 1)
            figures["compaction"].append(time.perf_counter() - start)
    print(f"output {width}x{height}; metrics.jsonl of {args.lines} lines ({len(journal) / 2**20:.1f} MB)")
    for name, times in figures.items():
        print(f"  {name:<26} {statistics.median(times) * 1e3:9.2f} ms median of {len(times)}")


if __name__ == "__main__":
    main()
