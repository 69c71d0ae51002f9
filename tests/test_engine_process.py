"""The engine in a real spawned process: commands, clean stop, SIGKILL mid-snapshot, crash and restart, a process
that ignores SIGTERM or cannot be killed, a GPU that is gone, out of memory."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from installation.engine import Command, EngineConfig, EngineError, EngineProcess
from installation.engine.commands import MAX_WAITING
from installation.engine.config import cuda_device_count, engine_threads
from installation.engine.process import EngineUnkillable
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
        if engine.unkillable:
            engine._process.join(30)  # thawed by the freezer fixture (set up later, so torn down first): gone now
        else:
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


def stuck_on_request(engine):
    """A hook that, once asked, ignores SIGTERM and never returns: a driver call that hangs (module level, so it
    pickles into the child)."""
    if (engine.run_dir / "hang-now").exists():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)


def resume_events(run_dir):
    lines = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e["snapshot"] for e in lines if e["event"] == "resume"]


def test_commands_sigkill_mid_snapshot_crash_restarts_and_clean_stop(tmp_path, checkpoint, engines):
    run_dir = tmp_path / "run"
    engine = engines(checkpoint, run_dir, CONFIG.replace(snapshot_every=1, keep_recent=1000),
                     between_steps=crash_on_request)
    engine.start()
    engine.wait_for(lambda s: s.iteration >= 2)
    bad = ["warp", "rewind -1", Command("lr", 2.0, id=41), "batch 0", Command("batch", 0, id=42)]
    for command in bad:
        engine.send(command)
    state = engine.wait_for(lambda s: s.commands >= len(bad))
    for expected in ["unknown command 'warp'", "must be an integer >= 0, got -1",
                     "lr must be 0 (the model's own rate) or a number > 0 and <= 1",
                     "batch must be an integer from 1 to 64, got 0"]:
        assert any(expected in e for e in state.errors), (expected, state.errors)
    assert state.error_count == len(bad) and state.status == "running"
    assert [(i, "must be" in text) for i, text in state.refusals] == [(41, True), (42, True)]  # by the sender's id
    engine.send("rewind 100000")  # ahead of the journey: the newest snapshot, not a refusal
    landed = engine.wait_for(lambda s: s.commands > len(bad))
    assert landed.error_count == len(bad) and landed.landed in landed.snapshots
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


def trigger_events(run_dir, names):
    events = (json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines())
    return [e["command"] for e in events if e["event"] == "command" and e["command"] in names]


def test_a_full_command_pipe_delays_triggers_in_order_and_keeps_the_newest_setting(tmp_path, checkpoint, engines):
    run_dir = tmp_path / "run"
    engine = engines(checkpoint, run_dir, CONFIG)
    engine.start()
    engine.wait_for(lambda s: s.iteration >= 1)
    os.kill(engine.pid, signal.SIGSTOP)  # stopped whole (a process stuck on its device): it reads nothing meanwhile
    triggers, newest, most_waiting = [], {}, 0
    for i in range(5000):  # faders swept at full speed, a button pressed now and then
        if i % 25 == 0:
            triggers.append(("pause", "snapshot", "resume")[len(triggers) % 3])
            engine.send(triggers[-1])
        else:
            name = ("lr", "limit", "batch")[i % 3]
            newest[name] = (1e-4 * (1 + i / 5000), i / 100, 1 + i % 8)[i % 3]
            engine.send((name, newest[name]))
        most_waiting = max(most_waiting, engine.waiting)
    assert most_waiting > 0  # the pipe filled: without the queue these were refused ("it may be hung")
    assert engine.waiting <= len(triggers) + 3  # the settings waited as one value each
    os.kill(engine.pid, signal.SIGCONT)
    state = engine.wait_for(lambda s: engine.waiting == 0 and len(trigger_events(run_dir, triggers)) == 200)
    assert trigger_events(run_dir, ("pause", "snapshot", "resume")) == triggers  # every one, in order
    state = engine.wait_for(lambda s: (s.lr, s.limit, s.batch) == (newest["lr"], newest["limit"], newest["batch"]))
    assert state.error_count == 0 and state.status == "paused"  # the last of pause and resume was a pause

    # a hung engine: past MAX_WAITING a trigger is refused with the reason, never dropped unsaid
    os.kill(engine.pid, signal.SIGSTOP)
    before, accepted = len(trigger_events(run_dir, ("snapshot",))), 0
    with pytest.raises(EngineError, match=f"{MAX_WAITING} are waiting; its pipe is full\\): it may be hung"):
        for accepted in range(100_000):
            engine.send("snapshot")
    assert engine.waiting == MAX_WAITING
    os.kill(engine.pid, signal.SIGCONT)
    engine.wait_for(lambda s: engine.waiting == 0 and len(trigger_events(run_dir, ("snapshot",))) == before + accepted)
    assert engine.stop() == 0


def test_a_stop_that_is_not_heard_ends_in_sigterm_then_sigkill_within_its_timeouts(tmp_path, checkpoint, engines):
    run_dir = tmp_path / "run"
    engine = engines(checkpoint, run_dir, CONFIG, between_steps=stuck_on_request)
    engine.start()
    engine.wait_for(lambda s: s.status == "running")
    (run_dir / "hang-now").touch()
    deadline = time.monotonic() + 60
    while True:  # until the hook has taken hold: the heartbeat stands still
        beat = engine.poll().heartbeat
        time.sleep(1.0)
        if engine.poll().heartbeat == beat:
            break
        assert time.monotonic() < deadline, "the engine never got stuck"
    started = time.monotonic()
    assert engine.stop(timeout=2.0) == -signal.SIGKILL  # the shutdown unread, SIGTERM ignored: killed
    assert time.monotonic() - started < 2.0 + 5.0 + 10.0 + 5.0  # timeout, SIGTERM grace, SIGKILL wait, slack
    assert engine.poll().status == "crashed" and not engine.alive


def test_a_process_that_outlives_sigkill_is_reported_and_never_replaced_beside_it(tmp_path, checkpoint, engines,
                                                                                   freezer):
    engine = engines(checkpoint, tmp_path / "run", CONFIG)
    engine.start()
    engine.wait_for(lambda s: s.status == "running")
    pid = engine.pid
    freezer(pid)  # as a process stuck in the GPU driver: state D, SIGKILL pending until it returns
    started = time.monotonic()
    with pytest.raises(EngineUnkillable) as error:
        engine.kill(timeout=2.0)
    assert time.monotonic() - started < 10.0
    assert str(error.value).startswith(f"the engine process {pid} is still there 2 s after SIGKILL: it is stuck in "
                                       "the kernel (state D)") and "\n" not in str(error.value)
    for call in (engine.stop, engine.restart, engine.start, engine.kill):  # at once, and no second engine
        with pytest.raises(EngineUnkillable):
            call()
    assert engine.pid == pid


@pytest.mark.skipif(cuda_device_count() > 0 or torch.version.cuda is None,
                    reason="a lost GPU is faked by one that was never there, with a CUDA build of torch (a CPU-only "
                           "build can never have one: refused)")
def test_a_gpu_that_is_gone_when_the_engine_restarts_is_a_crash_to_retry_not_a_refusal(tmp_path, checkpoint,
                                                                                        engines):
    engine = engines(checkpoint, tmp_path / "run", CONFIG.replace(device="cuda:0"))
    engine.start()
    state = engine.wait_for(lambda s: s.status in ("crashed", "refused"))
    assert state.status == "crashed"  # the supervisor restarts it with its back-off: the GPU may come back
    assert state.error == ("device cuda:0: no CUDA device is available here now; check the GPU driver (nvidia-smi), "
                           "or use cpu or auto (the GPU was lost: a driver reset or a fault)")


@pytest.mark.skipif(cuda_device_count() > 0, reason="device auto would find this machine's GPU")
def test_a_run_that_had_a_gpu_and_goes_on_on_the_cpu_says_so_loudly(tmp_path, checkpoint, engines):
    from installation.engine import Engine
    from installation.models import load_gan

    run_dir = tmp_path / "run"
    Engine(load_gan(checkpoint, require_discriminator=True), CONFIG, run_dir).close()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["device"] == "cpu"
    info["device"] = "cuda:0 NVIDIA GeForce RTX 4090"  # the run folder of a GPU box whose GPU is gone
    (run_dir / "run.json").write_text(json.dumps(info))
    engine = engines(checkpoint, run_dir, CONFIG.replace(device="auto"))
    engine.start()
    state = engine.wait_for(lambda s: s.status == "running")
    assert state.device == "cpu" and state.degraded.startswith(
        "degraded: the engine runs on the CPU, far slower, because the GPU this run used (cuda:0 NVIDIA GeForce RTX "
        "4090) is not available now")
    assert state.degraded in state.errors
    assert engine.stop() == 0
    assert json.loads((run_dir / "run.json").read_text())["device"] == "cuda:0 NVIDIA GeForce RTX 4090"  # said again


OUT_OF_MEMORY = """
import resource, sys
import torch
from installation.engine import Engine, EngineConfig
from installation.models import create_stylegan1
torch.set_num_threads(1)
run_dir = sys.argv[1]
config = EngineConfig(device="cpu", snapshot_every=1000)
engine = Engine(create_stylegan1([16] * 6, code_dim=32, n_mlp=2), config, run_dir)  # 128 px
engine.step()
engine.apply("batch 64")  # too large for the memory below; a snapshot keeps it, as if set on a roomier day
engine.apply("snapshot")
engine.close(snapshot=False)
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 600 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
engine = Engine(create_stylegan1([16] * 6, code_dim=32, n_mlp=2), config, run_dir)  # resumes with batch 64
assert engine.batch == 64, engine.batch
line = engine.step()
print("stepped", line is not None, "batch", engine.batch, "limit", engine.batch_limit)
for message in engine.errors:
    print("error:", message)
engine.apply("batch 64")
"""


def test_out_of_memory_lowers_the_batch_once_and_says_so_even_for_a_batch_a_snapshot_restored(tmp_path):
    """A real out-of-memory (the process's address space limited), in a process of its own."""
    done = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY, str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)),
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = done.stdout.splitlines()
    stepped = next(line for line in lines if line.startswith("stepped")).split()
    assert stepped[1] == "True" and int(stepped[3]) == int(stepped[5]) and int(stepped[3]) in (8, 16, 32)
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [f"error: out of memory at batch 64 on cpu: the training batch is now {stepped[3]}, the most "
                      "that fits next to everything else on the device"], done.stdout
    assert done.returncode == 1 and "batch 64: at most" in done.stderr.splitlines()[-1]  # the command refused
    assert f"fits in the memory of cpu (found at an out-of-memory); choose 1..{stepped[3]}" in done.stderr
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
