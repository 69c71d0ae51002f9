"""The train command at tiny size: outputs, bit-identical resume across processes, refusals; schedule; ROC AUC."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from installation.cli import UsageError
from installation.models import load_gan
from installation.training.cli import add_train_parser, batch_arg, cmd_train, kimg_arg
from installation.training.data import TrainingError
from installation.training.evaluate import discriminator_auc, roc_auc
from installation.training.faces import procedural_faces
from installation.training.trainer import TrainConfig, default_channels

ROOT = Path(__file__).resolve().parents[1]
# 8 px then 16 px, 100 images per phase, batch 8: 400 images = 50 steps, a few seconds on one thread.
# on the CPU on every machine: bit-identical runs need its deterministic kernels (a GPU's cuDNN autotuning is not)
TINY = ["--resolution", "16", "--channels", "32,32,16", "--code-dim", "32", "--n-mlp", "2",
        "--kimg-per-phase", "0.1", "--batch", "8", "--sample-every-kimg", "0.2", "--seed", "3", "--device", "cpu"]
WEIGHTS = ("generator", "g_running", "discriminator")


def run_train(*args):
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "train", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def train_in_process(*args) -> None:
    """The same parser and handler without a new interpreter, for refusals that happen before any training."""
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    parsed = parser.parse_args(["train", *map(str, args)])
    parsed.handler(parsed)


def one_error_line(result, code: int = 2) -> str:
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "faces.npz"
    np.savez_compressed(path, images=procedural_faces(96, seed=0, resolution=16))
    path.with_suffix(".json").write_text('{"source": "procedural", "licence": "test faces"}')
    return path


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """One uninterrupted run, shared by the tests below."""
    out = tmp_path_factory.mktemp("reference")
    result = run_train("--data", data, "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    assert "finished at 0.4 of 0.4 kimg, 50 steps" in result.stdout
    assert re.search(r"train \[#+\] 0\.4/0\.4 kimg \| 16px", result.stderr)  # the progress line
    return out


def test_a_run_writes_checkpoint_samples_and_loadable_stage_files(reference):
    ckpt = checkpoint(reference)
    assert ckpt["images_seen"] == 400 and ckpt["iteration"] == 50
    assert ckpt["config"]["channels"] == [32, 32, 16] and ckpt["config"]["batch"] == [[8, 8], [16, 8]]
    assert sorted(p.name for p in (reference / "samples").iterdir()) == ["kimg000000.png"]  # sub-kimg ticks share
    with Image.open(reference / "samples" / "kimg000000.png") as grid:
        assert grid.size == (8 * 16, 2 * 16) and np.asarray(grid).std() > 5

    for resolution, trained in [(8, (4, 8)), (16, (4, 8, 16))]:
        gan = load_gan(reference / f"stage-{resolution}px.pt", require_discriminator=True)
        assert gan.format == "uncanny" and gan.resolution == resolution and gan.trained_resolutions == trained
        with torch.no_grad():
            images = gan.generate(torch.randn(3, 32))
            assert images.shape == (3, 3, resolution, resolution) and torch.isfinite(images).all()
            assert gan.discriminate(images).shape == (3,)
    meta = torch.load(reference / "stage-16px.pt", weights_only=True)["meta"]
    assert meta["kimg"] == 0.4 and meta["data"]["licence"] == "test faces"
    # The stage files hold the EMA and the raw generator, as training left them (fp16 rounding aside).
    for use_ema, name in [(True, "g_running"), (False, "generator")]:
        final = load_gan(reference / "stage-16px.pt", use_ema=use_ema)
        for key, value in final.generator.state_dict().items():
            assert torch.allclose(value, ckpt[name][key], rtol=1e-3, atol=1e-3), (name, key)


def test_interrupted_and_resumed_run_is_bit_identical(data, reference, tmp_path):
    first = run_train("--data", data, "--out", tmp_path, *TINY, "--max-steps", 9)
    assert first.returncode == 0, first.stderr
    assert "stopped after 9 steps" in first.stdout
    assert checkpoint(tmp_path)["images_seen"] == 72 and not (tmp_path / "stage-16px.pt").exists()

    second = run_train("--data", data, "--out", tmp_path, "--device", "cpu")  # settings come from the checkpoint
    assert second.returncode == 0, second.stderr
    assert "resuming at 0.1 kimg" in second.stderr and "finished" in second.stdout
    resumed, straight = checkpoint(tmp_path), checkpoint(reference)
    assert resumed["iteration"] == straight["iteration"] and torch.equal(resumed["rng"], straight["rng"])
    for name in WEIGHTS:
        assert all(torch.equal(resumed[name][k], straight[name][k]) for k in straight[name]), name
    moments = [c["d_optimizer"]["state"][0]["exp_avg_sq"] for c in (resumed, straight)]
    assert torch.equal(*moments)


def test_time_limit_stops_after_a_step_and_saves(data, tmp_path):
    result = run_train("--data", data, "--out", tmp_path, *TINY, "--max-minutes", "0.00001")
    assert result.returncode == 0, result.stderr
    assert "minute limit" in result.stdout and checkpoint(tmp_path)["iteration"] == 1


def test_resume_refuses_other_settings_or_other_data(data, reference, tmp_path):
    line = one_error_line(run_train("--data", data, "--out", reference, "--channels", "32,16,16"))
    assert "was started with --channels 32,32,16 but this run asks for 32,16,16" in line
    with pytest.raises(UsageError, match="started with --batch 8:8,16:8 but this run asks for 8:16,16:16"):
        train_in_process("--data", data, "--out", reference, "--batch", "16")
    with pytest.raises(UsageError, match="started with --kimg-per-phase 8:0.1,16:0.1 but this run asks for 8:0.1,16:0.2"):
        train_in_process("--data", data, "--out", reference, "--kimg-per-phase", "0.1,16:0.2")
    other = tmp_path / "other.npz"
    np.savez(other, images=procedural_faces(96, seed=1, resolution=16))
    with pytest.raises(UsageError, match="trained on other images"):
        train_in_process("--data", other, "--out", reference)
    with pytest.raises(UsageError, match="needs --out"):
        train_in_process("--data", data)
    with pytest.raises(UsageError, match="not a stage"):
        train_in_process("--data", data, "--out", tmp_path, *TINY, "--batch", "32:8")
    with pytest.raises(UsageError, match="needs 3 widths"):
        train_in_process("--data", data, "--out", tmp_path, *TINY, "--channels", "32,32")
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["--batch", "1"], "bad batch"),
    (["--channels", "32,x"], "bad channel list"),
    (["--resolution", "12"], "power of two"),
    (["--device", "gpu"], "invalid choice"),
    *([(["--device", "cuda"], "no CUDA device is available")] if not torch.cuda.is_available() else []),
    (["--kimg-per-phase", "0"], "bad --kimg-per-phase"),
    (["--kimg-per-phase", "0.1,12:5"], "bad --kimg-per-phase"),
])
def test_bad_flags_are_one_error_line_and_exit_2_or_75(data, tmp_path, cli, args, message):
    """In this process (the refusals of an existing run go through a real one, above and below)."""
    code, stderr = cli("train", "--data", data, "--out", tmp_path, *TINY, *args)
    # asking for CUDA where there is none: a CPU-only torch never will have it (2); a CUDA torch may, later (75)
    assert code == (75 if "cuda" in args and torch.version.cuda is not None else 2), stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], stderr
    assert not (tmp_path / "checkpoint.pt").exists()


def test_evaluate_prints_the_discriminator_auc(data, reference):
    result = run_train("--data", data, "--evaluate", reference / "stage-16px.pt", "--eval-count", 40)
    assert result.returncode == 0, result.stderr
    auc = float(re.search(r"D ROC AUC ([0-9.]+): 40 images", result.stdout).group(1))
    gan = load_gan(reference / "stage-16px.pt", require_discriminator=True)
    assert auc == pytest.approx(discriminator_auc(gan, procedural_faces(40, 0, 16)), abs=1e-4)


def test_parser_wiring_and_schedule():
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", "d.npz", "--out", "run", "--batch", "16,8:64"])
    assert args.handler is cmd_train and args.resolution is None  # unset: taken from a checkpoint on resume

    config = TrainConfig(resolution=32, channels=default_channels(32), kimg_per_phase=kimg_arg("0.1"),
                         batch=batch_arg("16,8:64"))
    assert config.stages == (8, 16, 32) and config.channels == (256, 256, 128, 64)
    assert config.batch == ((8, 64), (16, 16), (32, 16)) and config.total_images == 600
    assert config.schedule(0) == (0, 1.0)  # the first stage has no fade-in
    assert config.schedule(199) == (0, 1.0)
    assert config.schedule(200) == (1, 0.0) and config.schedule(250) == (1, 0.5)  # fade-in phase
    assert config.schedule(350) == (1, 1.0)  # stabilising phase
    assert config.schedule(10**6) == (2, 1.0)  # the last stage goes on until total_kimg
    assert default_channels(64) == (256, 256, 128, 64, 32)
    with pytest.raises(TrainingError, match="needs 3 widths"):
        TrainConfig(resolution=16, channels=(8, 8))

    # phases of their own length per resolution: 8 px 2 x 50, 16 px 2 x 100, 32 px 2 x 300 images
    config = TrainConfig(resolution=32, channels=default_channels(32), kimg_per_phase=kimg_arg("0.3,8:0.05,16:0.1"))
    assert config.kimg_per_phase == ((8, 0.05), (16, 0.1), (32, 0.3)) and config.total_images == 900
    assert config.schedule(99) == (0, 1.0) and config.schedule(100) == (1, 0.0) and config.schedule(150) == (1, 0.5)
    assert config.schedule(299) == (1, 1.0) and config.schedule(300) == (2, 0.0) and config.schedule(450) == (2, 0.5)
    assert config.schedule(899) == (2, 1.0) and config.schedule(10**6) == (2, 1.0)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_roc_auc_on_known_scores():
    assert roc_auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert roc_auc([0, 1], [2, 3, 4]) == 0.0
    assert roc_auc([1, 1, 1], [1, 1]) == 0.5
    pos, neg = np.array([0.2, 0.9, 0.5, 0.5]), np.array([0.5, 0.1, 0.3])
    pairs = (pos[:, None] > neg).mean() + 0.5 * (pos[:, None] == neg).mean()
    assert roc_auc(pos, neg) == pytest.approx(pairs)
    with pytest.raises(ValueError):
        roc_auc([], [1.0])
    with pytest.raises(ValueError):
        roc_auc([np.nan], [1.0])


def test_reals_fade_in_like_the_generator_does():
    """At alpha 0 a new G block contributes nothing: G shows its previous stage nearest-upsampled (2x2 blocks), so
    the reals D sees must be the same kind of picture, or D wins on blockiness alone."""
    from installation.models import create_stylegan1
    from installation.training.trainer import fade_in_reals

    real = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    coarse = fade_in_reals(real, 0.0)
    blocks = coarse.unfold(2, 2, 2).unfold(3, 2, 2)  # (2, 3, 4, 4, 2, 2)
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))  # constant 2x2 blocks ...
    assert torch.allclose(blocks[..., 0, 0], torch.nn.functional.avg_pool2d(real, 2))  # ... of the block mean
    assert torch.equal(fade_in_reals(real, 1.0), real)
    assert torch.allclose(fade_in_reals(real, 0.25), 0.75 * coarse + 0.25 * real)

    g = create_stylegan1((16, 16, 8), 16, 1, seed=0).generator
    fake = g(torch.randn(2, 16), step=2, alpha=0.0)  # 16 px from the 8 px block
    fake_blocks = fake.unfold(2, 2, 2).unfold(3, 2, 2)
    assert torch.allclose(fake_blocks, fake_blocks[..., :1, :1].expand_as(fake_blocks))
    assert fake.std() > 0.01  # a picture, not a constant


def test_a_new_block_starts_silent_so_its_fade_in_only_dims_the_previous_stage(tmp_path):
    from installation.training.trainer import Trainer

    config = TrainConfig(resolution=16, channels=(16, 16, 8), code_dim=16, n_mlp=1, kimg_per_phase=kimg_arg("0.1"),
                         batch=batch_arg("8"))
    trainer = Trainer(config, procedural_faces(16, seed=0, resolution=16), {}, tmp_path)
    trainer.enter_stage(1)  # 16 px, step 2
    for g in (trainer.g, trainer.g_ema):
        assert all(not p.any() for p in g.generator.to_rgb[2].parameters())
        assert any(p.any() for p in g.generator.to_rgb[1].parameters())  # the previous stage's is untouched
        z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
        noise = g.make_noise(2, 2, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            start, half = (g(z, noise=noise, step=2, alpha=a) for a in (0.0, 0.5))
        assert start.std() > 0.01 and torch.allclose(half, 0.5 * start, atol=1e-6)


def test_start_from_a_stage_file_goes_on_training_its_weights(data, reference, tmp_path):
    """--start-from: a new run takes G, EMA G and D (and the settings) of a stage file and trains on from its kimg."""
    from installation.training.trainer import Trainer, read_stage_file

    stage_file = read_stage_file(reference / "stage-16px.pt")
    config = TrainConfig.from_dict({**stage_file["meta"]["training"], "total_kimg": 0.5})
    trainer = Trainer(config, procedural_faces(16, seed=0, resolution=16), {}, tmp_path / "direct",
                      start_from=(reference / "stage-16px.pt", stage_file))
    assert trainer.images_seen == 400 and trainer.images_trained == 0
    for module, name in [(trainer.g, "generator"), (trainer.g_ema, "g_ema"), (trainer.d, "discriminator")]:
        for key, value in module.state_dict().items():
            assert torch.equal(value, stage_file[name][key].float()), (name, key)

    assert any(p.any() for p in trainer.g.generator.to_rgb[2].parameters())  # mid-stage: the trained block stays

    # In chunks: the first stops after one step (its starting picture saved), the same command again resumes.
    out, command = tmp_path / "more", ["--data", data, "--start-from", reference / "stage-16px.pt", "--total-kimg", 0.5]
    first = run_train("--out", out, *command, "--max-steps", 1)
    assert first.returncode == 0, first.stderr
    assert "starting from" in first.stderr and "at 0.4 kimg" in first.stderr and "stopped after 1 steps" in first.stdout
    assert (out / "samples" / "kimg000000.png").exists() and not (out / "stage-16px.pt").exists()
    second = run_train("--out", out, *command)
    assert second.returncode == 0, second.stderr
    assert "resuming at 0.4 kimg" in second.stderr
    assert "finished at 0.5 of 0.5 kimg, 13 steps" in second.stdout  # 100 more images at batch 8
    meta = torch.load(out / "stage-16px.pt", weights_only=True)["meta"]
    assert meta["kimg"] == 0.504 and meta["started_from"] == {"file": "stage-16px.pt", "images": 400}

    # A file saved at the end of a stage (by the step that crossed it, so up to a batch past the boundary): the next
    # block is silenced before it fades in, as in an unbroken run.
    early = read_stage_file(reference / "stage-8px.pt")
    for kimg in (0.2, 0.224):
        early["meta"]["kimg"] = kimg
        trainer = Trainer(TrainConfig.from_dict(early["meta"]["training"]), procedural_faces(16, seed=0, resolution=16),
                          {}, tmp_path / "boundary", start_from=(reference / "stage-8px.pt", early))
        assert trainer.config.schedule(trainer.images_seen)[0] == 1
        assert all(not p.any() for p in trainer.g.generator.to_rgb[2].parameters()), kimg


def test_start_from_refusals_are_one_line(data, reference, tmp_path):
    from installation.models import save_gan

    with pytest.raises(UsageError, match="already holds a run; leave out --start-from"):
        train_in_process("--data", data, "--out", reference, "--start-from", reference / "stage-16px.pt")
    with pytest.raises(UsageError, match="already at 0.4 kimg; pass --total-kimg above"):
        train_in_process("--data", data, "--out", tmp_path / "a", "--start-from", reference / "stage-16px.pt")
    with pytest.raises(UsageError, match="was started with --channels 32,32,16 but this run asks for 32,16,16"):
        train_in_process("--data", data, "--out", tmp_path / "a", "--start-from", reference / "stage-16px.pt",
                         "--channels", "32,16,16", "--total-kimg", "1")
    ema_only = tmp_path / "ema-only.pt"
    gan = load_gan(reference / "stage-16px.pt", require_discriminator=True)
    save_gan(gan, ema_only, meta=torch.load(reference / "stage-16px.pt", weights_only=True)["meta"])
    with pytest.raises(UsageError, match="holds no generator weights, which going on training needs"):
        train_in_process("--data", data, "--out", tmp_path / "a", "--start-from", ema_only, "--total-kimg", "1")
    no_meta = tmp_path / "plain.pt"
    save_gan(gan, no_meta)
    with pytest.raises(UsageError, match="not a stage file written by train"):
        train_in_process("--data", data, "--out", tmp_path / "a", "--start-from", no_meta, "--total-kimg", "1")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for unreadable in (tmp_path / "junk.pt", tmp_path):  # a directory too
        with pytest.raises(UsageError, match="cannot read this file"):
            train_in_process("--data", data, "--out", tmp_path / "a", "--start-from", unreadable)
    stored = torch.load(reference / "stage-16px.pt", weights_only=True)
    odd = tmp_path / "odd.pt"
    for meta, message in [({"kimg": "0.4"}, "not a number of images"), ({"kimg": float("nan")}, "not a number"),
                          ({"training": {**stored["meta"]["training"], "kimg_per_phase": 150.0}},
                           "training settings this release cannot use"),
                          ({"training": {"resolution": 16}}, "training settings this release cannot use"),
                          ({"data": None, "training": {**stored["meta"]["training"], "channels": [8, 8, 8]}},
                           "its weights do not fit the settings it records")]:
        torch.save({**stored, "meta": {**stored["meta"], **meta}}, odd)
        with pytest.raises(UsageError, match=message):
            train_in_process("--data", data, "--out", tmp_path / "a", "--start-from", odd, "--total-kimg", "1")
    with pytest.raises(UsageError, match="--evaluate scores a checkpoint and --start-from trains"):
        train_in_process("--data", data, "--evaluate", reference / "stage-16px.pt", "--start-from", odd)
    line = one_error_line(run_train("--data", data, "--out", tmp_path / "a", "--start-from", reference / "stage-16px.pt",
                                    "--batch", "16", "--total-kimg", "1"))
    assert "leave it out to go on with the file's settings" in line
    assert not (tmp_path / "a").exists()
