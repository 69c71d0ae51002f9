"""The headless `journey` command, its outputs and flags, and the engine benchmark's smoke run."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from installation.cli import main
from installation.engine.config import cuda_device_count
from installation.journey import journey_columns, read_metrics
from installation.models import create_stylegan1, save_gan

# asking for CUDA where there is none: a CPU-only torch never will have it (2); a CUDA torch may, later (75)
# a CUDA device asked for that is not there: a CPU-only torch never will have it, nor a box whose GPUs are too few
# (2); a CUDA torch on a box with none now may have one later, when the driver is up (75)
NO_CUDA_EXIT = 2 if torch.version.cuda is None or cuda_device_count() else 75

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2), path)
    return path


def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_journey_writes_metrics_snapshots_contact_sheet_and_plot_then_resumes(tmp_path, checkpoint, capsys):
    out = tmp_path / "journey"
    done = run_cli("journey", "--checkpoint", checkpoint, "--iterations", 30, "--every", 10, "--out", out,
                   "--device", "cpu", "--snapshot-every", 10, "--rows", 3, "--loss", "softplus", "--batch", 2)
    assert done.returncode == 0, done.stderr
    assert "journey     30/30 [####################] 100.0%" in done.stderr  # plain text progress
    assert "probe D score" in done.stdout and "Traceback" not in done.stderr
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["iteration"] for m in metrics] == list(range(31))
    assert {m["objective"] for m in metrics} == {"softplus"} and {m["batch"] for m in metrics} == {2}
    assert metrics[30]["probe_d"] < metrics[0]["probe_d"]
    assert sorted(p.name for p in (out / "snapshots").glob("*.pt")) == \
        [f"it{i:08d}.pt" for i in (0, 10, 20, 30)] + ["optimizer.pt"]  # the rewind points, and 30's Adam moments
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size == (4 * 34 + 2, 14 + 3 * 34 + 2)  # 4 columns (0, 10, 20, 30) x 3 rows of 32 px + padding
    assert Image.open(out / "journey.png").size == (960, 720)

    # The same command on the same folder resumes (in-process here, to spare a second torch start-up); a rate
    # given again is what the user wants from here on, while the loss and batch not given stay the run's.
    capsys.readouterr()
    assert main(["journey", "--checkpoint", str(checkpoint), "--iterations", "40", "--every", "10",
                 "--out", str(out), "--device", "cpu", "--rows", "4", "--lr", "1e-4"]) == 0
    assert ("resumed from iteration 30 with the run's own seed; --lr 0.0001 from here (the run was at 0.001)"
            in capsys.readouterr().out)
    assert Image.open(out / "contact_sheet.png").size == (5 * 34 + 2, 14 + 3 * 34 + 2)  # rows all columns have
    metrics = read_metrics(out / "metrics.jsonl")
    assert metrics[-1]["iteration"] == 40 and {m["lr"] for m in metrics[31:]} == {1e-4}
    assert {m["objective"] for m in metrics[31:]} == {"softplus"} and {m["batch"] for m in metrics[31:]} == {2}

    # Asking for fewer iterations than the folder holds changes nothing and says why.
    sheet = (out / "contact_sheet.png").read_bytes()
    assert main(["journey", "--checkpoint", str(checkpoint), "--iterations", "20", "--every", "10",
                 "--out", str(out), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"uncanny: error: {out} is already at iteration 40, past --iterations 20; ask for more "
                            "than 40 to go on, or pick another --out\n") and "/20" not in captured.err
    assert (out / "contact_sheet.png").read_bytes() == sheet and read_metrics(out / "metrics.jsonl")[-1] == metrics[-1]


def test_bad_flags_exit_2_with_one_clear_line(tmp_path, checkpoint, capsys):
    no_d = create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2)
    no_d.discriminator = None
    save_gan(no_d, tmp_path / "no-d.pt")
    ok = ["journey", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x"), "--device", "cpu"]
    cases = {
        ("--batch", "0"): "batch must be an integer from 1 to 64",  # the engine's own rule, as for presets and OSC
        ("--batch", "65"): "batch must be an integer from 1 to 64",
        ("--lr", "-1"): "expected a number >= 0", ("--lr", "fast"): "expected a number >= 0",
        ("--lr", "2"): "lr must be 0 (the model's own rate) or a number > 0 and <= 1",
        ("--loss", "hinge"): "invalid choice: 'hinge'", ("--iterations", "0"): "expected a whole number >= 1",
        ("--every", "x"): "expected a whole number >= 1", ("--seed", "-3"): "expected a whole number >= 0",
        ("--rows", "99"): "at most 16 contact-sheet rows", ("--every", "1"): "more than 64 contact-sheet columns",
        ("--device", "cuda:99"): "this machine has" if cuda_device_count() else "no CUDA device is available",
        ("--resolution", "100"): "power of two",
        ("--resolution", "64"): "64 px is not available",
    }
    for extra, expected in cases.items():
        args = ok + list(extra)
        try:
            code = main(args)
        except SystemExit as exit_:  # argparse's own exit
            code = exit_.code
        err = capsys.readouterr().err
        error_lines = [line for line in err.splitlines() if "error" in line]  # argparse adds a usage line
        assert code == (NO_CUDA_EXIT if extra[1].startswith("cuda") else 2) and "Traceback" not in err, (extra, err)
        assert len(error_lines) == 1 and expected in error_lines[0], (extra, err)

    for args, expected in [(["journey", "--checkpoint", str(tmp_path / "no-d.pt")], "has no discriminator"),
                           (["journey", "--checkpoint", str(tmp_path / "missing.pt")], "no such file")]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and err.startswith("uncanny: error: ")
    assert not (tmp_path / "x").exists()

    done = run_cli("journey", "--checkpoint", checkpoint, "--batch", "0")  # a real process, real exit status
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith("got '0'")


def test_columns_and_metrics_reader(tmp_path):
    assert journey_columns(2000, 250) == [0, 250, 500, 750, 1000, 1250, 1500, 1750, 2000]
    assert journey_columns(25, 10) == [0, 10, 20, 25]
    lines = [{"iteration": 0, "loss": None}, {"iteration": 1, "loss": 5.0}, {"iteration": 2, "loss": 6.0},
             {"iteration": 1, "loss": 7.0}]  # a rollback repeated iteration 1
    text = "\n".join(map(json.dumps, lines)) + '\n{"iteration": 2, "lo'  # and a kill cut the last line
    (tmp_path / "metrics.jsonl").write_text(text)
    # the journey as it stands: the line at iteration 2 belonged to the future the rollback abandoned
    assert [m["loss"] for m in read_metrics(tmp_path / "metrics.jsonl")] == [None, 7.0]


def test_benchmark_quick_run(capsys):
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "benchmarks" / "bench_engine.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "device: cpu (" in out and "steps/s" in out and "snapshot" in out


def test_a_journey_on_the_folder_of_a_running_installation_is_a_start_to_try_later(tmp_path, checkpoint, cli):
    """The installation's engine restarts between a journey's steps and would find the folder taken: the journey
    stays out (exit 75, nothing written) while an installation holds the folder."""
    from installation.engine.runfolder import LIVE_LOCK, RunFolder

    run_dir = tmp_path / "run"
    live = RunFolder(run_dir)
    live.make()
    live.lock(LIVE_LOCK)  # as a running installation holds it
    try:
        code, stderr = cli("journey", "--checkpoint", checkpoint, "--iterations", "2", "--every", "1", "--out",
                           run_dir, "--device", "cpu")
    finally:
        live.release()
    assert code == 75, stderr
    assert f"run folder {run_dir}: an installation is running on it" in stderr and "Traceback" not in stderr
    assert sorted(path.name for path in run_dir.iterdir()) == [LIVE_LOCK]
