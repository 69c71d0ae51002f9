"""The engine in a real spawned process: commands, clean stop, SIGKILL mid-snapshot, crash and restart."""

import json
import os

import pytest
import torch

from installation.engine import EngineConfig, EngineError, EngineProcess
from installation.engine.config import engine_threads
from installation.models import create_stylegan1, save_gan

CONFIG = EngineConfig(device="cpu", threads=1)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2), path)
    return path


@pytest.fixture
def engines():
    started = []
    yield lambda *args, **kwargs: started.append(EngineProcess(*args, **kwargs)) or started[-1]
    for engine in started:
        engine.kill()  # never leave one running, whatever the test did


def crash_on_request(engine):
    """A between-steps hook with a bug the test can trigger (module level, so it pickles into the child)."""
    request = engine.run_dir / "crash-now"
    if request.exists():
        request.unlink()
        raise RuntimeError("boom in the frame hook")


def report_threads(engine):
    """A between-steps hook that writes down the engine process's thread settings once."""
    report = engine.run_dir / "threads.json"
    if not report.exists():
        report.write_text(json.dumps({"threads": torch.get_num_threads(), "omp": os.environ.get("OMP_WAIT_POLICY")}))


def resume_events(run_dir):
    lines = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e["snapshot"] for e in lines if e["event"] == "resume"]


def test_commands_sigkill_mid_snapshot_crash_restarts_and_clean_stop(tmp_path, checkpoint, engines):
    run_dir = tmp_path / "run"
    engine = engines(checkpoint, run_dir, CONFIG.replace(snapshot_every=1, keep_recent=1000),
                     between_steps=crash_on_request)
    engine.start()
    engine.wait_for(lambda s: s.iteration >= 2)
    bad = ["warp", "rewind -1", "rewind 100000", "lr 2", "batch 0"]
    for command in bad:
        engine.send(command)
    state = engine.wait_for(lambda s: s.commands >= len(bad))
    for expected in ["unknown command 'warp'", "must be an integer >= 0, got -1", "cannot rewind to 100000",
                     "lr must be 0 (the model's own rate) or a number > 0 and <= 1",
                     "batch must be an integer from 1 to 64, got 0"]:
        assert any(expected in e for e in state.errors), (expected, state.errors)
    assert state.error_count == len(bad) and state.status == "running"
    engine.wait_for(lambda s: s.iteration >= state.iteration + 2)  # still stepping

    engine.send("pause")
    paused = engine.wait_for(lambda s: s.status == "paused")
    assert engine.poll().iteration == paused.iteration
    engine.send(("lr", 0.0005))
    engine.send({"name": "resume"})
    state = engine.wait_for(lambda s: s.iteration > paused.iteration + 2)
    assert state.lr == 0.0005 and state.steps_per_second > 0

    engine.kill()  # os.kill(pid, SIGKILL) while the writer thread is busy with a snapshot nearly all the time
    state = engine.poll()
    assert state.status == "crashed" and state.exitcode == -9
    with pytest.raises(EngineError, match="not running"):
        engine.send("pause")
    complete = sorted(int(p.stem[2:]) for p in (run_dir / "snapshots").glob("it*.pt"))
    half_written = list((run_dir / "snapshots").glob(".*.tmp"))
    assert complete[-1] >= state.iteration - 3  # at most three writes queued or in progress

    engine.restart()
    state = engine.wait_for(lambda s: s.status == "running" and s.iteration > complete[-1])
    assert resume_events(run_dir) == [complete[-1]] and state.lr == 0.0005
    assert not any(path.exists() for path in half_written)

    (run_dir / "crash-now").touch()  # an exception inside the engine process: reported, the caller unharmed
    state = engine.wait_for(lambda s: s.status == "crashed")
    assert state.error == "RuntimeError: boom in the frame hook" and state.iteration > complete[-1]
    assert engine.wait_for(lambda s: s.exitcode is not None).exitcode == 1
    engine.restart()
    engine.wait_for(lambda s: s.status == "running")
    assert resume_events(run_dir)[1] == state.iteration  # queued snapshots were finished before it exited

    assert engine.stop() == 0
    final = engine.poll()
    assert final.status == "stopped" and not final.alive
    assert final.iteration in final.snapshots  # a clean stop keeps the newest weights


def test_an_unusable_checkpoint_is_a_refusal_reported_not_raised(tmp_path, engines):
    gan = create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2)
    gan.discriminator = None
    save_gan(gan, tmp_path / "no-d.pt")
    engine = engines(tmp_path / "no-d.pt", tmp_path / "run", CONFIG)
    engine.start()
    state = engine.wait_for(lambda s: s.status == "refused")  # the same file would fail again: not a crash
    assert "has no discriminator" in state.error and "\n" not in state.error
    assert engine.wait_for(lambda s: s.exitcode is not None).exitcode == 1


def test_threads_0_is_the_installations_policy_in_the_engine_process(tmp_path, checkpoint, engines):
    assert [engine_threads(0, cores) for cores in (1, 2, 8)] == [1, 1, 7]  # one core stays for GL and ffmpeg
    assert engine_threads(3, 8) == 3
    run_dir = tmp_path / "run"
    engine = engines(checkpoint, run_dir, EngineConfig(device="cpu"), between_steps=report_threads)
    engine.start()
    engine.wait_for(lambda s: s.iteration >= 1)
    report = json.loads((run_dir / "threads.json").read_text())
    assert report == {"threads": engine_threads(0), "omp": "PASSIVE"}
    assert engine.stop() == 0


def test_a_journey_paced_at_40_iterations_a_minute_makes_36_to_44_in_a_minute_of_training(tmp_path, checkpoint,
                                                                                        engines):
    """The arc's 40 iterations over journey_minutes = 1, set live by the engine's command (OSC's
    /uncanny/journey/minutes) while the engine trains as fast as it can; counted from the engine's own metrics over
    60 s of training. The tiny model's steps take milliseconds, so the engine idles nearly all of that minute."""
    run_dir = tmp_path / "run"
    engine = engines(checkpoint, run_dir, CONFIG.replace(journey_iterations=40))
    engine.start()
    engine.wait_for(lambda s: s.iteration >= 5 and s.journey_iterations == 40 and s.journey_minutes == 0)
    engine.send("journey_minutes 1")
    start = engine.wait_for(lambda s: s.journey_minutes == 1.0).time + 1.0  # a step may have been under way
    engine.wait_for(lambda s: s.time > start + 61, timeout=300)
    assert engine.stop() == 0
    times = [line["time"] for line in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]
    made = sum(start <= t < start + 60 for t in times)
    assert 36 <= made <= 44, made
