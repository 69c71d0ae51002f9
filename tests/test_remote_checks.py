"""What a run leaves for a remote check stays true and bounded: status.json rewritten whole, thumbnails within their
budget, a rotating log, and metrics/events compacted without losing the journey they describe."""

import json
import logging
import os

import numpy as np
import pytest

from installation.engine import Engine, EngineConfig
from installation.journal import KEEP_SHARE, compact_events, compact_metrics
from installation.journey import read_metrics
from installation.live.logfile import LOG_FILE, log_file
from installation.live.status import (STATUS_FILE, LiveStatus, RemoteChecks, ThumbnailLog, find_status,
                                      read_status, write_status)
from installation.models import create_stylegan1
from installation.presets import PresetError, load_preset
from installation.live.status import LogsConfig

REQUIRED = ("iteration", "cycle", "phase", "fps", "uptime", "last_error", "engine_restarts", "disk_free",
            "recording", "updated", "pid", "version", "model")


def a_status(**changes):
    values = dict(iteration=12, cycle=2, phase="holding", fps=29.5, uptime=61.0, last_error="", engine_status="running",
                  engine_restarts=1, steps_per_second=3.5, collapsed=False, disk_free=10**9, recording="",
                  model="tiny.pt", run_dir="/r", every=5.0)
    return LiveStatus(**{**values, **changes})


def test_status_file_is_written_whole_with_every_key_and_reads_back(tmp_path):
    write_status(tmp_path, a_status(recording="/r/rec.mp4"))
    data = json.loads((tmp_path / STATUS_FILE).read_text())
    assert set(REQUIRED) <= set(data) and data["cycle"] == 2 and isinstance(data["cycle"], int)
    assert data["pid"] == os.getpid() and data["recording"] == "/r/rec.mp4"
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_FILE]  # no temporary file left beside it
    write_status(tmp_path, a_status())
    back = read_status(tmp_path)
    assert back.recording == "" and json.loads((tmp_path / STATUS_FILE).read_text())["recording"] is False
    assert not back.stale() and back.stale(back.updated + 3 * 5.0 + 1)
    (tmp_path / STATUS_FILE).write_text('{"iteration": 3}')
    with pytest.raises(ValueError, match="no cycle, phase"):
        read_status(tmp_path)


def test_thumbnails_stay_within_their_budget_and_keep_the_newest(tmp_path):
    log = ThumbnailLog(tmp_path / "thumbnails", width=64, budget=6000)
    rng = np.random.default_rng(0)
    paths = [log.save(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8), iteration=i, stamp=1e9 + 60 * i)
             for i in range(12)]
    kept = sorted((tmp_path / "thumbnails").iterdir())
    assert sum(p.stat().st_size for p in kept) <= 6000 and 1 < len(kept) < 12
    assert kept == paths[-len(kept):]  # the oldest went first
    from PIL import Image

    with Image.open(kept[-1]) as picture:
        assert picture.size == (64, 36) and picture.format == "JPEG"
    assert kept[-1].name.endswith("-it11.jpg")


def test_remote_checks_keep_their_own_clocks_and_say_a_write_failure_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir(mode=0o700)
    said = []
    checks = RemoteChecks(tmp_path, LogsConfig(status_every=2.0, thumbnail_minutes=1.0, thumbnail_width=32),
                          said.append, now=100.0)
    picture = np.zeros((20, 40, 3), np.uint8)
    statuses = iter(range(1000))

    def status():
        return a_status(iteration=next(statuses))

    checks.tick(100.0, status, lambda: picture)  # the status at once; the first thumbnail 30 s after the start
    first = read_status(tmp_path).iteration
    checks.tick(101.0, status, lambda: picture)
    assert read_status(tmp_path).iteration == first and not (tmp_path / "thumbnails").exists()
    checks.tick(130.5, status, lambda: picture)
    assert read_status(tmp_path).iteration > first and len(list((tmp_path / "thumbnails").glob("*.jpg"))) == 1
    checks.tick(150.0, status, lambda: picture)
    assert len(list((tmp_path / "thumbnails").glob("*.jpg"))) == 1  # the next one a minute after
    (tmp_path / STATUS_FILE).unlink()
    (tmp_path / STATUS_FILE / "in-the-way").mkdir(parents=True)  # a folder where the file goes: every write fails
    for now in (200.0, 210.0, 220.0):
        checks.tick(now, status, lambda: picture)
    fallback = checks.fallback / STATUS_FILE
    assert fallback.is_relative_to(tmp_path / "xdg" / "uncanny")
    assert said == [f"{tmp_path} cannot take status.json (Is a directory); it goes to {fallback} meanwhile"]
    assert not list(tmp_path.glob(".*.tmp"))  # a failed write leaves nothing behind
    where, found = find_status(tmp_path)  # what `service status` reads: the newest of the two
    assert where == fallback and found.iteration == json.loads(fallback.read_text())["iteration"] > first
    assert len(list((tmp_path / "thumbnails").glob("*.jpg"))) == 1  # none while the run folder fails
    (tmp_path / STATUS_FILE / "in-the-way").rmdir()
    (tmp_path / STATUS_FILE).rmdir()
    checks.tick(230.0, status, lambda: picture)
    assert said[-1] == f"status.json is written in {tmp_path} again" and not fallback.exists()
    assert find_status(tmp_path)[0] == tmp_path / STATUS_FILE


def test_status_of_a_vanished_run_folder_goes_to_its_fallback_and_the_folder_is_not_made_again(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    said = []
    checks = RemoteChecks(run_dir, LogsConfig(status_every=1.0, thumbnail_minutes=0.0), said.append, now=0.0)
    run_dir.rmdir()  # deleted, or its disk unmounted
    checks.tick(0.0, lambda: a_status(storage="the run folder has gone"), lambda: None)
    assert not run_dir.exists() and checks.fallback.is_relative_to(tmp_path / "tmp" / f"uncanny-{os.getuid()}")
    where, status = find_status(run_dir)
    assert where == checks.fallback / STATUS_FILE and status.storage == "the run folder has gone"
    assert oct(checks.fallback.stat().st_mode & 0o777) == oct(0o700)  # others on the machine cannot read it
    assert "No such file or directory" in said[0]


def test_logs_table_goes_through_the_preset_validation(tmp_path):
    (tmp_path / "p.toml").write_text("[logs]\nstatus_every = 1\nthumbnail_minutes = 0\n")
    logs = load_preset(tmp_path / "p.toml").logs
    assert logs.status_every == 1.0 and logs.thumbnail_minutes == 0.0
    (tmp_path / "bad.toml").write_text("[logs]\nlog_files = 0\n")
    with pytest.raises(PresetError, match=r"bad.toml: \[logs\] log_files must be an integer from 1 to 100, got 0"):
        load_preset(tmp_path / "bad.toml")


def test_log_file_rotates_within_its_size_and_warnings_still_reach_stderr(tmp_path, capsys):
    logger = logging.getLogger("installation.test")
    with log_file(tmp_path, LogsConfig(log_mb=0.01, log_files=2)) as path:
        for n in range(400):
            logger.info("line %d of the test log, long enough to fill the small file quickly", n)
        logger.warning("engine stopped: a warning")
    files = sorted(path.parent.iterdir())
    assert [p.name for p in files] == ["uncanny.log", "uncanny.log.1", "uncanny.log.2"]
    assert all(p.stat().st_size <= 0.01 * 2**20 + 200 for p in files)
    assert "engine stopped: a warning" in (tmp_path / LOG_FILE).read_text()
    assert "engine stopped: a warning" in capsys.readouterr().err
    assert not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in logging.getLogger().handlers)


def _metrics_line(iteration, session):
    return json.dumps({"iteration": iteration, "branch": 0, "session": session, "time": 1e9 + iteration,
                       "loss": 0.5, "probe_d": -1.0, "diversity": 0.3, "lr": 0.002}) + "\n"


def test_metrics_compaction_keeps_the_journey_as_it_stands_thinning_only_the_old_part(tmp_path):
    path = tmp_path / "metrics.jsonl"
    # a first session to 2999, a resume from the snapshot at 2000 (its future abandoned), on to 5999
    path.write_text("".join(_metrics_line(i, 1) for i in range(3000))
                    + "".join(_metrics_line(i, 2) for i in range(2000, 6000)) + '{"iteration": 60')
    before = read_metrics(path)
    limit = 200_000
    assert compact_metrics(path, limit) and path.stat().st_size <= limit * KEEP_SHARE
    after = read_metrics(path)
    by_iteration = {line["iteration"]: line for line in before}
    assert all(by_iteration[line["iteration"]] == line for line in after)  # nothing invented, the resumed lines
    iterations = [line["iteration"] for line in after]
    assert iterations[0] == 0 and iterations[-1] == 5999
    tail = iterations[-100:]
    assert tail == list(range(5900, 6000))  # the newest stretch at full density
    assert [line["session"] for line in after if 2000 <= line["iteration"] < 3000] == \
        [2] * sum(2000 <= i < 3000 for i in iterations)  # the abandoned future is gone
    assert not compact_metrics(path, limit)  # within its budget now: left alone


def test_events_compaction_keeps_the_start_and_the_newest(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"event": "start" if n == 0 else "command", "n": n}) + "\n"
                            for n in range(5000)))
    assert compact_events(path, 20_000)
    lines = [json.loads(text) for text in path.read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[-1]["n"] == 4999 and path.stat().st_size <= 10_000
    assert [line["n"] for line in lines[1:]] == list(range(lines[1]["n"], 5000))


def test_the_engine_keeps_its_journal_within_journal_mb(tmp_path):
    budget_mb = 0.01
    engine = Engine(create_stylegan1(channels=[32, 32, 16, 16], code_dim=32, n_mlp=2),
                    EngineConfig(device="cpu", journal_mb=budget_mb, probe_every=1000, snapshot_every=1000),
                    tmp_path)
    try:
        for _ in range(120):
            engine.step()
    finally:
        engine.close(snapshot=False)
    size = sum((tmp_path / name).stat().st_size for name in ("metrics.jsonl", "events.jsonl"))
    assert size <= budget_mb * 2**20
    iterations = [line["iteration"] for line in read_metrics(tmp_path / "metrics.jsonl")]
    assert iterations[0] == 0 and iterations[-1] == 120 and iterations == sorted(iterations)


def test_an_installation_refused_the_run_folder_leaves_the_holders_status_alone(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from installation.models import load_gan, save_gan

    checkpoint = tmp_path / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), checkpoint)
    run_dir = tmp_path / "run"
    holder = Engine(load_gan(checkpoint, require_discriminator=True), EngineConfig(device="cpu"), run_dir)
    try:
        holder.store.flush()  # its first snapshot on disk: the holder's own writes are not the refused start's
        write_status(run_dir, a_status(iteration=777))  # what the installation holding the folder last wrote
        before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
        done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "run_installation.py"),
                               "--checkpoint", str(checkpoint), "--headless", "--size", "64x48", "--device", "cpu",
                               "--no-osc", "--http-port", "0", "--seconds", "60", "--run-dir", str(run_dir)],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        after = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    finally:
        holder.close(snapshot=False)
    # held for now (a journey, another installation): 75, which the service retries; nothing in it touched
    assert done.returncode == 75 and "another installation or journey is running on it" in done.stderr, done.stderr
    assert after == before


def test_a_fallback_folder_that_another_user_could_have_planted_is_not_used(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "tmp" / f"uncanny-{os.getuid()}").symlink_to(tmp_path / "elsewhere")  # there before us
    said = []
    checks = RemoteChecks(tmp_path / "gone", LogsConfig(thumbnail_minutes=0.0), said.append, now=0.0)
    checks.tick(0.0, a_status, lambda: None)
    assert "nor can" in said[0] and "not this user's own folder" in said[0]
    assert not list((tmp_path / "elsewhere").iterdir())


def test_the_log_on_a_read_only_run_folder_drops_its_lines_quietly_and_writes_again_once_it_can(tmp_path, capfd,
                                                                                                 read_only):
    logger = logging.getLogger("installation.test")
    (tmp_path / "logs").mkdir()
    read_only.on(tmp_path)
    with log_file(tmp_path, LogsConfig()) as path:
        logger.info("not written: the folder is read-only")
        logger.warning("still on stderr")
        read_only.off(tmp_path)
        logger.info("written again")
    err = capfd.readouterr().err
    assert "still on stderr" in err and "Logging error" not in err and "Traceback" not in err
    text = path.read_text()
    assert "written again" in text and "not written" not in text
