"""`loop` and `film` on a real (tiny) run folder: frame-exact seamless loops, the journey film without jumps at
snapshot boundaries, the command-line contract the live recording relies on, and bad input as one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from installation.cli import main
from installation.engine import Engine, EngineConfig
from installation.models import create_stylegan1, load_gan
from installation.presets import load_preset
from installation.recording import claim_partial, partial_path
from installation.exports.videos import keyframe_interval, loop_picture

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A journey of 15 steps with snapshots at 0, 5, 10 and 15; a high rate so the weights visibly move."""
    folder = tmp_path_factory.mktemp("run")
    engine = Engine(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2),
                    EngineConfig(device="cpu", snapshot_every=5, batch=2, lr=0.01), folder)
    for _ in range(15):
        engine.step()
    engine.close()
    return folder


@pytest.fixture(scope="module")
def still_walk(tmp_path_factory) -> Path:
    """A preset whose walk hardly moves (truncation near 0: every z maps to about the mean w), so a film's change
    from frame to frame is the weights' alone."""
    path = tmp_path_factory.mktemp("preset") / "still.toml"
    path.write_text("[walk]\nkeyframes = 2\ntruncation = 0.001\n")
    return path


def decoded(path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]).astype(np.int16)


def steps(frames: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))


def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_keyframe_intervals_divide_the_loop():
    assert keyframe_interval(600, 60) == 300  # 5 s
    assert keyframe_interval(24, 24) == 24
    assert keyframe_interval(7 * 61, 30) == 61  # nearest 5 s among the divisors of 427
    assert keyframe_interval(601, 60) == 601  # a prime count: one keyframe, at every wrap
    for frames, fps in ((600, 60), (450, 30), (1000, 25)):
        assert frames % keyframe_interval(frames, fps) == 0


def test_loop_command_contract_exact_frames_keyframes_and_the_path_last(run_dir, tmp_path):
    out = tmp_path / "loop.mp4"
    done = run_cli("loop", "--run-dir", run_dir, "--iteration", 12, "--seconds", 1.5, "--fps", 16, "--size", "64x48",
                   "--codec", "h264", "--grid", 2, "--walk-seed", 3, "--threads", 1, "--out", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(out.resolve())
    assert "it00000010.pt (iteration 10)" in done.stderr  # the snapshot at or before 12
    assert "loop     24/24 [####################] 100.0%" in done.stderr and "Traceback" not in done.stderr
    assert "24 frames, 1.5 s at 16 fps" in done.stdout and "seam (last frame to first)" in done.stdout
    assert imageio_ffmpeg.count_frames_and_secs(str(out)) == (24, 1.5)
    frames = decoded(out)
    assert frames.shape == (24, 48, 64, 3)
    step = steps(frames)
    wrap = np.abs(frames[-1] - frames[0]).mean()  # what a player shows when it repeats the file
    assert wrap <= 1.5 * np.median(step), (wrap, np.median(step))
    assert step.min() > 0  # it moves: no frame is repeated


def test_loop_frame_n_is_frame_0_again(run_dir):
    gan = load_gan(run_dir / "snapshots" / "it00000015.pt")
    preset = load_preset("default").replace("display", width=64, height=64)
    first = loop_picture(gan, preset, 2.0, False, 0.0).astype(np.int16)
    again = loop_picture(gan, preset, 2.0, False, 2.0).astype(np.int16)  # frame N = S * fps
    middle = loop_picture(gan, preset, 2.0, False, 1.0).astype(np.int16)
    assert np.abs(again - first).max() <= 1  # float noise at most
    assert np.abs(middle - first).mean() > 5  # and the loop does go somewhere


def test_film_moves_through_the_journey_without_jumps_at_snapshots(run_dir, still_walk, tmp_path, capsys):
    out = tmp_path / "film.mp4"
    assert main(["film", "--run-dir", str(run_dir), "--seconds", "3", "--fps", "10", "--size", "48x48",
                 "--preset", str(still_walk), "--no-caption", "--threads", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(out.resolve())
    frames = decoded(out)
    assert len(frames) == 30
    step = steps(frames)
    # snapshots 0, 5, 10, 15 fall at frames 0, ~9.7, ~19.3, 29: weights that jumped there (stepwise) would show
    # near-zero steps between them and large ones at the boundaries
    assert step.max() <= 3 * np.median(step), step.round(2)
    assert np.median(step) > 0.1
    first = load_gan(run_dir / "snapshots" / "it00000000.pt")
    newest = load_gan(run_dir / "snapshots" / "it00000015.pt")
    z = torch.zeros(1, first.latent_dim)
    assert np.abs(frames[-1] - frames[0]).mean() > 4 * np.median(step)  # the journey goes somewhere
    assert not torch.equal(first.generate(z), newest.generate(z))


def test_film_caption_names_the_iteration_in_the_corner(run_dir, tmp_path, capsys):
    shown, plain = tmp_path / "caption.mov", tmp_path / "plain.mov"
    common = ["--run-dir", str(run_dir), "--seconds", "0.5", "--fps", "8", "--size", "128x128", "--codec", "prores",
              "--threads", "1"]
    assert main(["film", *common, "--out", str(shown)]) == 0
    assert main(["film", *common, "--no-caption", "--out", str(plain)]) == 0
    with_text, without = decoded(shown), decoded(plain)
    corner = np.abs(with_text[:, :20, :60] - without[:, :20, :60]).mean()
    rest = np.abs(with_text[:, 40:, :] - without[:, 40:, :]).mean()
    assert corner > 10 and rest < 1


@pytest.mark.parametrize("args, message", [
    (["loop", "--seconds", "1", "--run-dir", "{missing}"], "no such run folder"),
    (["loop", "--seconds", "1", "--run-dir", "{empty}"], "holds no snapshots"),
    (["film", "--run-dir", "{empty}"], "holds no snapshots"),
    (["loop", "--seconds", "1", "--size", "66x66", "--codec", "hap", "--out", "{folder}/out.mov"],
     "divisible by 4; use 64x64 or 68x68"),
    (["loop", "--seconds", "1", "--codec", "prores"], "prores writes .mov files; name it out.mov"),
    (["loop", "--seconds", "1", "--iteration", "5"], "give --run-dir too"),
    (["loop", "--seconds", "1", "--fps", "500"], "fps must be"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(missing=tmp_path / "nope", empty=tmp_path / "empty", folder=tmp_path) for a in args]
    assert main(args + ([] if "--out" in args else ["--out", str(tmp_path / "out.mp4")])) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not list(tmp_path.glob("out.*"))


def test_an_unknown_codec_or_size_is_refused_by_the_parser(tmp_path, capsys):
    for args in (["--codec", "vp9"], ["--size", "big"]):
        with pytest.raises(SystemExit) as stop:
            main(["loop", "--seconds", "1", *args, "--out", str(tmp_path / "x.mp4")])
        assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'vp9' (choose from 'h264', 'prores', 'hap', 'hap_q')" in err
    assert "size must be WIDTHxHEIGHT" in err


def test_an_existing_file_is_never_overwritten_but_a_claimed_name_is_used(tmp_path, capsys):
    taken, writing = tmp_path / "taken.mp4", tmp_path / "writing.mp4"
    taken.write_bytes(b"someone's loop")
    (tmp_path / "writing.mp4.partial").write_bytes(b"another export's frames")
    for out in (taken, writing):
        assert main(["loop", "--seconds", "0.25", "--fps", "8", "--size", "32x32", "--out", str(out)]) == 2
    assert taken.read_bytes() == b"someone's loop"
    assert (tmp_path / "writing.mp4.partial").read_bytes() == b"another export's frames" and not writing.exists()
    claimed = claim_partial(tmp_path, "loop", ".mp4")  # as the installation's background export claims its name
    assert not claimed.exists() and partial_path(claimed).stat().st_size == 0
    assert main(["loop", "--seconds", "0.25", "--fps", "8", "--size", "32x32", "--out", str(claimed)]) == 0
    assert imageio_ffmpeg.count_frames_and_secs(str(claimed)) == (2, 0.25) and not partial_path(claimed).exists()


def test_sigterm_ends_an_export_between_frames_with_a_playable_file(tmp_path):
    out = tmp_path / "long.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    export = subprocess.Popen([sys.executable, str(ROOT / "run_installation.py"), "loop", "--seconds", "60",
                               "--fps", "16", "--size", "64x48", "--threads", "1", "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while "/960 [" not in (line := export.stderr.readline()) and line:
        pass  # until the first progress line: frames are being encoded
    export.send_signal(signal.SIGTERM)
    _, err = export.communicate(timeout=300)
    assert export.returncode == 1, err
    assert "stopped by SIGTERM after" in err and "of 960 frames" in err and "Traceback" not in err
    frames = imageio_ffmpeg.count_frames_and_secs(str(out))[0]
    assert 1 <= frames < 960 and not list(tmp_path.glob("*.partial"))
