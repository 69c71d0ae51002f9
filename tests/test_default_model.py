"""The embedded default model as shipped: loaded like any user file, used wherever no checkpoint is given."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from installation.cli import main
from installation.models import default_checkpoint, load_gan
from installation.models import config as models_config

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "installation" / "assets"


def run_cli(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=180)


def test_the_default_and_its_earlier_stage_load_with_their_discriminators_within_budget():
    assert default_checkpoint() == ASSETS / "default.pt"
    files = sorted(ASSETS.glob("default*.pt"))
    assert [p.name for p in files] == ["default-32px.pt", "default.pt"]
    assert sum(p.stat().st_size for p in files) <= 25 * 1000**2
    gan = load_gan(default_checkpoint(), require_discriminator=True)
    assert (gan.arch, gan.format, gan.resolution) == ("stylegan1", "uncanny", 64)
    assert gan.journey_lr is not None and 0 < gan.journey_lr < 1e-3  # small models travel fast (README)
    assert load_gan(ASSETS / "default-32px.pt", require_discriminator=True).resolution == 32
    stored = torch.load(default_checkpoint(), weights_only=True)
    assert "random-face" in stored["meta"]["data"]["source"] and "non-commercial" in stored["meta"]["data"]["licence"]


def test_its_faces_vary_and_stay_in_the_picture_range():
    gan = load_gan(default_checkpoint(), require_discriminator=True)
    with torch.no_grad():
        z = torch.randn(16, gan.latent_dim, generator=torch.Generator().manual_seed(0))
        faces = gan.generate(z, gan.make_noise(16, torch.Generator().manual_seed(1)), truncation=0.7)
    assert faces.shape == (16, 3, 64, 64)
    assert (faces.abs() > 1).float().mean() < 0.05  # a trained G, not the wild colours of an early one
    spread = (faces[:, None] - faces[None]).abs().mean((2, 3, 4))  # mean absolute difference between pairs
    assert spread[~torch.eye(16, dtype=torch.bool)].min() > 0.05  # no two latents give the same face
    from installation.engine import diversity
    assert diversity(faces) > 0.4  # 0.48 at truncation 0.7; the posterised end of its journey scores 0.18 to 0.24


def test_sample_and_inspect_use_it_when_no_checkpoint_is_given(tmp_path):
    done = run_cli("sample", "--seeds", "0-3", "--out", tmp_path / "grid.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape[:2] == (128, 128)  # 2 x 2 faces of 64 px
    done = run_cli("inspect", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "default.pt" in done.stdout and "(using 64)" in done.stdout and "fine-tuning possible" in done.stdout
    assert f"journey lr:      {load_gan(default_checkpoint()).journey_lr:g}" in done.stdout


def test_a_missing_default_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(models_config, "DEFAULT_CHECKPOINT", tmp_path / "gone.pt")
    for args in (["inspect"], ["journey", "--out", str(tmp_path / "j")], ["--headless", "--seconds", "1"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the embedded default model is missing" in err and "reinstall" in err, err
    assert not (tmp_path / "j").exists()


@pytest.mark.parametrize("extra", [[], ["--checkpoint", ASSETS / "default-32px.pt"]], ids=["default", "32px"])
def test_journey_runs_on_the_default_at_its_own_rate(tmp_path, extra):
    done = run_cli("journey", "--iterations", "2", "--every", "1", "--rows", "1", "--out", tmp_path / "j",
                   *extra, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rate = load_gan(extra[1] if extra else default_checkpoint()).journey_lr  # each stage carries its own
    assert f"iteration 2 at lr {rate:g}:" in done.stdout
    assert (tmp_path / "j" / "contact_sheet.png").exists()
