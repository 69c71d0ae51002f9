"""NVlabs network pickles: read without running their code, and StyleGAN2-ADA G / D that compute what NVlabs'
networks compute.

The reference below is written from NVlabs' documented behaviour (networks.py, conv2d_resample, upfirdn2d,
bias_act) as plain functions over the pickled tensors. It takes other routes than the model where it can: the
fused per-sample grouped convolution (NVlabs' inference path), zero insertion by strided assignment, depthwise
filtering, the padding formulas of conv2d_resample.
"""

import math
import os
import pickle
import re
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from installation.cli import main
from installation.engine import Engine, EngineConfig
from installation.journey import read_metrics
from installation.models import CheckpointError, load_gan, save_gan
from nvlabs_files import (SMALL, SMALL_SG3, Persistent, network_pickle, nvlabs_modules, sg3_geometry,
                          sg3_network_pickle, write_network_pickle)

ROOT = Path(__file__).resolve().parents[1]
RESNET_COND = {**SMALL, "architecture": "resnet", "d_architecture": "skip", "c_dim": 3, "mbstd_group_size": 4}
ORIG_CLAMPED = {**SMALL, "architecture": "orig", "d_architecture": "orig", "conv_clamp": 0.5,
                "mbstd_num_channels": 2}

# ------------------------------------------------------------------------------------ independent reference

# The documented constants; the mutation test changes one at a time and expects the comparison to fail.
REF = {"mapping_lr": 0.01, "lrelu_gain": math.sqrt(2), "torgb_gain": True, "conv_k2": True, "skip_gain": math.sqrt(0.5),
       "noise": True, "clamp": True, "input_gain": True, "output_scale": 0.25, "grid_half_pixel": True}


def upfirdn(x, f, up, down, p0, p1, gain):
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [p0, p1, p0, p1])
    k = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)  # true convolution (NVlabs flip_filter=False)
    return F.conv2d(x, k, groups=c)[:, :, ::down, ::down]


def conv2d_resample(x, w, f, up=1, down=1, padding=0, groups=1):
    fw, kw = (1 if f is None else f.shape[-1]), w.shape[-1]
    p0 = p1 = padding
    if up > 1:
        p0, p1 = p0 + (fw + up - 1) // 2, p1 + (fw - up) // 2
    if down > 1:
        p0, p1 = p0 + (fw - down + 1) // 2, p1 + (fw - down) // 2
    if kw == 1 and down > 1:
        return F.conv2d(upfirdn(x, f, 1, down, p0, p1, 1), w, groups=groups)
    if kw == 1 and up > 1:
        return upfirdn(F.conv2d(x, w, groups=groups), f, up, 1, p0, p1, up * up)
    if down > 1:
        return F.conv2d(upfirdn(x, f, 1, 1, p0, p1, 1), w, stride=down, groups=groups)
    if up > 1:
        wt = w.reshape(groups, -1, *w.shape[1:]).transpose(1, 2).reshape(-1, w.shape[0] // groups, kw, kw)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        return upfirdn(x, f, 1, 1, p0 - (kw - 1), p1 - (kw - up), up * up)
    return F.conv2d(x, w, padding=p0, groups=groups)


def bias_act(x, b, lrelu, gain=1.0, clamp=None):
    if b is not None:
        x = x + b.reshape(1, -1, *[1] * (x.ndim - 2))
    if lrelu:
        x = F.leaky_relu(x, 0.2) * REF["lrelu_gain"]
    x = x * gain
    return x.clamp(-clamp * gain, clamp * gain) if clamp is not None and REF["clamp"] else x


def fc(S, p, x, lrelu=False, lr=1.0):
    w = S[p + "weight"] * (lr / math.sqrt(S[p + "weight"].shape[1]))
    return bias_act(x @ w.t(), S[p + "bias"] * lr, lrelu)


def conv(S, p, x, lrelu=True, up=1, down=1, gain=1.0, clamp=None):
    w = S[p + "weight"]
    k2 = w.shape[2] * w.shape[3] if REF["conv_k2"] else 1
    x = conv2d_resample(x, w / math.sqrt(w.shape[1] * k2), S[p + "resample_filter"], up, down, w.shape[-1] // 2)
    return bias_act(x, S.get(p + "bias"), lrelu, gain, clamp)


def modconv(x, weight, styles, demodulate, up=1, f=None):
    n, _, h, wd = x.shape
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    x = conv2d_resample(x.reshape(1, -1, h, wd), w.reshape(-1, *weight.shape[1:]), f, up, 1,
                        weight.shape[-1] // 2, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


def synthesis_layer(S, p, x, w, noise_mode, up, clamp, gain=1.0):
    x = modconv(x, S[p + "weight"], fc(S, p + "affine.", w), True, up, S[p + "resample_filter"])
    if noise_mode == "const" and REF["noise"]:
        x = x + S[p + "noise_const"] * S[p + "noise_strength"]
    return bias_act(x, S[p + "bias"], True, gain, clamp)


def torgb(S, p, x, w, clamp):
    styles = fc(S, p + "affine.", w)
    if REF["torgb_gain"]:
        styles = styles / math.sqrt(S[p + "weight"].shape[1])
    return bias_act(modconv(x, S[p + "weight"], styles, False), S[p + "bias"], False, 1.0, clamp)


def normalize(x):
    return x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()


def mapping(S, p, z, c, layers):
    parts = [normalize(z)] if z is not None else []
    if c is not None:
        parts.append(normalize(fc(S, p + "embed.", c)))
    x = torch.cat(parts, 1)
    for i in range(layers):
        x = fc(S, f"{p}fc{i}.", x, True, REF["mapping_lr"])
    return x


def reference_generator(S, cfg, z, c=None, psi=1.0, noise_mode="const"):
    resolutions = [2**i for i in range(2, int(math.log2(cfg["img_resolution"])) + 1)]
    arch, clamp = cfg["architecture"], cfg["conv_clamp"]
    num_ws = 2 * len(resolutions)  # one per conv (2 per block, 1 in b4) + the last ToRGB
    ws = mapping(S, "mapping.", z, c, cfg["map"])[:, None].repeat(1, num_ws, 1)
    if psi != 1:
        ws = S["mapping.w_avg"].lerp(ws, psi)
    x = img = None
    i = 0
    for res in resolutions:
        p = f"synthesis.b{res}."
        if res == 4:
            x = synthesis_layer(S, p + "conv1.", S[p + "const"][None].repeat(z.shape[0], 1, 1, 1), ws[:, i],
                                noise_mode, 1, clamp)
            i += 1
        else:
            y = conv(S, p + "skip.", x, False, up=2, gain=REF["skip_gain"]) if arch == "resnet" else None
            x = synthesis_layer(S, p + "conv0.", x, ws[:, i], noise_mode, 2, clamp)
            x = synthesis_layer(S, p + "conv1.", x, ws[:, i + 1], noise_mode, 1, clamp,
                                REF["skip_gain"] if arch == "resnet" else 1.0)
            x = x if y is None else x + y
            i += 2
        if img is not None:
            img = upfirdn(img, S[p + "resample_filter"], 2, 1, 2, 1, 4)  # upsample2d
        if arch == "skip" or res == cfg["img_resolution"]:
            y = torgb(S, p + "torgb.", x, ws[:, i], clamp)  # shares its w with the next block's first conv
            img = y if img is None else img + y
    return img


def reference_discriminator(S, cfg, img, c=None):
    arch, clamp = cfg["d_architecture"], cfg["conv_clamp"]
    x = None
    for log2 in range(int(math.log2(cfg["img_resolution"])), 2, -1):
        p = f"b{2**log2}."
        if x is None or arch == "skip":
            y = conv(S, p + "fromrgb.", img, clamp=clamp)
            x = y if x is None else x + y
            img = upfirdn(img, S[p + "resample_filter"], 1, 2, 1, 1, 1) if arch == "skip" else None  # downsample2d
        if arch == "resnet":
            y = conv(S, p + "skip.", x, False, down=2, gain=REF["skip_gain"])
            x = y + conv(S, p + "conv1.", conv(S, p + "conv0.", x, clamp=clamp), down=2, gain=REF["skip_gain"],
                         clamp=clamp)
        else:
            x = conv(S, p + "conv1.", conv(S, p + "conv0.", x, clamp=clamp), down=2, clamp=clamp)
    if arch == "skip":
        x = x + conv(S, "b4.fromrgb.", img)
    n, ch, h, w = x.shape
    g, f = min(cfg["mbstd_group_size"], n), cfg["mbstd_num_channels"]
    y = x.reshape(g, -1, f, ch // f, h, w)
    y = ((y - y.mean(0)).square().mean(0) + 1e-8).sqrt().mean([2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    x = conv(S, "b4.conv.", torch.cat([x, y], 1), clamp=clamp)
    x = fc(S, "b4.out.", fc(S, "b4.fc.", x.flatten(1), True))
    if c is not None:
        cmap = mapping(S, "mapping.", None, c, 8)
        x = (x * cmap).sum(1, keepdim=True) / math.sqrt(cmap.shape[1])
    return x


def sg3_input(S, first, w):
    p = "synthesis.input."
    t = fc(S, p + "affine.", w)
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    n = w.shape[0]
    m_r, m_t = torch.eye(3).repeat(n, 1, 1), torch.eye(3).repeat(n, 1, 1)
    m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
    m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
    transforms = m_r @ m_t @ S[p + "transform"][None]
    freqs, phases = S[p + "freqs"][None], S[p + "phases"][None]
    phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
    freqs = freqs @ transforms[:, :2, :2]
    bw, rate, size = first["bandwidth"], first["rate"], first["size"]
    amplitudes = (1 - (freqs.norm(dim=2) - bw) / (rate / 2 - bw)).clamp(0, 1)
    theta = torch.eye(2, 3)
    theta[0, 0] = theta[1, 1] = 0.5 * size / rate
    grids = F.affine_grid(theta[None], [1, 1, size, size], align_corners=REF["grid_half_pixel"] is not True)
    x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
    x = torch.sin((x + phases[:, None, None]) * (2 * math.pi)) * amplitudes[:, None, None]
    x = x @ (S[p + "weight"] / math.sqrt(S[p + "weight"].shape[0])).t()
    return x.permute(0, 3, 1, 2)


def as_2d(f):
    """Separable taps as the equivalent 2-D filter (NVlabs runs them as two 1-D passes)."""
    if f is None:
        return torch.ones(1, 1)
    return torch.outer(f, f) if f.ndim == 1 else f


def reference_sg3(S, cfg, z, c=None, psi=1.0):
    first, layers = sg3_geometry(cfg)
    ws = mapping(S, "mapping.", z, c, cfg["map"])[:, None].repeat(1, len(layers) + 1, 1)
    if psi != 1:
        ws = S["mapping.w_avg"].lerp(ws, psi)
    x = sg3_input(S, first, ws[:, 0])
    n = z.shape[0]
    for i, spec in enumerate(layers):
        p = f"synthesis.{spec['name']}."
        styles, weight, k = fc(S, p + "affine.", ws[:, i + 1]), S[p + "weight"], spec["k"]
        if spec["rgb"]:
            styles = styles / math.sqrt(spec["cin"] * k * k)
        else:
            weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean().rsqrt()
        w = weight[None] * styles[:, None, :, None, None]
        if not spec["rgb"]:
            w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
        if REF["input_gain"]:
            w = w * S[p + "magnitude_ema"].rsqrt()
        x = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, spec["cin"], k, k), padding=k - 1, groups=n)
        x = x.reshape(n, -1, *x.shape[2:]) + S[p + "bias"][None, :, None, None]
        x = upfirdn(x, as_2d(S.get(p + "up_filter")), spec["up"], 1, *spec["pad"], spec["up"] ** 2)
        if not spec["rgb"]:
            x = F.leaky_relu(x, 0.2) * REF["lrelu_gain"]
        if REF["clamp"]:
            x = x.clamp(-cfg["conv_clamp"], cfg["conv_clamp"])
        x = upfirdn(x, as_2d(S.get(p + "down_filter")), 1, spec["down"], 0, 0, 1)
    return x * REF["output_scale"]


# ------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", params=[SMALL, RESNET_COND, ORIG_CLAMPED], ids=["skip", "resnet-cond", "orig-clamp"])
def model(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nvlabs")
    nets = write_network_pickle(folder / "network-snapshot-000100.pkl", request.param, folder / "ran")
    return request.param, folder / "network-snapshot-000100.pkl", nets


def max_diff(a, b):
    return (a - b).abs().max().item()


def probe(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = F.one_hot(torch.zeros(4, dtype=torch.long), cfg["c_dim"]).float() if cfg["c_dim"] else None
    return torch.randn(4, cfg["z_dim"], generator=g), c, torch.randn(4, 3, 16, 16, generator=g)


# ------------------------------------------------------------------------------------------ the file

def test_pickle_reads_every_tensor_without_running_its_code(model):
    cfg, path, nets = model
    data = path.read_bytes()
    assert b"torch_utils.persistence" in data and b"dnnlib.util\x94\x8c\x08EasyDict" in data
    assert b"numpy._core.multiarray" in data  # the gains are numpy scalars
    gan = load_gan(path)
    assert gan.format == "nvlabs-pickle" and gan.arch == "stylegan2-ada" and gan.resolution == 16
    assert gan.latent_dim == cfg["z_dim"] and gan.mean_latent.shape == (1, cfg["w_dim"])
    for module, tree in ((gan.generator, nets["G_ema"]), (gan.discriminator, nets["D"]),
                         (load_gan(path, use_ema=False).generator, nets["G"])):
        got, want = module.state_dict(), tree.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert torch.equal(gan.mean_latent[0], nets["G_ema"].state_dict()["mapping.w_avg"])
    assert not (path.parent / "ran").exists()  # module_src was never executed
    assert not {"torch_utils", "dnnlib", "torch_utils.persistence"} & set(sys.modules)


def test_python_3_7_numpy_1_pickle_loads_the_same(tmp_path):
    data, _ = network_pickle(SMALL, tmp_path / "ran", legacy_numpy=True)
    assert b"numpy.core.multiarray" in data and b"numpy._core" not in data
    assert data[:2] == b"\x80\x03" and b"cbuiltins\nset\n" in data  # protocol 3 names set() as a global
    (tmp_path / "old.pkl").write_bytes(data)
    (tmp_path / "new.pkl").write_bytes(network_pickle(SMALL, tmp_path / "ran")[0])
    old, new = load_gan(tmp_path / "old.pkl"), load_gan(tmp_path / "new.pkl")
    a, b = old.generator.state_dict(), new.generator.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ equivalence

@torch.no_grad()
def test_generator_matches_the_reference_noise_off_const_and_truncated(model):
    cfg, path, nets = model
    S, gan = nets["G_ema"].state_dict(), load_gan(path)
    z, c, _ = probe(cfg)
    layers = len(gan.make_noise(1))
    assert layers == 2 * int(math.log2(cfg["img_resolution"])) - 3
    off = gan.generate(z, [None] * layers)
    assert max_diff(off, reference_generator(S, cfg, z, c, noise_mode="none")) <= 1e-4
    const = gan.generate(z)  # the stored noise_const maps by default
    assert max_diff(const, reference_generator(S, cfg, z, c)) <= 1e-4
    assert max_diff(const, off) > 1e-3  # the noise is really there
    truncated = gan.generate(z, truncation=0.7)
    assert max_diff(truncated, reference_generator(S, cfg, z, c, psi=0.7)) <= 1e-4
    assert max_diff(truncated, const) > 1e-3


@torch.no_grad()
def test_discriminator_matches_the_reference_on_fixed_images(model):
    cfg, path, nets = model
    gan = load_gan(path)
    _, c, images = probe(cfg)
    want = reference_discriminator(nets["D"].state_dict(), cfg, images, c)
    assert want.shape == (4, 1)
    assert max_diff(gan.discriminate(images), want[:, 0]) <= 1e-4


@pytest.mark.parametrize("mutation", [("mapping_lr", 1.0), ("lrelu_gain", 1.0), ("torgb_gain", False),
                                      ("conv_k2", False), ("skip_gain", 1.0), ("noise", False), ("clamp", False)])
@torch.no_grad()
def test_a_wrong_constant_in_the_reference_breaks_the_match(model, mutation, monkeypatch):
    cfg, path, nets = model
    key, value = mutation
    if (key == "skip_gain" and "resnet" not in (cfg["architecture"], cfg["d_architecture"])) or \
            (key == "clamp" and cfg["conv_clamp"] > 10):
        pytest.skip("this config does not use the constant")
    gan = load_gan(path)
    z, c, images = probe(cfg)
    monkeypatch.setitem(REF, key, value)
    g_diff = max_diff(gan.generate(z), reference_generator(nets["G_ema"].state_dict(), cfg, z, c))
    d_diff = max_diff(gan.discriminate(images), reference_discriminator(nets["D"].state_dict(), cfg, images, c)[:, 0])
    assert max(g_diff, d_diff) > 1e-3


def test_conditional_model_draws_and_is_judged_as_the_chosen_class(tmp_path):
    path = tmp_path / "cond.pkl"
    nets = write_network_pickle(path, RESNET_COND, tmp_path / "ran")
    gan = load_gan(path)
    z, _, images = probe(RESNET_COND)
    with torch.no_grad():
        gan.class_index = 2
        c = F.one_hot(torch.full((4,), 2), 3).float()
        assert max_diff(gan.generate(z), reference_generator(nets["G_ema"].state_dict(), RESNET_COND, z, c)) <= 1e-4
        assert max_diff(gan.discriminate(images),
                        reference_discriminator(nets["D"].state_dict(), RESNET_COND, images, c)[:, 0]) <= 1e-4
    assert gan.describe()["classes"] == 3


def test_cli_class_choice(tmp_path, capsys):
    path = tmp_path / "cond.pkl"
    write_network_pickle(path, RESNET_COND, tmp_path / "ran")
    assert main(["inspect", str(path), "--class", "2"]) == 0
    assert "classes:         3 (conditional: class 2" in capsys.readouterr().out
    for args, message in ((["--class", "3"], "this model has 3 classes; choose 0..2"),
                          (["--class", "-1"], "expected a whole number")):
        with pytest.raises(SystemExit) if args[1] == "-1" else nullcontext():
            assert main(["inspect", str(path), *args]) == 2
        assert message in capsys.readouterr().err
    sample = tmp_path / "g.png"
    assert main(["sample", str(path), "--class", "1", "--seeds", "0", "--out", str(sample)]) == 0
    small = tmp_path / "small.pkl"
    write_network_pickle(small, SMALL, tmp_path / "ran")
    assert main(["inspect", str(small), "--class", "1"]) == 2
    assert "this model has no classes; drop --class" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- own format

def test_own_format_round_trip_keeps_the_networks(tmp_path, model):
    cfg, path, _ = model
    gan = load_gan(path)
    save_gan(gan, tmp_path / "own.pt")
    again = load_gan(tmp_path / "own.pt")
    assert again.arch == "stylegan2-ada" and again.g_config == gan.g_config and again.d_config == gan.d_config
    z, _, images = probe(cfg)
    with torch.no_grad():
        assert torch.equal(again.generate(z), gan.generate(z))
        assert torch.equal(again.discriminate(images), gan.discriminate(images))
        assert torch.equal(again.mean_latent, gan.mean_latent)


# --------------------------------------------------------------------------------------------- safety

class Exploit:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.check_call"])
def test_code_in_an_nvlabs_pickle_is_refused_before_it_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    func, arg = {"os.system": (os.system, f"touch {marker}"),
                 "builtins.eval": (eval, f"open({str(marker)!r}, 'w')"),
                 "subprocess.check_call": (subprocess.check_call, ["touch", str(marker)])}[kind]
    with nvlabs_modules(tmp_path / "ran"):
        g = Persistent("training.networks.Generator", kwargs={"z_dim": 4}, hook=Exploit(func, arg))
        data = pickle.dumps({"G": g, "D": None, "G_ema": g})
    path = tmp_path / "network-snapshot-000000.pkl"
    path.write_bytes(data)
    name = {"os.system": "(posix|os).system"}.get(kind, kind)
    with pytest.raises(CheckpointError, match=rf"refused to unpickle it safely \(it asks for {name}, which is not"):
        load_gan(path)
    assert not marker.exists()


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})


def bad_files(tmp_path: Path) -> dict[str, Path]:
    data, _ = network_pickle(SMALL, tmp_path / "ran")
    files = {"truncated": data[: len(data) // 2]}
    with nvlabs_modules(tmp_path / "ran"):
        files["os.system"] = pickle.dumps({"G": Persistent("x"), "x": Exploit(os.system, f"touch {tmp_path}/pwned")})
        sg3 = Persistent("training.networks_stylegan3.Generator", kwargs={"z_dim": 4})
        files["stylegan3 without settings"] = pickle.dumps({"G": sg3, "D": None, "G_ema": sg3})
        files["no G_ema"] = pickle.dumps({"G": Persistent("training.networks.Generator"), "D": None})
        g = network_pickle(SMALL, tmp_path / "ran")[1]["G_ema"]
        g.kwargs = {**g.kwargs, "mapping_kwargs": dict(g.kwargs["mapping_kwargs"]),  # that run's EasyDict is gone
                    "synthesis_kwargs": {**g.kwargs["synthesis_kwargs"], "resample_filter": [1, 2, 1]}}
        files["odd filter"] = pickle.dumps({"G": g, "D": None, "G_ema": g})
    paths = {}
    for name, blob in files.items():
        paths[name] = tmp_path / f"{name.replace(' ', '-')}.pkl"
        paths[name].write_bytes(blob)
    return paths


def test_cli_bad_nvlabs_files_are_one_line_and_exit_2(tmp_path, capsys):
    expected = {"truncated": "truncated or corrupt", "os.system": r"refused to unpickle.*(posix|os)\.system",
                "stylegan3 without settings": r"G_ema network's settings cannot be rebuilt \(missing setting img_res",
                "no G_ema": "has no G_ema network",
                "odd filter": r"settings cannot be rebuilt \(generator setting resample_filter=\[1, 2, 1\]"}
    files = bad_files(tmp_path)
    result = run_cli("inspect", files["os.system"])  # one real process: exit status and stderr as a user sees them
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.fullmatch(f"uncanny: error: .*{expected['os.system']}.*\n", result.stderr), result.stderr
    for name, path in files.items():  # the rest in-process, through the same entry point
        assert main(["inspect", str(path)]) == 2, name
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and re.search(expected[name], lines[0]), (name, lines)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "ran").exists()


# ------------------------------------------------------------------------------------------------ CLI

def test_cli_inspect_and_sample(tmp_path, capsys):
    path = tmp_path / "network-snapshot-000100.pkl"
    write_network_pickle(path, SMALL, tmp_path / "ran")
    result = run_cli("inspect", path)
    assert result.returncode == 0, result.stderr
    assert "nvlabs-pickle (stylegan2-ada)" in result.stdout and "fine-tuning possible" in result.stdout
    assert main(["sample", str(path), "--seeds", "0-3", "--out", str(tmp_path / "grid.png")]) == 0
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (32, 32) and np.asarray(image).std() > 5
    assert not (tmp_path / "ran").exists()


def test_inverted_journey_lowers_the_d_score_and_its_snapshots_reload(tmp_path, capsys):
    path = tmp_path / "network-snapshot-000100.pkl"
    write_network_pickle(path, SMALL, tmp_path / "ran")
    out = tmp_path / "journey"
    assert main(["journey", "--checkpoint", str(path), "--iterations", "20", "--every", "10", "--out", str(out),
                 "--device", "cpu", "--snapshot-every", "10", "--lr", "0.002", "--rows", "2"]) == 0
    metrics = read_metrics(out / "metrics.jsonl")
    assert metrics[-1]["iteration"] == 20 and metrics[-1]["probe_d"] < metrics[0]["probe_d"]
    snapshot = load_gan(out / "snapshots" / "it00000020.pt")
    start = load_gan(path)
    assert snapshot.arch == "stylegan2-ada" and snapshot.g_config == start.g_config
    assert torch.equal(snapshot.mean_latent, start.mean_latent)
    assert not torch.equal(snapshot.generator.state_dict()["synthesis.b16.conv1.weight"],
                           start.generator.state_dict()["synthesis.b16.conv1.weight"])
    with torch.no_grad():
        assert torch.isfinite(snapshot.generate(torch.randn(2, SMALL["z_dim"]))).all()


# ------------------------------------------------------------------------------------------------ StyleGAN3

SG3_R = {**SMALL_SG3, "conv_kernel": 1, "use_radial_filters": True, "channel_base": 256, "channel_max": 32,
         "c_dim": 2, "conv_clamp": 1.5}


@pytest.fixture(scope="module", params=[SMALL_SG3, SG3_R], ids=["t", "r-cond-clamp"])
def sg3_model(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sg3")
    data, nets = sg3_network_pickle(request.param, folder / "ran")
    (folder / "network-snapshot-000200.pkl").write_bytes(data)
    return request.param, folder / "network-snapshot-000200.pkl", nets


def sg3_probe(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = F.one_hot(torch.zeros(4, dtype=torch.long), cfg["c_dim"]).float() if cfg["c_dim"] else None
    return torch.randn(4, cfg["z_dim"], generator=g), c, torch.randn(4, 3, 32, 32, generator=g)


@torch.no_grad()
def test_stylegan3_pickle_loads_and_matches_the_reference(sg3_model):
    cfg, path, nets = sg3_model
    gan = load_gan(path)
    assert gan.arch == "stylegan3" and gan.resolution == 32 and gan.make_noise(2) == []
    for module, tree in ((gan.generator, nets["G_ema"]), (gan.discriminator, nets["D"])):
        got, want = module.state_dict(), tree.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    if cfg["use_radial_filters"]:
        assert any(v.ndim == 2 for k, v in nets["G_ema"].state_dict().items() if k.endswith("down_filter"))
    S = nets["G_ema"].state_dict()
    z, c, images = sg3_probe(cfg)
    image = gan.generate(z)
    assert image.shape == (4, 3, 32, 32) and image.std() > 1e-3
    assert max_diff(image, reference_sg3(S, cfg, z, c)) <= 1e-4
    assert max_diff(gan.generate(z, truncation=0.7), reference_sg3(S, cfg, z, c, psi=0.7)) <= 1e-4
    want = reference_discriminator(nets["D"].state_dict(), cfg, images, c)[:, 0]
    assert max_diff(gan.discriminate(images), want) <= 1e-4
    assert not (path.parent / "ran").exists()


@pytest.mark.parametrize("mutation", [("input_gain", False), ("output_scale", 1.0), ("grid_half_pixel", False),
                                      ("lrelu_gain", 1.0), ("clamp", False)])
@torch.no_grad()
def test_stylegan3_reference_mutations_break_the_match(sg3_model, mutation, monkeypatch):
    cfg, path, nets = sg3_model
    if mutation[0] == "clamp" and cfg["conv_clamp"] > 10:
        pytest.skip("the clamp is not reached in this config")
    z, c, _ = sg3_probe(cfg)
    monkeypatch.setitem(REF, *mutation)
    assert max_diff(load_gan(path).generate(z), reference_sg3(nets["G_ema"].state_dict(), cfg, z, c)) > 1e-3


def test_stylegan3_round_trip_and_fine_tuning_lowers_d(tmp_path):
    data, _ = sg3_network_pickle(SMALL_SG3, tmp_path / "ran")
    path = tmp_path / "network-snapshot-000200.pkl"
    path.write_bytes(data)
    gan = load_gan(path)
    save_gan(gan, tmp_path / "own.pt")
    again = load_gan(tmp_path / "own.pt")
    z = torch.randn(2, SMALL_SG3["z_dim"])
    with torch.no_grad():
        assert again.arch == "stylegan3" and torch.equal(again.generate(z), gan.generate(z))
    # the engine directly, with a small probe: 14 alias-free layers cost more than the StyleGAN2 case
    engine = Engine(gan, EngineConfig(lr=0.002, batch=2, probe_size=2, probe_every=5, snapshot_every=5, device="cpu"),
                    tmp_path / "run")
    for _ in range(5):
        engine.step()
    assert engine.last["probe_d"] < engine.probe_d0
    engine.close()
    assert load_gan(tmp_path / "run" / "snapshots" / "it00000005.pt").arch == "stylegan3"
