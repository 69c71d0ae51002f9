"""Snapshots: retention, files that load as checkpoints, resume after a crash, guards on the run folder."""

import json

import pytest
import torch

from installation.engine import Engine, EngineConfig, EngineError, retained
from installation.engine.engine import RunFolderError, check_run_folder
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
    engine.store.flush()
    files = sorted(int(p.stem[2:]) for p in (tmp_path / "snapshots").glob("it*.pt"))
    assert files == engine.store.on_disk() == [0, 8, 12, 14, 15, 16]
    assert engine.store.in_memory() == [0, 15, 16]
    engine.close()


def test_disk_budget_bounds_the_snapshot_count(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=1, disk_budget_mb=2.0)  # a tiny snapshot is 0.64 MiB
    for _ in range(12):
        engine.step()
    budget = int(2.0 * 2**20 // engine.store.load(12).nbytes())
    assert 2 < budget < 12 and len(engine.store.on_disk()) == budget and {0, 12} <= set(engine.store.on_disk())
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
    # pressed faster than anything is reported: each press goes on from where the last one went
    went = []
    for _ in range(4):
        engine.apply("back")
        went.append(engine.iteration)
    assert went == [10, 5, 0, 0]
    for _ in range(7):
        engine.step()  # a new snapshot at 5: the next press counts from the journey's position again
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
