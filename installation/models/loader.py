"""Load any supported checkpoint file into a `GAN`, safely, with one clear line when it cannot be done.

Recognised layouts:
- StyleGAN1, rosinality: `train_step-N.model` / `stylegan-*px-new.model` dicts (generator, discriminator,
  g_running, optimisers) and bare g_running state_dicts (`NNNNNN.model`); zip or legacy (2019) serialisation.
- StyleGAN2, rosinality: train.py files (g, d, g_ema, optimisers, argparse `args`, ada_aug_p) and
  convert_weight.py files (g_ema, latent_avg, optional g / d).
- NVlabs stylegan2-ada-pytorch / stylegan3 network pickles (`network-snapshot-*.pkl`: G, D, G_ema) holding
  StyleGAN2-ADA or StyleGAN3 networks, read by `nvlabs_pickle` without running the code they carry.
- The project's own format (`save_gan`), which the shipped default model uses.

Other files are read with `torch.load(weights_only=True)`; the only class allowed beyond tensors is
`argparse.Namespace`, which rosinality's StyleGAN2 train.py stores under `args`.
"""

from __future__ import annotations

import argparse
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..exits import BadInput
from ..messages import first_line, quiet_torch_load, size_text
from ..storage import atomic_torch_save
from . import stylegan1, stylegan2, stylegan2_ada, stylegan3
from .gan import ARCHS, GAN, NVLABS_ARCHS, build_discriminator, build_generator, estimate_mean_latent
from .nvlabs_pickle import ModuleRecord, UnsafePickle, is_nvlabs_pickle, read_network_pickle

OWN_FORMAT_KEY = "uncanny_format"
OWN_FORMAT_VERSION = 1

SG1_TRAIN_KEYS = {"generator", "discriminator", "g_running"}
SG2_TRAIN_KEYS = {"g", "d", "g_ema"}
D_FILE_KINDS = ("StyleGAN1 train_step-N.model / stylegan-*px-new.model files, StyleGAN2 train.py checkpoints, "
                "StyleGAN2 converter files made with --disc, NVlabs network-snapshot-*.pkl files, "
                "or this project's own files")


class CheckpointError(BadInput):
    """A checkpoint cannot be used; the message is one line naming the problem and the fix."""


def _read(path: Path) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; pass the path of a .model/.pt checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; pass the checkpoint file inside it")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty; copy the checkpoint again")
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    if is_nvlabs_pickle(head):
        return _read_nvlabs(path)
    is_zip = head[:4] == b"PK\x03\x04"
    is_pickle = head[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unrecognised file header {head[:8]!r}); "
                              "pass a rosinality StyleGAN .model/.pt file")
    if is_zip and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: the file is truncated or corrupt ({size} bytes, zip index missing); "
                              "copy or download it again")
    if is_zip:
        _refuse_inflation(path, size)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), quiet_torch_load():
            return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, OSError, ValueError, IndexError, KeyError) as error:
        if "TorchScript" in str(error):
            raise CheckpointError(f"{path}: a TorchScript archive (torch.jit.save), not a checkpoint; pass a "
                                  "rosinality StyleGAN .model/.pt file") from None
        raise CheckpointError(f"{path}: the file is truncated or corrupt ({first_line(error)}); "
                              "copy or download it again") from None
    except Exception as error:  # pickle.UnpicklingError and friends: a pickle that is not plain weights
        raise CheckpointError(f"{path}: refused to unpickle it safely ({first_line(error)}); "
                              "only weight files can be loaded, never pickled code") from None


# torch.save stores a checkpoint's parts uncompressed, so they unpack to about the file's size; a compressed copy
# of one unpacks to a few times it. This much more is refused before anything is unpacked: a zip bomb of 1 MB
# claiming gigabytes reached 2.3 GB of memory in torch.load before it failed.
INFLATION_LIMIT = 4
INFLATION_SLACK = 64 * 2**20


def _refuse_inflation(path: Path, size: int) -> None:
    """CheckpointError when the zip's members would unpack to far more than the file (their sizes as the index
    declares them: a member that inflates beyond its declared size fails in the reader)."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: the file is truncated or corrupt ({first_line(error)}); copy or download it "
                              "again") from None
    if unpacked > INFLATION_LIMIT * size + INFLATION_SLACK:
        raise CheckpointError(f"{path}: refused: its parts would unpack to {size_text(unpacked)} from a "
                              f"{size_text(size)} file, which no checkpoint does (a zip bomb?); use the checkpoint "
                              "as torch.save wrote it")


class NVlabsPickle(dict):
    """The top-level dict of an NVlabs network pickle, networks as `ModuleRecord`s."""


def _read_nvlabs(path: Path) -> NVlabsPickle:
    try:
        return NVlabsPickle(read_network_pickle(path))
    except UnsafePickle as error:
        raise CheckpointError(f"{path}: refused to unpickle it safely ({first_line(error)}); "
                              "only weight files can be loaded, never pickled code") from None
    except Exception as error:  # EOFError, UnpicklingError, a storage that torch cannot read, ...
        raise CheckpointError(f"{path}: the NVlabs pickle is truncated or corrupt ({first_line(error)}); "
                              "copy or download it again") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _as_float32(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


# ----------------------------------------------------------------------------------------- config inference

def infer_stylegan1_generator_config(state: Mapping[str, Tensor]) -> dict[str, Any]:
    channels = []
    while f"generator.progression.{len(channels)}.conv2.conv.weight_orig" in state:
        channels.append(int(state[f"generator.progression.{len(channels)}.conv2.conv.weight_orig"].shape[0]))
    n_mlp = 0
    while f"style.{2 * n_mlp + 1}.linear.weight_orig" in state:
        n_mlp += 1
    if not channels or n_mlp == 0:
        raise ValueError("no generator.progression.N / style.N.linear weights")
    code_dim = int(state["style.1.linear.weight_orig"].shape[1])
    return {"code_dim": code_dim, "n_mlp": n_mlp, "channels": channels}


def infer_stylegan1_discriminator_config(state: Mapping[str, Tensor]) -> dict[str, Any]:
    activate = "from_rgb.0.0.conv.weight_orig" in state
    pattern = "from_rgb.{}.0.conv.weight_orig" if activate else "from_rgb.{}.conv.weight_orig"
    widths = []
    while pattern.format(len(widths)) in state:
        widths.append(int(state[pattern.format(len(widths))].shape[0]))
    if not widths:
        raise ValueError("no from_rgb.K weights")
    return {"channels": widths[::-1], "from_rgb_activate": activate}


def stylegan1_trained_resolution(state: Mapping[str, Tensor]) -> int:
    """Highest resolution whose block has learned noise strengths.

    Noise weights start at exactly zero and Adam never touches a block that is not in the graph yet, so the
    blocks above the size a file was trained to keep all-zero noise weights.
    """
    trained = 0
    i = 0
    while f"generator.progression.{i}.noise1.weight_orig" in state:
        if state[f"generator.progression.{i}.noise1.weight_orig"].abs().sum() > 0:
            trained = i
        i += 1
    return 4 * 2**trained


def _resolution_hint(path: Path) -> int | None:
    """rosinality file names tell the trained size: stylegan-256px-new.model, train_step-7.model (= 256).

    Only a power of two >= 4 counts; anything else in a name is not a size.
    """
    hint = None
    if m := re.search(r"(\d+)px", path.name):
        hint = int(m.group(1))
    elif m := re.search(r"train_step-(\d+)", path.name):
        hint = 4 * 2 ** (int(m.group(1)) - 1) if 1 <= int(m.group(1)) <= 9 else None
    return hint if hint is not None and hint >= 4 and hint & (hint - 1) == 0 else None


# ------------------------------------------------------------------------------------------- strict loading

def _load_strict(module: nn.Module, state: Mapping[str, Tensor], what: str, path: Path,
                 regenerable=lambda key: False) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not regenerable(k)]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
             for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if wrong:
            parts.append(f"wrong shape {_few(wrong)}")
        raise CheckpointError(f"{path}: {what} does not match its architecture: {'; '.join(parts)}")
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def _few(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _closest_format(state: Mapping[str, Tensor]) -> str:
    """Name the known layout sharing the most key names, with the first differences, for an unknown dict.

    StyleGAN1 candidates get as many blocks as the file has, so a small model is not told it lacks 1024 px.
    """
    g_blocks = _count_indexed(state, "generator.progression.")
    d_blocks = _count_indexed(state, "from_rgb.")
    with torch.device("meta"):
        candidates = {
            "StyleGAN1 g_running (rosinality)":
                stylegan1.StyledGenerator(channels=stylegan1.FFHQ_CHANNELS[:g_blocks]).state_dict().keys(),
            "StyleGAN1 discriminator (rosinality)":
                stylegan1.Discriminator(stylegan1.FFHQ_CHANNELS[:d_blocks]).state_dict().keys(),
            "StyleGAN2 generator (rosinality, 256 px)": stylegan2.Generator(256).state_dict().keys(),
            "StyleGAN2 discriminator (rosinality, 256 px)": stylegan2.Discriminator(256).state_dict().keys(),
        }
    keys = set(state)
    name, expected = max(candidates.items(), key=lambda item: len(keys & set(item[1])))
    missing = sorted(set(expected) - keys)
    unexpected = sorted(keys - set(expected))
    return f"closest known format is {name}: missing {_few(missing)}; unexpected {_few(unexpected)}"


def _count_indexed(state: Mapping[str, Tensor], prefix: str, default: int = 9) -> int:
    """1 + the largest N in keys 'prefixN.…' (clamped to the full network's 9 blocks), else `default`."""
    found = [int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))]
    return min(max(found) + 1, default) if found else default


# ------------------------------------------------------------------------------------------ the formats

def _infer(infer: Callable[[Mapping[str, Tensor]], dict[str, Any]], state: Mapping[str, Tensor], what: str,
           path: Path) -> dict[str, Any]:
    """Constructor arguments from a state_dict's key names and shapes, or one line naming what is off."""
    try:
        return infer(state)
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: {what} weights are incomplete ({error}); {_closest_format(state)}") from None


def _load_stylegan1(path: Path, g_state: Mapping[str, Tensor], d_state: Mapping[str, Tensor] | None,
                    fmt: str, resolution: int | None, trained: int | None = None) -> GAN:
    g_config = _infer(infer_stylegan1_generator_config, g_state, "StyleGAN1 generator", path)
    generator = build_generator("stylegan1", g_config)
    _load_strict(generator, _as_float32(g_state), "the StyleGAN1 generator", path)

    if trained is None:
        # A renamed file may claim more than it holds: the untrained blocks (zero noise weights) have the last word.
        detected = stylegan1_trained_resolution(g_state)
        trained = min(_resolution_hint(path) or detected, detected)
    trained = min(trained, generator.max_resolution)
    available = tuple(4 * 2**i for i in range(stylegan1.step_for_resolution(trained) + 1))
    if resolution is None:
        resolution = trained
    elif resolution not in available:
        raise CheckpointError(f"{path}: this StyleGAN1 file was trained up to {trained} px, so {resolution} px "
                              f"is not available; choose one of {', '.join(map(str, available))}")

    discriminator, d_config = None, None
    if d_state is not None:
        d_config = _infer(infer_stylegan1_discriminator_config, d_state, "StyleGAN1 discriminator", path)
        discriminator = build_discriminator("stylegan1", d_config)
        _load_strict(discriminator, _as_float32(d_state), "the StyleGAN1 discriminator", path)
        if len(d_config["channels"]) < stylegan1.step_for_resolution(resolution) + 1:
            raise CheckpointError(f"{path}: the discriminator stops below {resolution} px; choose a lower resolution")
    mean = estimate_mean_latent(generator, g_config["code_dim"])
    return GAN("stylegan1", generator, discriminator, resolution, g_config["code_dim"], mean, g_config, d_config,
               fmt, str(path), available)


def _load_stylegan2(path: Path, g_state: Mapping[str, Tensor], d_state: Mapping[str, Tensor] | None,
                    fmt: str, resolution: int | None, latent_avg: Tensor | None) -> GAN:
    g_config = _infer(stylegan2.infer_generator_config, g_state, "StyleGAN2 generator", path)
    generator = build_generator("stylegan2", g_config)
    _load_strict(generator, _as_float32(g_state), "the StyleGAN2 generator", path, stylegan2.is_regenerable_buffer)
    size = g_config["size"]
    if resolution is not None and resolution != size:
        raise CheckpointError(f"{path}: this StyleGAN2 file is {size} px only (StyleGAN2 does not grow); "
                              f"drop the resolution or pass {size}")
    discriminator, d_config = None, None
    if d_state is not None:
        d_config = _infer(stylegan2.infer_discriminator_config, d_state, "StyleGAN2 discriminator", path)
        discriminator = build_discriminator("stylegan2", d_config)
        _load_strict(discriminator, _as_float32(d_state), "the StyleGAN2 discriminator", path,
                     stylegan2.is_regenerable_buffer)
        if d_config["size"] != size:
            raise CheckpointError(f"{path}: the discriminator is {d_config['size']} px but the generator is "
                                  f"{size} px; the file mixes two models")
    if latent_avg is not None:
        mean = latent_avg.float().reshape(1, -1)
    else:
        mean = estimate_mean_latent(generator, g_config["style_dim"])
    return GAN("stylegan2", generator, discriminator, size, g_config["style_dim"], mean, g_config, d_config,
               fmt, str(path), (size,))


ARCH_NAMES = {"stylegan2-ada": "StyleGAN2-ADA", "stylegan3": "StyleGAN3"}


def _nvlabs_network(path: Path, data: Mapping[str, Any], key: str, kind: str) -> tuple[str, nn.Module, dict[str, Any]]:
    """(arch, module, config) of one pickled network; StyleGAN3 files pair their G with StyleGAN2-ADA's D."""
    record = data.get(key)
    if not isinstance(record, ModuleRecord) or record.short_name != kind:
        raise CheckpointError(f"{path}: '{key}' is not an NVlabs {kind} network in this pickle")
    arch = "stylegan3" if "networks_stylegan3" in record.class_name else "stylegan2-ada"
    if kind == "Discriminator":
        config = stylegan2_ada.discriminator_config
    else:
        config = stylegan3.generator_config if arch == "stylegan3" else stylegan2_ada.generator_config
    try:
        cfg = config(record.init_kwargs)
    except (ValueError, KeyError, TypeError) as error:
        why = f"missing setting {error.args[0]}" if isinstance(error, KeyError) else first_line(error)
        raise CheckpointError(f"{path}: the {key} network's settings cannot be rebuilt ({why})") from None
    build = build_generator if kind == "Generator" else build_discriminator
    module = build(arch, cfg)
    _load_strict(module, record.state_dict(), f"the {ARCH_NAMES[arch]} {key}", path)
    return arch, module, cfg


def _load_nvlabs(path: Path, data: Mapping[str, Any], resolution: int | None, use_ema: bool) -> GAN:
    key = "G_ema" if use_ema else "G"
    if key not in data:
        keys = ", ".join(sorted(map(str, data))[:6])
        raise CheckpointError(f"{path}: this NVlabs pickle has no {key} network (it holds: {keys})")
    arch, generator, g_config = _nvlabs_network(path, data, key, "Generator")
    discriminator, d_config = None, None
    if data.get("D") is not None:
        _, discriminator, d_config = _nvlabs_network(path, data, "D", "Discriminator")
    return _nvlabs_gan(path, arch, generator, g_config, discriminator, d_config, "nvlabs-pickle", resolution,
                       generator.mapping.w_avg)


def _nvlabs_gan(path: Path, arch: str, generator: nn.Module, g_config: dict[str, Any],
                discriminator: nn.Module | None, d_config: dict[str, Any] | None, fmt: str, resolution: int | None,
                mean: Tensor) -> GAN:
    size = g_config["img_resolution"]
    if resolution is not None and resolution != size:
        raise CheckpointError(f"{path}: this {ARCH_NAMES[arch]} file is {size} px only; drop the resolution or "
                              f"pass {size}")
    if d_config is not None and (d_config["img_resolution"], d_config["c_dim"]) != (size, g_config["c_dim"]):
        raise CheckpointError(f"{path}: the discriminator ({d_config['img_resolution']} px, {d_config['c_dim']} "
                              f"classes) does not match the generator ({size} px, {g_config['c_dim']} classes)")
    if g_config["img_channels"] != 3:
        raise CheckpointError(f"{path}: the generator makes {g_config['img_channels']}-channel images; "
                              "only RGB (3) models can be shown")
    return GAN(arch, generator, discriminator, size, g_config["z_dim"], mean.detach().float().reshape(1, -1).clone(),
               g_config, d_config, fmt, str(path), (size,))


def _load_own(path: Path, ckpt: Mapping[str, Any], resolution: int | None, use_ema: bool) -> GAN:
    version = ckpt.get(OWN_FORMAT_KEY)
    if version != OWN_FORMAT_VERSION:
        raise CheckpointError(f"{path}: uncanny checkpoint version {version!r} is not supported by this release "
                              f"(it reads version {OWN_FORMAT_VERSION}); update uncanny")
    arch = ckpt.get("arch")
    if arch not in ARCHS:
        raise CheckpointError(f"{path}: unknown architecture {arch!r} in an uncanny checkpoint")
    g_state = ckpt.get("g_ema") if use_ema and ckpt.get("g_ema") is not None else ckpt.get("generator")
    if g_state is None and ckpt.get("g_ema") is not None:
        raise CheckpointError(f"{path}: this file holds only the moving-average generator; load it without asking "
                              "for the raw generator (--raw-generator)")
    if g_state is None:
        raise CheckpointError(f"{path}: the uncanny checkpoint holds no generator weights")
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), Mapping) else {}
    journey_lr = meta.get("journey_lr")
    if journey_lr is not None and not valid_journey_lr(journey_lr):
        raise CheckpointError(f"{path}: its journey_lr {journey_lr!r} is not a learning rate (> 0 and <= 1); "
                              "re-save the file with tools/ship_default_model.py --journey-lr")
    if arch in NVLABS_ARCHS:
        gan = _load_own_nvlabs(path, ckpt, arch, g_state, resolution)
    elif arch == "stylegan1":
        gan = _load_stylegan1(path, g_state, ckpt.get("discriminator"), "uncanny",
                              resolution or ckpt.get("resolution"), ckpt.get("trained_resolution"))
    else:
        gan = _load_stylegan2(path, g_state, ckpt.get("discriminator"), "uncanny", resolution,
                              ckpt.get("mean_latent"))
    gan.journey_lr = None if journey_lr is None else float(journey_lr)
    return gan


def _load_own_nvlabs(path: Path, ckpt: Mapping[str, Any], arch: str, g_state: Mapping[str, Tensor],
                     resolution: int | None) -> GAN:
    """NVlabs networks cannot be sized from their tensors alone (architecture, clamp), so the file carries configs."""
    name = ARCH_NAMES[arch]
    g_config, d_config, d_state = ckpt.get("g_config"), ckpt.get("d_config"), ckpt.get("discriminator")
    if not isinstance(g_config, Mapping) or (d_state is not None and not isinstance(d_config, Mapping)):
        raise CheckpointError(f"{path}: this uncanny {name} file lacks its network settings (g_config, "
                              "d_config); re-save it with this release")
    try:
        generator = build_generator(arch, g_config)
        discriminator = None if d_state is None else build_discriminator(arch, d_config)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: its {name} settings are broken ({first_line(error)})") from None
    _load_strict(generator, _as_float32(g_state), f"the {name} generator", path)
    if discriminator is not None:
        _load_strict(discriminator, _as_float32(d_state), f"the {name} discriminator", path)
    return _nvlabs_gan(path, arch, generator, dict(g_config), discriminator,
                       None if d_config is None else dict(d_config), "uncanny", resolution, ckpt["mean_latent"])


def valid_journey_lr(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1


def save_gan(gan: GAN, path: str | os.PathLike, raw_generator: nn.Module | None = None,
             half: bool = False, meta: dict[str, Any] | None = None) -> None:
    """Write the project's own format atomically: G (and optional raw G beside the EMA one), D, configs; the
    GAN's `journey_lr` goes into `meta`."""
    meta = dict(meta or {})
    if gan.journey_lr is not None:
        if not valid_journey_lr(gan.journey_lr):
            raise ValueError(f"journey_lr must be > 0 and <= 1, got {gan.journey_lr!r}")
        meta["journey_lr"] = float(gan.journey_lr)
    cast = (lambda sd: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}) if half else dict
    state = lambda m: cast({k: v.detach().cpu() for k, v in m.state_dict().items()})  # noqa: E731
    ckpt = {
        OWN_FORMAT_KEY: OWN_FORMAT_VERSION,
        "arch": gan.arch,
        "resolution": gan.resolution,
        "trained_resolution": max(gan.trained_resolutions or (gan.resolution,)),
        "g_ema": state(gan.generator),
        "generator": state(raw_generator) if raw_generator is not None else None,
        "discriminator": state(gan.discriminator) if gan.discriminator is not None else None,
        "mean_latent": gan.mean_latent.detach().cpu(),
        "g_config": gan.g_config,
        "d_config": gan.d_config,
        "meta": meta,
    }
    atomic_torch_save(ckpt, Path(path))


def load_gan(path: str | os.PathLike, resolution: int | None = None, device: str | torch.device = "cpu",
             use_ema: bool = True, require_discriminator: bool = False) -> GAN:
    """Load a checkpoint of any supported layout.

    `resolution` picks the output size of a progressive StyleGAN1 file (default: the largest it was trained
    to). `use_ema=False` takes the raw generator instead of its moving average where the file has both.
    Raises `CheckpointError` with a one-line explanation for every file that cannot be used.
    """
    path = Path(path)
    ckpt = _read(path)
    if isinstance(ckpt, NVlabsPickle):
        gan = _load_nvlabs(path, ckpt, resolution, use_ema)
    elif isinstance(ckpt, Mapping) and OWN_FORMAT_KEY in ckpt:
        gan = _load_own(path, ckpt, resolution, use_ema)
    elif isinstance(ckpt, Mapping) and SG1_TRAIN_KEYS <= set(ckpt):
        g_state = ckpt["g_running"] if use_ema else ckpt["generator"]
        gan = _load_stylegan1(path, g_state, ckpt["discriminator"], "stylegan1-train-step", resolution)
    elif _is_state_dict(ckpt) and any(k.startswith("generator.progression.") for k in ckpt):
        if not use_ema:
            raise CheckpointError(f"{path}: this bare StyleGAN1 file holds only the moving-average generator "
                                  "(g_running); load it without asking for the raw generator")
        gan = _load_stylegan1(path, ckpt, None, "stylegan1-g-running", resolution)
    elif isinstance(ckpt, Mapping) and "g_ema" in ckpt:
        if use_ema:
            g_state = ckpt["g_ema"]
        elif "g" in ckpt:
            g_state = ckpt["g"]
        else:
            raise CheckpointError(f"{path}: this StyleGAN2 file holds only g_ema; load it without asking for "
                                  "the raw generator")
        fmt = "stylegan2-train" if SG2_TRAIN_KEYS <= set(ckpt) and "g_optim" in ckpt else "stylegan2-converted"
        gan = _load_stylegan2(path, g_state, ckpt.get("d"), fmt, resolution, ckpt.get("latent_avg"))
    elif _is_state_dict(ckpt):
        raise CheckpointError(f"{path}: unknown key layout; {_closest_format(ckpt)}")
    elif isinstance(ckpt, Mapping):
        keys = ", ".join(sorted(map(str, ckpt))[:6])
        raise CheckpointError(f"{path}: not a recognised StyleGAN checkpoint (top-level keys: {keys}); expected "
                              "rosinality StyleGAN1 (generator/discriminator/g_running) or StyleGAN2 (g_ema) files")
    else:
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict; "
                              "pass a rosinality StyleGAN .model/.pt file")
    if require_discriminator and gan.discriminator is None:
        raise CheckpointError(f"{path}: this {gan.format} file has no discriminator, which the fine-tuning needs; "
                              f"use one of: {D_FILE_KINDS}")
    gan.generator.eval()
    if gan.discriminator is not None:
        gan.discriminator.eval()
    return gan.to(device)
