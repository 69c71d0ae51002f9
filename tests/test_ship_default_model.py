"""tools/ship_default_model.py on tiny stage files: what lands in the assets folder, and what it refuses."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from installation.models import CheckpointError, create_stylegan1, load_gan, save_gan

ROOT = Path(__file__).resolve().parents[1]


def ship(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "ship_default_model.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stages")
    files = {}
    for name, channels in (("64", (8, 8, 8, 8, 8)), ("32", (8, 8, 8, 8))):
        gan = create_stylegan1(channels, code_dim=8, n_mlp=1, seed=1)
        files[name] = folder / f"stage-{name}px.pt"
        save_gan(gan, files[name], raw_generator=create_stylegan1(channels, 8, 1, seed=2).generator, half=True,
                 meta={"kimg": 1.0})
    gan.discriminator = None
    files["no-d"] = folder / "no-d.pt"
    save_gan(gan, files["no-d"])
    return files


def test_ships_the_stages_with_their_journey_rate(stages, tmp_path):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "default-16px.pt").write_bytes(b"stale")  # a stage from an earlier ship
    done = ship(stages["64"], stages["32"], "--journey-lr", "3e-5", "--assets", assets)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in assets.iterdir()) == ["default-32px.pt", "default.pt"]
    assert "journey lr 3e-05" in done.stdout

    default = load_gan(assets / "default.pt", require_discriminator=True)
    assert (default.resolution, default.journey_lr) == (64, 3e-5)
    raw = load_gan(assets / "default.pt", use_ema=False)  # the default keeps its raw generator ...
    assert not torch.equal(raw.generator.state_dict()["generator.to_rgb.0.conv.weight_orig"],
                           default.generator.state_dict()["generator.to_rgb.0.conv.weight_orig"])
    earlier = load_gan(assets / "default-32px.pt", require_discriminator=True)
    assert (earlier.resolution, earlier.journey_lr) == (32, 3e-5)
    stored = torch.load(assets / "default-32px.pt", weights_only=True)
    assert stored["generator"] is None and stored["meta"]["kimg"] == 1.0  # ... the earlier stages do not
    with pytest.raises(CheckpointError, match="holds only the moving-average generator; load it without asking"):
        load_gan(assets / "default-32px.pt", use_ema=False)


@pytest.mark.parametrize("args, message", [
    (["no-d"], "has no discriminator"),
    (["32"], "is 32 px; the default model must be at least 64 px"),
    (["64", "64"], "two of the files are the same resolution"),
    (["missing"], "no such file"),
])
def test_refusals_are_one_line_and_leave_the_assets_alone(stages, tmp_path, args, message):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "default.pt").write_bytes(b"the shipped one")
    paths = {**stages, "missing": tmp_path / "missing.pt"}
    done = ship(*(paths[name] for name in args), "--journey-lr", "3e-5", "--assets", assets)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert [p.name for p in assets.iterdir()] == ["default.pt"]
    assert (assets / "default.pt").read_bytes() == b"the shipped one"


def test_each_stage_can_carry_its_own_rate(stages, tmp_path):
    done = ship(stages["64"], stages["32"], "--journey-lr", "1e-4,3e-5", "--assets", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "journey lr 0.0001, 3e-05" in done.stdout
    assert load_gan(tmp_path / "default.pt").journey_lr == 1e-4
    assert load_gan(tmp_path / "default-32px.pt").journey_lr == 3e-5


def test_the_journey_rate_is_required_and_checked(stages, tmp_path):
    for args in ([], ["--journey-lr", "0"], ["--journey-lr", "2"], ["--journey-lr", "1e-4,x"],
                 ["--journey-lr", "1e-4,3e-5"]):  # two rates for one file
        done = ship(stages["64"], *args, "--assets", tmp_path)
        assert done.returncode == 2 and "journey-lr" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert sum("error" in line for line in done.stderr.splitlines()) == 1, done.stderr
    assert not any(tmp_path.iterdir())
