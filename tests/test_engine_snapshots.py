"""Snapshots: retention, files that load as checkpoints, resume after a crash, guards on the run folder."""

import json

import pytest
import torch

from installation.engine import Engine, EngineConfig, EngineError, retained
from installation.engine.engine import RunFolderError, check_run_folder
from installation.engine.snapshots import _tree_bytes as tree_bytes
from installation.journal import history
from installation.models import create_stylegan1, load_gan

TINY = dict(channels=[32, 32, 16, 16], code_dim=32, n_mlp=2)


def tiny_engine(run_dir, gan=None, **settings):
    return Engine(gan or create_stylegan1(**TINY), EngineConfig(device="cpu", **settings), run_dir)


def same_tensors(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_retention_keeps_zero_recent_ones_and_thins_the_past():
    every, recent = 50, 8
    kept = set()
    for newest in range(0, 5001, every):  # applied as each snapshot arrives, like the store does
        kept = retained(kept | {newest}, every, recent, max_count=10**6)
    ordered = sorted(kept)
    assert ordered[0] == 0 and ordered[-1] == 5000
    assert ordered[-recent:] == list(range(5000 - (recent - 1) * every, 5001, every))  # all recent ones
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    assert gaps == sorted(gaps, reverse=True)  # sparser further back
    assert len(ordered) < 30  # of 101 taken

    budget = retained(set(range(0, 5001, every)), every, recent, max_count=6)
    assert len(budget) == 6 and {0, 5000} <= budget


def test_disk_and_memory_follow_the_policy(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=1, keep_recent=3, memory_snapshots=3)
    for _ in range(16):
        engine.step()
        engine.store.flush()  # the policy, not the disk's speed: under load a writer behind would skip one
    files = sorted(int(p.stem[2:]) for p in (tmp_path / "snapshots").glob("it*.pt"))
    assert files == engine.store.on_disk() == [0, 8, 12, 14, 15, 16]
    assert engine.store.in_memory() == [0, 15, 16]
    engine.close()


def test_disk_budget_bounds_the_snapshot_count(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=1, disk_budget_mb=2.0)  # a tiny rewind point is 0.21 MiB
    for _ in range(12):
        engine.step()
    newest = engine.store.load(12)
    moments = newest.nbytes() - tree_bytes(newest.generator)  # optimizer.pt, the newest snapshot's only
    budget = int((2.0 * 2**20 - moments) // tree_bytes(newest.generator))
    assert 2 < budget < 12 and len(engine.store.on_disk()) == budget and {0, 12} <= set(engine.store.on_disk())
    engine.store.flush()
    on_disk = sum(path.stat().st_size for path in (tmp_path / "snapshots").iterdir())
    assert on_disk <= 2.0 * 2**20 * 1.05  # the files themselves (a few KB of headers each over the tensors)
    engine.close()


def test_a_snapshot_file_is_a_checkpoint_the_loader_reads(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=5)
    for _ in range(5):
        engine.step()
    engine.store.flush()
    gan = load_gan(tmp_path / "snapshots" / "it00000005.pt")
    assert gan.discriminator is None and gan.resolution == 32
    assert same_tensors(gan.generator.state_dict(), engine.gan.generator.state_dict())
    engine.close()


def test_resume_continues_exactly_where_the_uninterrupted_run_goes(tmp_path):
    first = tiny_engine(tmp_path / "run", snapshot_every=4)
    for _ in range(11):
        first.step()
    first.close(snapshot=False)  # like a crash: the newest complete snapshot is iteration 8
    at_eight = first.store.load(8)

    resumed = tiny_engine(tmp_path / "run", snapshot_every=4, seed=99)  # the run folder's own seed wins
    assert resumed.iteration == 8 and resumed.seed == 0
    assert same_tensors(at_eight.generator, resumed.gan.generator.state_dict())
    assert resumed.store.in_memory() == [0]  # iteration 0 is back in memory for an instant reset
    for _ in range(8):
        resumed.step()

    straight = tiny_engine(tmp_path / "straight", snapshot_every=4)
    for _ in range(16):
        straight.step()
    assert same_tensors(straight.gan.generator.state_dict(), resumed.gan.generator.state_dict())
    resumed.close()
    straight.close()


def test_resume_skips_unreadable_snapshots_and_leftover_temporary_files(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=5)
    for _ in range(10):
        engine.step()
    engine.close(snapshot=False)
    snapshots = tmp_path / "snapshots"
    (snapshots / "it00000010.pt").write_bytes(b"PK\x03\x04 not really")  # damaged outside our control
    leftover = snapshots / ".it00000015.pt.k2j4.tmp"  # what a kill -9 in the middle of a write leaves
    leftover.write_bytes(b"half a file")

    resumed = tiny_engine(tmp_path, snapshot_every=5)
    assert resumed.iteration == 5
    resumed.store.flush()  # files are deleted by the writer thread
    assert not leftover.exists() and not (snapshots / "it00000010.pt").exists()
    # the library's reason as a whole sentence, not cut mid-word
    assert resumed.errors[-1].endswith("it00000010.pt: unreadable snapshot (PytorchStreamReader failed reading zip "
                                       "archive: not a ZIP archive)"), resumed.errors[-1]
    resumed.close()


def test_one_engine_per_run_folder(tmp_path):
    engine = tiny_engine(tmp_path)
    with pytest.raises(EngineError, match="another engine is using this run folder"):
        tiny_engine(tmp_path)
    engine.close()
    tiny_engine(tmp_path).close()  # free again once closed


def test_a_run_folder_of_another_model_is_refused(tmp_path):
    tiny_engine(tmp_path).close()
    other = create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2)
    with pytest.raises(EngineError, match="belongs to another model"):
        tiny_engine(tmp_path, gan=other)


def test_back_walks_one_snapshot_further_with_each_press_down_to_zero(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=5)
    for _ in range(13):
        engine.step()
        engine.store.flush()  # the rewind points, not the disk's speed: under load a writer behind skips one
    # pressed faster than anything is reported: each press goes on from where the last one went
    went = []
    for _ in range(4):
        engine.apply("back")
        went.append(engine.iteration)
    assert went == [10, 5, 0, 0]
    for _ in range(7):
        engine.step()  # a new snapshot at 5: the next press counts from the journey's position again
        engine.store.flush()
    engine.apply("back")
    assert engine.iteration == 5
    for _ in range(2):
        engine.step()  # no new snapshot since the last press: it goes on past 5 rather than back to it
    engine.apply("back")
    assert engine.iteration == 0
    engine.close()


def test_toggle_pause_follows_the_engines_own_state(tmp_path):
    engine = tiny_engine(tmp_path)
    engine.apply("toggle_pause")
    assert engine.paused
    engine.apply("toggle_pause")
    assert not engine.paused
    engine.close()


def test_a_line_cut_by_a_kill_is_dropped_before_new_lines_are_appended(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=2)
    for _ in range(4):
        engine.step()
    engine.close()
    for name in ("metrics.jsonl", "events.jsonl"):
        with open(tmp_path / name, "a") as f:
            f.write('{"time": 17, "event": "st')  # what a power cut leaves
    resumed = tiny_engine(tmp_path, snapshot_every=2)
    resumed.step()
    resumed.close()
    for name in ("metrics.jsonl", "events.jsonl"):
        lines = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]  # every line reads
        assert lines
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {e["file"] for e in events if e["event"] == "torn_line_dropped"} == {"metrics.jsonl", "events.jsonl"}


def test_a_resume_records_the_death_before_it_and_the_history_is_one_journey(tmp_path):
    first = tiny_engine(tmp_path, snapshot_every=4)
    for _ in range(11):
        first.step()
    first.store.flush()
    first.folder.release()  # like kill -9: no final snapshot, no stop event, the lock released by the kernel
    resumed = Engine(create_stylegan1(**TINY), EngineConfig(device="cpu", snapshot_every=4), tmp_path,
                     previous_death="the engine process was killed by signal 9")
    assert resumed.iteration == 8 and resumed.session == 2
    for _ in range(2):
        resumed.step()
    resumed.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    died = [e for e in events if e["event"] == "died"]
    assert len(died) == 1 and died[0]["cause"] == "the engine process was killed by signal 9"
    assert died[0]["session"] == 1 and events.index(died[0]) < [e["event"] for e in events].index("resume")
    assert died[0]["iteration"] == 11  # the iteration the dead session had reached, not where the new one starts

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len({(m["iteration"], m["session"]) for m in lines}) == len(lines)  # each line says which session
    journey = history(lines)
    assert [m["iteration"] for m in journey] == list(range(11))  # 0..8 of the first session, 9 and 10 anew
    assert {m["session"] for m in journey[9:]} == {2}  # the lost 9..11 were replaced by the resumed session


def test_a_session_that_crashed_says_why(tmp_path):
    engine = tiny_engine(tmp_path)
    engine.step()
    engine.record_crash("RuntimeError: boom in the frame hook")
    engine.close(snapshot=False)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["error"] for e in events if e["event"] == "crash"] == ["RuntimeError: boom in the frame hook"]


@pytest.mark.parametrize("damage, message", [
    ("{not json", "run.json: unreadable"),
    ("[1, 2]", "run.json: unreadable"),
    ('{"arch": "stylegan1"}', "belongs to another model"),
])
def test_an_unusable_run_folder_is_refused_for_good(tmp_path, damage, message):
    tiny_engine(tmp_path).close()
    (tmp_path / "run.json").write_text(damage)
    with pytest.raises(RunFolderError, match=message):
        tiny_engine(tmp_path)
    with pytest.raises(RunFolderError, match=message):
        check_run_folder(tmp_path, create_stylegan1(**TINY))


def events_of(run_dir, kind=None):
    lines = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e for e in lines if kind is None or e["event"] == kind]


def test_rewind_points_hold_g_only_and_the_newest_its_moments_in_optimizer_pt(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=3)
    for _ in range(7):
        engine.step()
    engine.store.flush()
    point = torch.load(tmp_path / "snapshots" / "it00000003.pt", weights_only=True)
    assert "optimizer" not in point["journey"] and tree_bytes(point["g_ema"]) > 0
    moments = torch.load(tmp_path / "snapshots" / "optimizer.pt", weights_only=True)
    assert (moments["iteration"], moments["branch"]) == (6, 0) and moments["optimizer"]["state"]
    # the file of a rewind point is G's size (plus its header), a third of G + Adam's two moments
    g_bytes = tree_bytes(engine.gan.generator.state_dict())
    assert (tmp_path / "snapshots" / "it00000006.pt").stat().st_size < 1.1 * g_bytes
    assert (tmp_path / "snapshots" / "optimizer.pt").stat().st_size > 1.9 * g_bytes
    engine.close()


def test_a_rewind_point_without_moments_resumes_with_fresh_adam_and_the_newest_with_its_own(tmp_path):
    first = tiny_engine(tmp_path / "run", snapshot_every=4)
    for _ in range(13):
        first.step()
    first.rewind(5)  # back to 4, a rewind point: the newest on disk is now one without moments
    first.close(snapshot=False)
    resumed = tiny_engine(tmp_path / "run", snapshot_every=4)
    assert resumed.iteration == 4 and resumed.optimizer.state_dict()["state"] == {}
    assert same_tensors(resumed.gan.generator.state_dict(), resumed.store.load(4).generator)
    assert resumed.step() is not None and resumed.optimizer.state_dict()["state"]  # it trains on
    for _ in range(4):
        resumed.step()
    resumed.close(snapshot=False)  # the newest (8) was written with its moments

    again = tiny_engine(tmp_path / "run", snapshot_every=4)
    assert again.iteration == 8
    saved = torch.load(tmp_path / "run" / "snapshots" / "optimizer.pt", weights_only=True)["optimizer"]["state"]
    assert all(same_tensors(a, b) for a, b in zip(saved.values(), again.optimizer.state_dict()["state"].values(),
                                                   strict=True))
    assert [e["optimizer"] for e in events_of(tmp_path / "run", "resume")] == [False, True]
    again.close()


def test_snapshot_events_name_files_on_disk_and_the_bytes_written_are_counted(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=2)
    for _ in range(6):
        engine.step()
    engine.close(snapshot=False)
    events = events_of(tmp_path, "snapshot")
    assert [e["iteration"] for e in events] == [0, 2, 4, 6]
    for event in events:  # each one said when its file was complete (retention has not removed any here)
        path = tmp_path / "snapshots" / f"it{event['iteration']:08d}.pt"
        assert abs(path.stat().st_size / 2**20 - event["mb"]) < 0.01
    files = sum(p.stat().st_size for p in (tmp_path / "snapshots").iterdir())
    assert engine.state().snapshot_bytes_hour >= files  # optimizer.pt was written four times, the others once
    assert engine.state().saved_iteration == 6


def test_a_slow_disk_never_holds_training_up_it_skips_a_rewind_point_and_says_so(tmp_path):
    """A write that takes long (a slow disk, or on a GPU the copies still on their way) blocks only the writer."""
    import threading

    from installation.engine.snapshots import _Job

    engine = tiny_engine(tmp_path, snapshot_every=1)
    engine.store.flush()  # iteration 0 on disk first
    gate, taken = threading.Event(), threading.Event()
    engine.store._writer.put(_Job("write", 10**6, 0, tmp_path / "slow.pt",
                                  lambda: taken.set() or (gate.wait(60) and {})))
    assert taken.wait(60)  # the writer is in the slow write, not merely about to start it
    for _ in range(6):  # five snapshots while the writer is stuck: two wait, three are pushed out
        engine.step()
    assert engine.iteration == 6 and not gate.is_set()
    skipped = [e["iteration"] for e in events_of(tmp_path, "snapshot_skipped")]
    assert skipped == [1, 2, 3, 4]
    said = [e for e in engine.errors if "not written" in e]
    assert len(said) == 1 and said[0].startswith("snapshot 1 not written: the disk is slower than the snapshots")
    assert engine.store.on_disk() == [0, 5, 6] and engine.store.in_memory() == [0, 4, 5, 6]  # 4: a rewind point still
    gate.set()
    engine.close(snapshot=False)
    assert [e["iteration"] for e in events_of(tmp_path, "snapshot")] == [0, 5, 6]
    assert sorted(p.name for p in (tmp_path / "snapshots").glob("it*.pt")) == \
        ["it00000000.pt", "it00000005.pt", "it00000006.pt"]


def test_a_full_disk_suspends_snapshots_training_goes_on_and_writing_resumes_by_itself(tmp_path, small_disk):
    disk = small_disk("2m")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "snapshots").symlink_to(disk)
    engine = tiny_engine(tmp_path / "run", snapshot_every=2)
    engine.store.flush()
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (disk_free(disk) - 64 * 1024))  # the disk fills up from outside
    for _ in range(7):
        engine.step()
    assert engine.iteration == 7 and engine.paused is False  # training went on from memory
    said = [e for e in engine.errors if "cannot be written" in e]
    assert len(said) == 1, engine.errors  # said once, not once a snapshot
    assert said[0].startswith(f"snapshots cannot be written to {tmp_path / 'run' / 'snapshots'} (No space left")
    assert said[0].endswith("free some space on its disk")
    assert engine.state().snapshots_suspended == said[0] and engine.state().saved_iteration == 0
    assert [e["iteration"] for e in events_of(tmp_path / "run", "snapshot")] == [0]  # nothing claimed
    assert not list(disk.glob(".*.tmp"))  # no half-written file left to fill the disk

    filler.unlink()  # space again
    for _ in range(2):
        engine.step()
    engine.store.flush()
    engine._snapshot_reports()
    assert engine.state().snapshots_suspended is None and engine.state().saved_iteration == 8
    assert [e["event"] for e in events_of(tmp_path / "run", "snapshots_resumed")] == ["snapshots_resumed"]
    engine.close(snapshot=False)
    resumed = tiny_engine(tmp_path / "run", snapshot_every=2)
    assert resumed.iteration == 8  # the journey goes on from where it got to, not from 0
    resumed.close()


def test_a_read_only_folder_suspends_snapshots_until_it_is_writable_again(tmp_path, small_disk):
    import subprocess

    disk = small_disk("8m")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "snapshots").symlink_to(disk)
    engine = tiny_engine(tmp_path / "run", snapshot_every=2)
    engine.store.flush()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    try:
        for _ in range(5):
            engine.step()
        engine.store.flush()
        engine._snapshot_reports()
        said = [e for e in engine.errors if "cannot be written" in e]
        assert len(said) == 1 and "Read-only file system" in said[0] and "make its disk writable" in said[0]
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
    for _ in range(1):
        engine.step()
    engine.close(snapshot=False)
    assert engine.state().snapshots_suspended is None
    assert sorted(int(p.stem[2:]) for p in disk.glob("it*.pt")) == [0, 2, 4, 6]  # 2, 4: from memory, written again


def test_a_removed_run_folder_is_made_again_with_what_memory_holds(tmp_path):
    import shutil

    run = tmp_path / "run"
    engine = tiny_engine(run, snapshot_every=3)
    for _ in range(4):
        engine.step()
    engine.store.flush()
    shutil.rmtree(run)  # a technician's mistake
    for _ in range(3):
        engine.step()
    engine.close(snapshot=False)
    # what the journal held before is gone, and said; what memory holds is written again
    assert list(engine.errors) == [f"the run folder {run} was deleted and made again: what it held is lost"]
    assert sorted(int(p.stem[2:]) for p in (run / "snapshots").glob("it*.pt")) == [0, 3, 6]
    assert json.loads((run / "run.json").read_text())["seed"] == 0
    resumed = tiny_engine(run, snapshot_every=3)
    assert resumed.iteration == 6  # not back to 0
    resumed.apply("reset")
    assert resumed.iteration == 0
    resumed.close()


def disk_free(folder):
    import shutil

    return shutil.disk_usage(folder).free
