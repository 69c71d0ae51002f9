#!/usr/bin/env python3
"""How long the commands that draw nothing take to start and finish: --help, osc, service status, service install
--print and monitors, each a fresh `python3 run_installation.py ...` process, as a technician or a monitor runs them.

    python3 benchmarks/bench_start.py                      # 7 interleaved rounds
    python3 benchmarks/bench_start.py --against 97d2771    # the same commands at another commit, alternating

Rounds interleave the commands (and, with --against, the two trees: this one, then the other, in every round), so
load from other processes on a shared machine hits them alike; medians are printed, with whether the command
loaded torch (`python -X importtime`). `osc` only sends (--wait 0) to a port nobody listens on; `service status`
reads a status file written here; `monitors` runs on a private Xvfb where one is installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_engine import cpu_name  # noqa: E402

from installation.live.status import LiveStatus, write_status  # noqa: E402


def commands(run_dir: Path, free_port: int) -> dict[str, list[str]]:
    return {"--help": ["--help"],
            "osc": ["osc", "/uncanny/ping", "--port", str(free_port), "--wait", "0"],
            "service status": ["service", "status", "--run-dir", str(run_dir)],
            "service install --print": ["service", "install", "--user", "--print"],
            "monitors": ["monitors"]}


def timed(script: Path, args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, cwd=script.parent, timeout=300)
    return time.perf_counter() - start


def loads_torch(script: Path, args: list[str], env: dict[str, str]) -> str:
    """"yes"/"no": whether the command imported torch; "-" where the command does not exist in that tree."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(script), *args], capture_output=True, text=True,
                          env=env, cwd=script.parent, timeout=300)
    if "invalid choice" in done.stderr:
        return "-"
    return "yes" if re.search(r"\|\s+torch$", done.stderr, re.MULTILINE) else "no"


def start_xvfb() -> tuple[subprocess.Popen | None, str | None]:
    if shutil.which("Xvfb") is None:
        return None, None
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x720x24", "-nolisten",
                               "tcp", "-noreset"], pass_fds=(write_end,), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    os.close(write_end)
    reply = b""
    while not reply.endswith(b"\n") and (chunk := os.read(read_end, 16)):
        reply += chunk
    os.close(read_end)
    return server, f":{reply.decode().strip()}"


def checkout(revision: str, folder: Path) -> Path:
    """The tree of `revision` (git archive) in `folder`; its run_installation.py."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision], capture_output=True,
                             check=True).stdout
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(folder, filter="data")
    return folder / "run_installation.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--against", metavar="REVISION", default=None,
                        help="also time this git revision's commands, alternating with this tree's")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        work = Path(tmp)
        write_status(work / "run", LiveStatus(iteration=1, cycle=0, phase="", fps=30.0, uptime=60.0, last_error="",
                                              engine_status="running", engine_restarts=0, steps_per_second=1.0,
                                              collapsed=False, disk_free=2**30, recording="", model="m.pt",
                                              run_dir=str(work / "run"), every=3600.0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a port nobody listens on afterwards
            probe.bind(("127.0.0.1", 0))
            free_port = probe.getsockname()[1]
        trees = {"this tree": ROOT / "run_installation.py"}
        if args.against:
            trees[args.against] = checkout(args.against, work / "against")
        xvfb, display = start_xvfb()
        env = {**os.environ, "DISPLAY": display or "", "XDG_CONFIG_HOME": str(work / "config"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("SSH_CONNECTION", None)
        try:
            load_before = os.getloadavg()
            cases = commands(work / "run", free_port)
            torch_loaded = {(tree, name): loads_torch(script, cases[name], env)
                            for tree, script in trees.items() for name in cases}
            for script in trees.values():  # warm the page cache and .pyc files once, not timed
                for case in cases.values():
                    timed(script, case, env)
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for name, case in cases.items():
                    for tree, script in trees.items():
                        if torch_loaded[tree, name] != "-":
                            times.setdefault((tree, name), []).append(timed(script, case, env))
            load_after = os.getloadavg()
        finally:
            if xvfb is not None:
                xvfb.terminate()
                xvfb.wait(5)

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; {args.rounds} interleaved rounds, medians"
          + ("" if display else "; no Xvfb: monitors ran without a display"))
    header = f"{'command':<26}" + "".join(f"{tree + ' (s)':>18}{'torch':>7}" for tree in trees)
    print(header)
    for name in cases:
        row = f"{name:<26}"
        for tree in trees:
            samples = times.get((tree, name))
            row += f"{statistics.median(samples) if samples else float('nan'):>18.2f}{torch_loaded[tree, name]:>7}"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
