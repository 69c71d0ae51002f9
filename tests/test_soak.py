"""The soak benchmark's short version: the director cycling in a live headless run of run_installation.py (its
live test: the state-machine tests are in test_director.py), OSC traffic, nothing lost, descriptors not growing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_soak_cycles_answers_every_ping_and_leaks_no_descriptors(capsys):
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "benchmarks" / "bench_soak.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_soak"] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    result = bench.main(["--minutes", "0.3", "--sample-every", "2", "--max-iterations", "20"])
    printed = capsys.readouterr().out
    assert "lost: nothing" in printed and result.lost == [], result.lost
    assert result.pongs >= 0.98 * result.pings  # UDP: a loaded machine may drop a few
    assert result.cycles >= 1 and result.resets >= result.cycles and result.restarts == 0 and result.exit_code == 0
    assert len(result.samples) >= 5 and len({s.engine_pid for s in result.samples}) == 1
    settled = result.samples[len(result.samples) // 3:]  # after start-up's imports and first snapshots
    for name in ("display", "engine", "ffmpeg"):
        counts = [s.fds(name) for s in settled]
        assert 0 < max(counts) <= counts[0] + 2, (name, counts)
