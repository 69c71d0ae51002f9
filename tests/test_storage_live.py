"""Storage faults under a whole running installation (run_installation.py in a window under Xvfb, real signals):
the run folder turned read-only, filled to its last byte, deleted. The picture goes on, the engine trains on from
memory and says what is wrong, status.json goes to its fallback meanwhile, and everything is written again by
itself once the folder can be: no traceback, no crash loop, a clean stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installation.live.status import STATUS_FILE, fallback_folders
from installation.models import create_stylegan1, save_gan

ROOT = Path(__file__).resolve().parents[1]
PRESET = """[engine]
threads = 1
batch = 1
probe_size = 2
probe_every = 5
snapshot_every = 20
[render]
max_fps = 10
[display]
fps = 10.0
[logs]
status_every = 0.5
"""


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), path)
    return path


@pytest.fixture
def installation(x_display, tiny_checkpoint, tmp_path, monkeypatch):
    """`installation(run_dir)`: the installation in a window on `run_dir`, in a process group of its own, with its
    XDG runtime folder (where the status fallback goes) under tmp_path; stopped with SIGTERM after."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    preset = tmp_path / "faults.toml"
    preset.write_text(PRESET)
    started: list[subprocess.Popen] = []

    def start(run_dir: Path) -> subprocess.Popen:
        started.append(subprocess.Popen(
            [sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(tiny_checkpoint), "--preset",
             str(preset), "--windowed", "--size", "160x120", "--device", "cpu", "--osc-port", "0", "--http-port", "0",
             "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"}))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def wait_for(predicate, process: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"the installation exited while waiting for {what}: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def steps(run_dir: Path) -> int:
    try:
        return max(json.loads(line)["iteration"] for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    except (OSError, ValueError):
        return -1


def unchanged(value, seconds: float):
    """A condition: `value()` has not changed for `seconds` (the engine trains several steps a second, so its
    metrics.jsonl standing still means it holds them in memory)."""
    seen = [None, 0.0]

    def check() -> bool:
        now, current = time.monotonic(), value()
        if current != seen[0]:
            seen[:] = [current, now]
        return now - seen[1] >= seconds

    return check


def fresh(path: Path, seconds: float = 5.0) -> bool:
    """A status file rewritten within the last `seconds`."""
    try:
        return time.time() - json.loads(path.read_text())["updated"] < seconds
    except (OSError, ValueError, KeyError):
        return False


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def stop(process: subprocess.Popen) -> str:
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0 and "Traceback" not in stderr and "Logging error" not in stderr, stderr
    return stderr


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_run_folder_that_turns_read_only_or_fills_up_is_said_worked_around_and_recovered(
        installation, tmp_path, small_disk, fill_disk, read_only, fault):
    run_dir = (small_disk("48m") if fault == "full" else tmp_path) / "run"
    process = installation(run_dir)
    wait_for(lambda: steps(run_dir) > 5 and fresh(run_dir / STATUS_FILE), process, "training and a status")
    filler = None
    if fault == "full":
        filler = fill_disk(run_dir.parent)
    else:
        read_only.on(run_dir)
    fallback = fallback_folders(run_dir)[0] / STATUS_FILE
    wait_for(lambda: fresh(fallback), process, "status.json in its fallback")
    wait_for(unchanged(lambda: steps(run_dir), 3.0), process, "the engine holding its steps in memory")
    at_fault = steps(run_dir)
    if filler is not None:
        filler.unlink()
    else:
        read_only.off(run_dir)
    wait_for(lambda: steps(run_dir) > at_fault + 10 and fresh(run_dir / STATUS_FILE) and not fallback.exists(),
             process, "the run folder written again")
    stderr = stop(process)
    problem = "is full" if fault == "full" else "is read-only"
    assert f"engine: the disk of {run_dir} {problem}" in stderr  # said on screen and in the log
    assert f"{run_dir} cannot take status.json" in stderr and f"status.json is written in {run_dir} again" in stderr
    history = events(run_dir)
    assert any(e["event"] == "storage_recovered" and problem in e["problem"] for e in history)
    assert history[-1]["event"] == "stop" and "died" not in [e["event"] for e in history]
    iterations = [json.loads(line)["iteration"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert iterations == list(range(iterations[-1] + 1))  # the steps made meanwhile were written, none lost
    assert f"final snapshot at iteration {history[-1]['iteration']}" in stderr


def test_a_deleted_run_folder_is_made_again_and_the_journey_goes_on_from_where_it_was(installation, tmp_path):
    run_dir = tmp_path / "run"
    process = installation(run_dir)
    wait_for(lambda: steps(run_dir) > 5 and fresh(run_dir / STATUS_FILE), process, "training and a status")
    info = json.loads((run_dir / "run.json").read_text())
    shutil.rmtree(run_dir)
    deleted_at = time.monotonic()
    wait_for(lambda: (run_dir / "run.json").exists() and steps(run_dir) > 0, process, "the run folder made again")
    assert json.loads((run_dir / "run.json").read_text()) == info  # run.json first: never a folder without it
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["iteration"]
    assert first > 5  # the journey went on from where it was, not from iteration 0
    wait_for(lambda: fresh(run_dir / STATUS_FILE), process, "status.json back in the run folder")
    assert time.monotonic() - deleted_at < 60
    stderr = stop(process)
    # said as gone, or, where the snapshot writer made the folder again first, as deleted and made again
    assert f"the run folder {run_dir} has gone (deleted or unmounted)" in stderr or \
        f"the run folder {run_dir} was deleted and made again" in stderr, stderr
    assert events(run_dir)[-1]["event"] == "stop"
