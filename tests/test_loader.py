"""load_gan on every upstream container layout, and one clear line for every file it cannot use."""

import os
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from checkpoint_files import (SG2_SMALL, sg1_models, sg2_models, write_sg1_bare, write_sg1_train_step,
                              write_sg2_converted, write_sg2_train)
from installation.engine.config import cuda_device_count
from installation.models import CheckpointError, create_stylegan1, load_gan, save_gan

ROOT = Path(__file__).resolve().parents[1]
SMALL = (16, 16, 8, 8, 8)  # 4..64 px


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------- StyleGAN1

def test_full_size_train_step_file_in_legacy_format_loads_strictly(tmp_path):
    """The released 2019 files: full 1024-px architecture, 5-key dict, legacy (non-zip) serialisation."""
    g, g_running, d = sg1_models(trained_blocks=7)  # trained to 256 px, like stylegan-256px-new.model
    path = write_sg1_train_step(tmp_path / "stylegan-256px-new.model", g, g_running, d, legacy=True,
                                optimisers=False)
    assert path.read_bytes()[:1] == b"\x80"  # legacy pickle, not zip
    ckpt = torch.load(path, weights_only=True)
    assert len(ckpt["generator"]) == 139 and len(ckpt["discriminator"]) == 72
    gan = load_gan(path)
    assert gan.format == "stylegan1-train-step" and gan.arch == "stylegan1"
    assert gan.resolution == 256 and gan.trained_resolutions[-1] == 256
    assert same_weights(gan.generator, g_running) and same_weights(gan.discriminator, d)
    raw = load_gan(path, resolution=64, use_ema=False)
    assert same_weights(raw.generator, g) and raw.resolution == 64
    with torch.no_grad():
        z = torch.randn(2, 512)
        assert raw.generate(z).shape == (2, 3, 64, 64)
        assert raw.discriminate(raw.generate(z)).shape == (2,)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("activate", [True, False])
def test_small_train_step_files_new_and_old_discriminators(tmp_path, legacy, activate):
    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2, activate=activate)
    path = write_sg1_train_step(tmp_path / "train_step-5.model", g, g_running, d, legacy=legacy)
    gan = load_gan(path)
    assert gan.resolution == 64 and gan.trained_resolutions == (4, 8, 16, 32, 64)
    assert gan.d_config["from_rgb_activate"] is activate
    assert same_weights(gan.discriminator, d)
    with torch.no_grad():
        for resolution in (8, 32, 64):
            small = load_gan(path, resolution=resolution)
            images = small.generate(torch.randn(2, 32), truncation=0.7)
            assert images.shape == (2, 3, resolution, resolution) and torch.isfinite(images).all()
            assert torch.isfinite(small.discriminate(images)).all()


@pytest.mark.parametrize("legacy", [False, True])
def test_bare_g_running_file_has_no_discriminator(tmp_path, legacy):
    _, g_running, _ = sg1_models(SMALL, code_dim=32, n_mlp=2, trained_blocks=4)
    path = write_sg1_bare(tmp_path / "120000.model", g_running, legacy=legacy)
    gan = load_gan(path)
    assert gan.format == "stylegan1-g-running" and gan.discriminator is None
    assert gan.resolution == 32  # blocks above 32 px never trained: their noise weights are still zero
    with pytest.raises(CheckpointError, match="no discriminator.*train_step"):
        load_gan(path, require_discriminator=True)
    with pytest.raises(CheckpointError, match="trained up to 32 px, so 64 px is not available"):
        load_gan(path, resolution=64)


def test_file_name_tells_the_trained_resolution(tmp_path):
    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2)
    gan = load_gan(write_sg1_train_step(tmp_path / "train_step-4.model", g, g_running, d))
    assert gan.resolution == 32 and gan.trained_resolutions[-1] == 32


def test_file_name_hints_that_are_no_size_or_claim_too_much_are_not_trusted(tmp_path):
    _, g_running, _ = sg1_models(SMALL, code_dim=32, n_mlp=2, trained_blocks=4)
    assert load_gan(write_sg1_bare(tmp_path / "x_3px.model", g_running)).resolution == 32
    assert load_gan(write_sg1_bare(tmp_path / "train_step-0.model", g_running)).resolution == 32
    assert load_gan(write_sg1_bare(tmp_path / "my_512px_finetune.model", g_running)).resolution == 32


def test_truncation_means_the_same_for_both_architectures(tmp_path):
    g, g_ema, d = sg2_models(**SG2_SMALL)
    sg2 = load_gan(write_sg2_train(tmp_path / "010000.pt", g, g_ema, d))
    _, g_running, _ = sg1_models(SMALL, code_dim=32, n_mlp=2)
    sg1 = load_gan(write_sg1_bare(tmp_path / "120000.model", g_running))
    for gan in (sg1, sg2):
        z = torch.randn(2, gan.latent_dim)
        noise = gan.make_noise(2, torch.Generator().manual_seed(0))
        with torch.no_grad():
            w = gan.mapping(z)
            for psi in (0.5, 1.5):  # above 1 extrapolates away from the mean, below 1 pulls towards it
                expected = gan.synthesize(gan.mean_latent + psi * (w - gan.mean_latent), noise)
                assert torch.allclose(gan.generate(z, noise, truncation=psi), expected, atol=1e-5)
    with torch.no_grad():  # (the tiny StyleGAN2's mapping maps every z to nearly the same w, so check StyleGAN1)
        z, noise = torch.randn(2, 32), sg1.make_noise(2)
        assert not torch.allclose(sg1.generate(z, noise, truncation=1.5), sg1.generate(z, noise), atol=1e-4)


def test_generator_and_discriminator_outputs_survive_the_file(tmp_path):
    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2)
    gan = load_gan(write_sg1_train_step(tmp_path / "train_step-5.model", g, g_running, d))
    z = torch.randn(2, 32)
    noise = g_running.make_noise(2, 4)
    with torch.no_grad():
        expected = g_running(z, noise=noise, step=4)
        assert torch.equal(gan.generate(z, noise), expected)
        assert torch.equal(gan.discriminate(expected), d(expected, step=4).view(-1))


# ------------------------------------------------------------------------------------------- StyleGAN2

def test_stylegan2_train_file_with_args_namespace(tmp_path):
    g, g_ema, d = sg2_models(**SG2_SMALL)
    path = write_sg2_train(tmp_path / "010000.pt", g, g_ema, d)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # plain weights_only refuses the Namespace; the loader allows it
    gan = load_gan(path)
    assert gan.format == "stylegan2-train" and gan.arch == "stylegan2" and gan.resolution == 8
    assert same_weights(gan.generator, g_ema) and same_weights(gan.discriminator, d)
    assert same_weights(load_gan(path, use_ema=False).generator, g)
    with torch.no_grad():
        images = gan.generate(torch.randn(4, 32), truncation=0.5)
        assert images.shape == (4, 3, 8, 8) and gan.discriminate(images).shape == (4,)
    with pytest.raises(CheckpointError, match="8 px only"):
        load_gan(path, resolution=16)


def test_stylegan2_old_train_file_without_noise_buffers(tmp_path):
    """Like the released 550000.pt: five keys, no args, and no noises.noise_* buffers."""
    g, g_ema, d = sg2_models(**SG2_SMALL)
    path = write_sg2_train(tmp_path / "550000.pt", g, g_ema, d, with_args=False)
    ckpt = torch.load(path, weights_only=True)
    for key in [k for k in ckpt["g_ema"] if k.startswith("noises.")]:
        del ckpt["g_ema"][key]
    torch.save(ckpt, path)
    gan = load_gan(path)
    assert gan.format == "stylegan2-train" and gan.discriminator is not None


def test_stylegan2_converted_file_uses_latent_avg_and_lacks_d(tmp_path):
    _, g_ema, d = sg2_models(**SG2_SMALL)
    latent_avg = torch.randn(32)
    path = write_sg2_converted(tmp_path / "stylegan2-ffhq-config-f.pt", g_ema, latent_avg)
    ckpt = torch.load(path, weights_only=True)
    for key in [k for k in ckpt["g_ema"] if k.endswith("kernel")]:
        del ckpt["g_ema"][key]  # older converted files lack the blur buffers
    torch.save(ckpt, path)
    gan = load_gan(path)
    assert gan.format == "stylegan2-converted" and gan.discriminator is None
    assert torch.equal(gan.mean_latent, latent_avg.view(1, -1))
    with pytest.raises(CheckpointError, match="no discriminator.*--disc"):
        load_gan(path, require_discriminator=True)
    with_d = load_gan(write_sg2_converted(tmp_path / "with-d.pt", g_ema, latent_avg, d=d),
                      require_discriminator=True)
    assert same_weights(with_d.discriminator, d)


# ------------------------------------------------------------------------------------- own format

def test_own_format_round_trip_in_half_precision(tmp_path):
    gan = create_stylegan1(SMALL, code_dim=32, n_mlp=2, resolution=32, seed=3)
    save_gan(gan, tmp_path / "own.pt", half=True, meta={"trained_kimg": 1})
    back = load_gan(tmp_path / "own.pt")
    assert back.format == "uncanny" and back.resolution == 32 and back.trained_resolutions[-1] == 64
    for a, b in zip(gan.generator.state_dict().values(), back.generator.state_dict().values()):
        assert b.dtype == torch.float32 and torch.allclose(a, b, atol=2e-3, rtol=1e-3)
    assert load_gan(tmp_path / "own.pt", resolution=64).resolution == 64


# ------------------------------------------------------------------------------------------ bad files

def expect_error(path, match, **kwargs):
    with pytest.raises(CheckpointError, match=match) as info:
        load_gan(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_empty_and_foreign_files(tmp_path):
    expect_error(tmp_path / "nope.model", "no such file")
    (tmp_path / "empty.pt").write_bytes(b"")
    expect_error(tmp_path / "empty.pt", "empty")
    (tmp_path / "notes.model").write_text("these are not weights\n")
    expect_error(tmp_path / "notes.model", "not a PyTorch checkpoint")
    expect_error(tmp_path, "is a folder")
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    expect_error(tmp_path / "list.pt", "holds a list, not a checkpoint dict")
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 3}, tmp_path / "other.pt")
    expect_error(tmp_path / "other.pt", "not a recognised StyleGAN checkpoint.*epoch")


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_files(tmp_path, legacy):
    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2)
    path = write_sg1_train_step(tmp_path / "train_step-5.model", g, g_running, d, legacy=legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "truncated or corrupt")


def test_corrupt_zip_member(tmp_path):
    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2)
    path = write_sg1_train_step(tmp_path / "train_step-5.model", g, g_running, d)
    data = bytearray(path.read_bytes())
    start = data.find(b"data.pkl") + 40
    data[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    expect_error(path, "truncated or corrupt|refused to unpickle")


def test_unknown_key_layout_names_the_closest_format(tmp_path):
    _, g_running, _ = sg1_models(SMALL, code_dim=32, n_mlp=2)
    state = {k.replace("adain1", "adaptive_norm1"): v for k, v in g_running.state_dict().items()}
    torch.save(state, tmp_path / "renamed.model")
    message = expect_error(tmp_path / "renamed.model", "does not match its architecture")
    assert "missing generator.progression.0.adain1" in message and "unexpected" in message
    no_mapping = {k: v for k, v in g_running.state_dict().items() if not k.startswith("style.")}
    torch.save(no_mapping, tmp_path / "no-mapping.model")
    expect_error(tmp_path / "no-mapping.model", "StyleGAN1 generator weights are incomplete .*closest known format is "
                 "StyleGAN1 g_running .*missing style.1.linear")
    torch.save({"encoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}, tmp_path / "vae.pt")
    expect_error(tmp_path / "vae.pt", "unknown key layout; closest known format is .*missing .*unexpected")


def test_wrong_shapes_are_named(tmp_path):
    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2)
    state = d.state_dict()
    state["linear.linear.weight_orig"] = torch.zeros(1, 7)
    path = tmp_path / "train_step-5.model"
    torch.save({"generator": g.state_dict(), "discriminator": state, "g_running": g_running.state_dict(),
                "g_optimizer": {}, "d_optimizer": {}}, path)
    expect_error(path, r"discriminator does not match.*wrong shape linear.linear.weight_orig \(1, 7\)")


def test_nvlabs_pickle_without_class_records_is_refused_without_running_it(tmp_path):
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("must never run")

    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules["torch_utils"] = types.ModuleType("torch_utils")
    sys.modules["torch_utils.persistence"] = persistence

    class Network:
        def __reduce__(self):
            return _reconstruct_persistent_obj, ({"class_name": "Generator", "module_src": "import os"},)

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    try:
        data = pickle.dumps({"G": Network(), "D": Network(), "G_ema": Network(), "augment_pipe": None})
    finally:
        del sys.modules["torch_utils"], sys.modules["torch_utils.persistence"]
    (tmp_path / "network-snapshot-000100.pkl").write_bytes(data)
    expect_error(tmp_path / "network-snapshot-000100.pkl", "refused to unpickle.*class record")


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"generator": Exploit()}, protocol=2))
    message = expect_error(tmp_path / "evil.pt", "refused to unpickle")
    assert not marker.exists()
    # torch's paragraph is shortened to what matters, the fix stays whole
    assert message.endswith("(it holds the Python object posix.system, not only weights); only weight files can be "
                            "loaded, never pickled code")


def test_refusals_are_whole_lines_without_torch_warnings(tmp_path, recwarn):
    (tmp_path / "numpy.pkl").write_bytes(pickle.dumps({"g": np.zeros(3)}, protocol=4))  # torch warns on protocol 4
    message = expect_error(tmp_path / "numpy.pkl", "refused to unpickle")
    assert "\x1b" not in message and len(message) < 250 and message.endswith("never pickled code")
    assert [str(w.message) for w in recwarn] == []
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "script.pt")
    recwarn.clear()  # what scripting said; loading the archive is what must stay quiet
    expect_error(tmp_path / "script.pt", "a TorchScript archive .*, not a checkpoint; pass a rosinality")
    assert [str(w.message) for w in recwarn] == []


# ------------------------------------------------------------------------------------------------- CLI

def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_inspect_and_sample(tmp_path):
    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2)
    path = write_sg1_train_step(tmp_path / "train_step-5.model", g, g_running, d)
    result = run_cli("inspect", path)
    assert result.returncode == 0, result.stderr
    assert "stylegan1-train-step" in result.stdout and "4, 8, 16, 32, 64 px" in result.stdout
    assert "fine-tuning possible" in result.stdout
    out = tmp_path / "grid.png"
    result = run_cli("sample", path, "--seeds", "0-5", "--truncation", "0.7", "--resolution", "32", "--out", out)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (3 * 32, 2 * 32)
        pixels = torch.from_numpy(np.asarray(image, dtype="float32"))
    assert pixels.std() > 5  # real samples, not a blank picture
    for name, image_format in (("grid.jpg", "JPEG"), ("grid.JPEG", "JPEG")):  # the extension says the format
        result = run_cli("sample", path, "--seeds", "0-3", "--resolution", "8", "--out", tmp_path / name)
        assert result.returncode == 0, result.stderr
        with Image.open(tmp_path / name) as image:
            assert image.format == image_format and image.size == (16, 16)


@pytest.mark.parametrize("args, message", [
    (["inspect", "{tmp}/missing.model"], "no such file"),
    (["inspect", "{tmp}/notes.model"], "not a PyTorch checkpoint"),
    (["sample", "{ckpt}", "--seeds", "5-1"], "bad seed list"),
    (["sample", "{ckpt}", "--truncation", "-1"], "expected a positive number"),
    (["sample", "{ckpt}", "--resolution", "100"], "power of two"),
    (["sample", "{ckpt}", "--resolution", "128"], "not available"),
    (["inspect", "{ckpt}", "--device", "cuda:99"], "no CUDA device is available here|this machine has"),
    (["frobnicate"], "invalid choice"),
    (["sample", "{ckpt}", "--out", "{tmp}/grid.gif"], r"unknown picture extension '\.gif' .*; use \.png, \.jpg or \.jpeg"),
    (["sample", "{ckpt}", "--out", "{tmp}/grid"], r"unknown picture extension ''"),
    (["sample", "{ckpt}", "--columns", "0"], r"argument --columns: expected a whole number >= 1, got '0'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, cli, args, message):
    """In this process (test_cli_inspect_and_sample runs the real one)."""
    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2)
    ckpt = write_sg1_train_step(tmp_path / "train_step-5.model", g, g_running, d)
    (tmp_path / "notes.model").write_text("hello")
    code, stderr = cli(*[a.format(tmp=tmp_path, ckpt=ckpt) for a in args])
    # asking for CUDA where there is none: a CPU-only torch never will have it, nor a box with too few GPUs (2); a CUDA
    # torch on a box with none now may have one later (75)
    no_cuda_now = torch.version.cuda is not None and cuda_device_count() == 0
    assert code == (75 if any(a.startswith("cuda") for a in args) and no_cuda_now else 2), stderr
    error_lines = [line for line in stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and re.search(message, error_lines[0]), stderr


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(tmp_path):
    import zipfile

    g, g_running, d = sg1_models(SMALL, code_dim=32, n_mlp=2)
    real = write_sg1_train_step(tmp_path / "real.model", g, g_running, d)
    bomb = tmp_path / "train_step-5.model"
    with zipfile.ZipFile(real) as source, zipfile.ZipFile(bomb, "w") as target:
        storages = [m for m in source.infolist() if "/data/" in m.filename and not m.filename.endswith(".pkl")]
        victim = max(storages, key=lambda m: m.file_size).filename  # torch.load unpacks it (measured: 1.2 GB peak)
        for member in source.infolist():
            if member.filename != victim:
                target.writestr(member, source.read(member))
        # in its place a gigabyte of zeros, deflated to about a megabyte
        member = zipfile.ZipInfo(victim)
        member.compress_type = zipfile.ZIP_DEFLATED
        with target.open(member, "w", force_zip64=True) as inflated:
            for _ in range(64):
                inflated.write(bytes(2**24))
    assert bomb.stat().st_size < 3 * 2**20
    expect_error(bomb, r"refused: its parts would unpack to 1\.0 GB from a 1\.\d MB file, which no checkpoint does "
                       r"\(a zip bomb\?\); use the checkpoint as torch.save wrote it")
    # and in a process of its own, the memory it took: far from the gigabyte it claims
    # (VmHWM, the peak of this process's own memory: ru_maxrss would carry over the parent's from before exec)
    script = ("import sys\nfrom pathlib import Path\nfrom installation.models import CheckpointError, load_gan\n"
              "try:\n    load_gan(sys.argv[1])\nexcept CheckpointError:\n    pass\n"
              "print(next(l.split()[1] for l in Path('/proc/self/status').read_text().splitlines() "
              "if l.startswith('VmHWM:')))")
    done = subprocess.run([sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert int(done.stdout) * 1024 < 600 * 2**20, done.stdout  # torch itself is about 300 MB here
