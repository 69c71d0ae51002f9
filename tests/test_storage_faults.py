"""Storage faults under a running engine, injected for real: a full disk (a small tmpfs filled to its last byte),
a read-only disk (a bind mount remounted read-only), the run folder removed. The engine trains on from memory,
says what is wrong and what to do (EngineState.storage), and saves again by itself once the folder can be written:
the journal lines held meanwhile are written, run.json is there again, nothing is lost."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from installation.engine import Engine, EngineConfig
from installation.engine.errors import RunFolderUnavailable
from installation.engine.runfolder import HELD_LINES, RunFolder
from installation.journal import history
from installation.models import create_stylegan1

TINY = dict(channels=[32, 32, 16, 16], code_dim=32, n_mlp=2)
# snapshots only at the start and the stop: the snapshot writer's own suspension is tested with it (engine/snapshots.py)
SETTINGS = dict(device="cpu", threads=1, batch=1, probe_size=2, probe_every=5, snapshot_every=10_000)


def tiny_engine(run_dir, **settings) -> Engine:
    return Engine(create_stylegan1(**TINY, seed=1), EngineConfig(**SETTINGS, **settings), run_dir)


def train_until(engine: Engine, predicate, timeout: float = 90.0) -> None:
    """Steps (each pass of the engine loop looks after the run folder) until `predicate(state)` holds."""
    deadline = time.monotonic() + timeout
    while not predicate(engine.state()):
        assert time.monotonic() < deadline, f"timed out at {engine.state()}"
        engine.run(until=engine.iteration + 1)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_full_disk_holds_the_journal_in_memory_until_space_is_freed(small_disk, fill_disk):
    disk = small_disk("48m")  # 16 MB more than the free space every writer leaves
    run_dir = disk / "run"
    engine = tiny_engine(run_dir)
    train_until(engine, lambda s: s.iteration >= 3)
    filler = fill_disk(disk)
    train_until(engine, lambda s: s.storage is not None)
    problem = engine.state().storage
    assert f"the disk of {run_dir} is full" in problem and "training goes on, unsaved" in problem
    assert "once some space is freed" in problem
    full_at = engine.iteration
    train_until(engine, lambda s: s.iteration >= full_at + 10)  # it trains on
    filler.unlink()
    train_until(engine, lambda s: s.storage is None)
    train_until(engine, lambda s: s.iteration >= full_at + 12)
    engine.close()

    journey = history(lines(run_dir / "metrics.jsonl"))
    assert [m["iteration"] for m in journey] == list(range(engine.iteration + 1))  # not one step lost
    events = lines(run_dir / "events.jsonl")
    said = [e for e in events if e["event"] == "error" and "is full" in e["message"]]
    recovered = [e for e in events if e["event"] == "storage_recovered"]
    assert len(said) == 1 and len(recovered) == 1 and recovered[0]["dropped_lines"] == 0
    assert "is full" in recovered[0]["problem"] and events[-1]["event"] == "stop"


def test_a_read_only_folder_keeps_the_engine_training_and_a_start_on_it_resumes(tmp_path, read_only):
    run_dir = tmp_path / "run"
    engine = tiny_engine(run_dir)
    train_until(engine, lambda s: s.iteration >= 3)
    read_only.on(run_dir)
    train_until(engine, lambda s: s.storage is not None)  # found by the engine's look, within seconds
    assert f"the disk of {run_dir} is read-only" in engine.state().storage and "remount it" in engine.state().storage
    engine.close()  # its final snapshot and stop event cannot be written: said, not raised
    assert any("were lost" in e for e in engine.errors), engine.errors
    cut = lines(run_dir / "metrics.jsonl")[-1]["iteration"]

    again = tiny_engine(run_dir)  # a restart on the read-only folder: it takes its lock and resumes, unsaved
    assert again.iteration == 0 and again.session == 2 and "read-only" in again.state().storage
    train_until(again, lambda s: s.iteration >= 5)
    with pytest.raises(RunFolderUnavailable, match="another engine is using this run folder"):
        tiny_engine(run_dir)  # the lock holds on a read-only folder too
    read_only.off(run_dir)
    train_until(again, lambda s: s.storage is None)
    again.close()
    assert json.loads((run_dir / "run.json").read_text())["sessions"] == 2  # written once it could be
    events = lines(run_dir / "events.jsonl")
    died = [e for e in events if e["event"] == "died"]  # the first session's stop was never written
    assert len(died) == 1 and died[0]["iteration"] == cut  # as far as its journal goes
    assert [e["event"] for e in events][-1] == "stop" and any(e["event"] == "storage_recovered" for e in events)


def test_a_removed_run_folder_is_made_again_run_json_first_and_the_journey_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    engine = tiny_engine(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    train_until(engine, lambda s: s.iteration >= 3)
    shutil.rmtree(run_dir)
    train_until(engine, lambda s: (run_dir / "metrics.jsonl").exists() and s.storage is None)
    assert any("has gone (deleted or unmounted)" in e for e in engine.errors), engine.errors
    assert json.loads((run_dir / "run.json").read_text()) == info  # remade first: a folder never without it
    made_again_at = engine.iteration
    train_until(engine, lambda s: s.iteration >= made_again_at + 3)
    engine.close()
    metrics = lines(run_dir / "metrics.jsonl")
    assert metrics[0]["iteration"] <= made_again_at + 1 and metrics[-1]["iteration"] == engine.iteration
    assert [m["iteration"] for m in metrics] == list(range(metrics[0]["iteration"], engine.iteration + 1))


def test_held_lines_are_bounded_and_the_dropped_ones_counted(tmp_path, read_only):
    folder = RunFolder(tmp_path / "run")
    folder.make()
    folder.lock()
    folder.open_journal()
    read_only.on(folder.path)
    folder.tick(time.monotonic())  # the look finds it read-only
    for i in range(HELD_LINES + 5):
        folder.append("metrics", {"iteration": i, "branch": 0})
    assert "read-only" in folder.problem and not folder.can_write(1)  # what the snapshot writer asks
    read_only.off(folder.path)
    folder.tick(time.monotonic() + 60)
    assert folder.problem is None and folder.can_write(1) and not folder.can_write(folder.free_bytes())
    (change, cleared) = folder.take_changes()
    assert change.problem is not None and cleared.problem is None and cleared.dropped == 5
    written = lines(folder.path / "metrics.jsonl")
    assert [m["iteration"] for m in written] == list(range(5, HELD_LINES + 5))  # the oldest went first
    assert folder.close() == 0
