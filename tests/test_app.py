"""The live installation end to end: a real engine process, shared-memory frames, a real GLFW window (Xvfb)."""

import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest

from installation.engine.config import cuda_device_count
from installation.models import create_stylegan1, save_gan

ROOT = Path(__file__).resolve().parents[1]
CUDA_DEVICES = cuda_device_count()  # the refusals of a missing GPU read differently on a machine with one


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), path)
    return path


def run_window_scenario(name, checkpoint, run_dir):
    """Window tests run in a child process: once a process has used EGL (the headless tests do), Mesa refuses GLX
    in it. The child (tests/window_scenarios.py) asserts and exits non-zero with the reason."""
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "window_scenarios.py"), name, str(checkpoint),
                             str(run_dir)], capture_output=True, text=True, timeout=240,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_window_shows_the_generator_while_it_trains_and_survives_an_engine_kill(x_display, tiny_checkpoint,
                                                                                 tmp_path):
    run_window_scenario("train-and-kill", tiny_checkpoint, tmp_path / "run")


def test_walk_frames_move_between_refreshes_while_paused(x_display, tiny_checkpoint, tmp_path):
    run_window_scenario("walk-moves", tiny_checkpoint, tmp_path / "run")


def test_fullscreen_key_toggles_the_window(x_display, tiny_checkpoint, tmp_path):
    run_window_scenario("fullscreen-toggle", tiny_checkpoint, tmp_path / "run")


def test_headless_run_writes_video_and_png(tiny_checkpoint, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(tiny_checkpoint), "--headless",
         "--seconds", "4", "--size", "160x120", "--run-dir", str(tmp_path / "run"), "--device", "cpu", "--no-osc",
         "--http-port", "0"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (video,) = (tmp_path / "run").glob("live-*.mp4")
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames >= 30  # 4 s at 30 fps, less the start-up of the engine process
    (picture,) = (tmp_path / "run").glob("last_frame-*.png")
    assert picture.stat().st_size > 0
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") > 0


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "{tmp}/missing.pt"], "no such file"),
    (["--checkpoint", "{g_only}"], "no discriminator"),
    (["--preset", "nightclub"], "preset 'nightclub' not found"),
    (["--size", "10x10"], "size must be WIDTHxHEIGHT"),
    (["--seconds", "0"], "expected a positive number"),
    (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["--device", "cuda:7"], "no CUDA device is available here" if not CUDA_DEVICES else "this machine has"),
    (["--checkpoint", "{ckpt}", "--preset", "{raw_preset}"], "holds only the moving-average generator"),
    (["--preset", "{moved_preset}"], "moved.toml: [model] checkpoint: {tmp}/moved.pt: no such file"),
])
def test_bad_run_options_are_one_line(tiny_checkpoint, tmp_path, cli, args, message):
    """In this process (a real one shows the same path below: the --monitor warning's missing checkpoint)."""
    import torch

    from installation.models import load_gan

    gan = load_gan(tiny_checkpoint)
    torch.save(gan.generator.state_dict(), tmp_path / "g_only.model")
    (tmp_path / "raw.toml").write_text("[model]\nraw_generator = true\n")
    (tmp_path / "moved.toml").write_text(f"[model]\ncheckpoint = '{tmp_path / 'moved.pt'}'\n")
    args = [a.format(tmp=tmp_path, g_only=tmp_path / "g_only.model", ckpt=tiny_checkpoint,
                     raw_preset=tmp_path / "raw.toml", moved_preset=tmp_path / "moved.toml") for a in args]
    message = message.format(tmp=tmp_path)
    code, stderr = cli("--headless", "--seconds", "1", "--run-dir", tmp_path / "run", "--osc-port", "0",
    "--http-port", "0", *args)
    # asking for CUDA where there is none: a CPU-only torch never will have it (2); a CUDA torch may, later (75)
    assert code == (75 if "cuda:7" in args and torch.version.cuda is not None else 2), stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], stderr
    assert not (tmp_path / "run").exists()  # a refused start writes nothing


@pytest.mark.parametrize("mode, reason", [("--headless", "--headless"),
                                          ("--windowed", "a window (--windowed, or fullscreen = false in the preset)")])
def test_monitor_with_a_window_or_headless_says_it_is_ignored(tmp_path, mode, reason):
    # a missing checkpoint ends the run right after the flags are read: the warning comes first
    result = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), mode, "--monitor", "9", "--no-osc",
                             "--http-port", "0",
                             "--checkpoint", str(tmp_path / "missing.pt")], capture_output=True, text=True, timeout=300)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [f"uncanny: warning: --monitor 9 is ignored with {reason}; it picks the screen for "
                        "full-screen"], result.stderr
    assert result.returncode == 2 and "no such file" in result.stderr


def test_shared_memory_sizes_read_sensibly():
    from installation.frames import SharedMemoryError, check_shared_memory
    from installation.messages import size_text as _size_text

    assert [_size_text(n) for n in (300 * 1024, 36_864, 3 * 2**20 + 2**19, 5 * 2**30)] == [
        "300.0 KB", "36.0 KB", "3.5 MB", "5.0 GB"]  # a 32 px 2 x 2 view needs 36 KB, not "0 MB"
    with pytest.raises(SharedMemoryError, match=r"need 576\.0 GB of shared memory but /dev/shm has [0-9.]+ [KMG]B "
                                                r"free"):
        check_shared_memory(3 * 8**2 * (2**15) ** 2 * 3)


def test_quick_start_command_runs_the_embedded_model(tmp_path):
    """`run_installation.py` alone, with no display: the embedded default model, headless, into runs/default/."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "--seconds", "3", "--size", "160x120",
                             "--device", "cpu", "--osc-port", "0", "--http-port", "0"], cwd=tmp_path, env=env,
                             capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "running headless" in result.stderr and "default.pt (uncanny, 64 px)" in result.stderr
    (video,) = (tmp_path / "runs" / "default").glob("live-*.mp4")
    assert video.stat().st_size > 0
