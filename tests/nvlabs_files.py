"""Write network pickles the way NVlabs' training loop does, without NVlabs' code.

`training_loop.py` pickles `dict(training_set_kwargs, G, D, G_ema, augment_pipe)`; every network class is a
`torch_utils.persistence` class whose `__reduce__` gives `_reconstruct_persistent_obj(meta)` with
`meta = {type: 'class', version: 6, module_src, class_name, state: module.__dict__}`. `Persistent` reduces the
same way, through a stand-in `torch_utils.persistence` (and `dnnlib.util.EasyDict`) that exists in
`sys.modules` only while the bytes are written. The trees below have NVlabs' module nesting, key names,
shapes and attributes (numpy-float gains among them) for a given config; their `module_src` is code that
would create a marker file if anyone ran it.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

FILTER = torch.tensor([1.0, 3.0, 3.0, 1.0])
FILTER = (FILTER[:, None] * FILTER[None, :]) / 64


def module_src(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).touch()  # must never run\n"


class Persistent:
    """One NVlabs module as persistence pickles it."""

    def __init__(self, class_name: str, args: tuple = (), kwargs: dict | None = None, params: dict | None = None,
                 buffers: dict | None = None, modules: dict | None = None, **attributes: Any):
        self.class_name, self.args, self.kwargs = class_name, args, kwargs or {}
        self.params, self.buffers, self.modules = params or {}, buffers or {}, modules or {}
        self.attributes = attributes

    def tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        for name, t in (*self.params.items(), *self.buffers.items()):
            if t is not None:
                yield prefix + name, t
        for name, m in self.modules.items():
            yield from m.tensors(f"{prefix}{name}.")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.tensors())

    def __reduce__(self):
        persistence = sys.modules["torch_utils.persistence"]
        state = {
            "training": False,
            "_parameters": OrderedDict((k, None if v is None else torch.nn.Parameter(v, requires_grad=False))
                                       for k, v in self.params.items()),
            "_buffers": OrderedDict(self.buffers),
            "_non_persistent_buffers_set": set(),
            "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(), "_forward_pre_hooks": OrderedDict(),
            "_state_dict_hooks": OrderedDict(), "_load_state_dict_pre_hooks": OrderedDict(),
            "_modules": OrderedDict(self.modules),
            "_init_args": self.args,
            "_init_kwargs": self.kwargs,
            **self.attributes,
        }
        meta = {"type": "class", "version": 6, "module_src": persistence.SOURCE, "class_name": self.class_name,
                "state": state}
        return persistence._reconstruct_persistent_obj, (meta,)


class _Rng:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, *shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=self.g) * scale + offset


NET = "training.networks."


def fc(rng: _Rng, n_in: int, n_out: int, lrelu: bool = False, lr: float = 1.0, bias_init: float = 0.0,
       bias: bool = True) -> Persistent:
    return Persistent(NET + "FullyConnectedLayer", (n_in, n_out), {"activation": "lrelu" if lrelu else "linear",
                                                                   "lr_multiplier": lr, "bias_init": bias_init},
                      {"weight": rng(n_out, n_in) / lr, "bias": rng(n_out, scale=0.1, offset=bias_init) if bias
                       else None},
                      activation="lrelu" if lrelu else "linear", weight_gain=np.float64(lr / np.sqrt(n_in)),
                      bias_gain=lr)


def conv(rng: _Rng, n_in: int, n_out: int, k: int, lrelu: bool = True, bias: bool = True, up: int = 1,
         down: int = 1, clamp: float | None = None) -> Persistent:
    return Persistent(NET + "Conv2dLayer", (n_in, n_out), {"kernel_size": k, "bias": bias, "up": up, "down": down,
                                                           "conv_clamp": clamp},
                      {"weight": rng(n_out, n_in, k, k), "bias": rng(n_out, scale=0.1) if bias else None},
                      {"resample_filter": FILTER.clone()}, activation="lrelu" if lrelu else "linear", up=up,
                      down=down, conv_clamp=clamp, padding=k // 2, weight_gain=np.float64(1 / np.sqrt(n_in * k * k)),
                      act_gain=np.float64(np.sqrt(2) if lrelu else 1.0))


def mapping(rng: _Rng, z_dim: int, c_dim: int, w_dim: int, layers: int, w_avg: bool) -> Persistent:
    embed = w_dim if c_dim else 0
    features = [z_dim + embed] + [w_dim] * layers
    modules = {"embed": fc(rng, c_dim, embed)} if c_dim else {}
    modules.update({f"fc{i}": fc(rng, features[i], features[i + 1], lrelu=True, lr=0.01) for i in range(layers)})
    return Persistent(NET + "MappingNetwork", (), {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim,
                                                   "num_layers": layers},
                      buffers={"w_avg": rng(w_dim, scale=0.3)} if w_avg else {}, modules=modules,
                      z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_layers=layers)


def synthesis_layer(rng: _Rng, n_in: int, n_out: int, w_dim: int, res: int, up: int, clamp: float | None):
    return Persistent(NET + "SynthesisLayer", (n_in, n_out), {"w_dim": w_dim, "resolution": res, "up": up,
                                                              "conv_clamp": clamp},
                      {"weight": rng(n_out, n_in, 3, 3), "noise_strength": rng(scale=0.3),
                       "bias": rng(n_out, scale=0.1)},
                      {"resample_filter": FILTER.clone(), "noise_const": rng(res, res)},
                      {"affine": fc(rng, w_dim, n_in, bias_init=1.0)},
                      resolution=res, up=up, use_noise=True, activation="lrelu", conv_clamp=clamp, padding=1,
                      act_gain=np.float64(np.sqrt(2)))


def generator(cfg: dict, seed: int = 0, easydict: type = dict) -> Persistent:
    rng = _Rng(seed)
    res_log2 = int(np.log2(cfg["img_resolution"]))
    ch = {2**i: min(cfg["channel_base"] // 2**i, cfg["channel_max"]) for i in range(2, res_log2 + 1)}
    arch, clamp, w = cfg["architecture"], cfg["conv_clamp"], cfg["w_dim"]
    blocks = {}
    for res in ch:
        n_in, n_out, last = (ch[res // 2] if res > 4 else 0), ch[res], res == cfg["img_resolution"]
        modules = {}
        if n_in:
            modules["conv0"] = synthesis_layer(rng, n_in, n_out, w, res, 2, clamp)
        modules["conv1"] = synthesis_layer(rng, n_out, n_out, w, res, 1, clamp)
        if last or arch == "skip":
            modules["torgb"] = Persistent(NET + "ToRGBLayer", (n_out, 3, w), {"conv_clamp": clamp},
                                          {"weight": rng(3, n_out, 1, 1), "bias": rng(3, scale=0.1)},
                                          modules={"affine": fc(rng, w, n_out, bias_init=1.0)},
                                          conv_clamp=clamp, weight_gain=np.float64(1 / np.sqrt(n_out)))
        if n_in and arch == "resnet":
            modules["skip"] = conv(rng, n_in, n_out, 1, lrelu=False, bias=False, up=2)
        blocks[f"b{res}"] = Persistent(NET + "SynthesisBlock", (n_in, n_out), {"architecture": arch},
                                       {"const": rng(n_out, 4, 4)} if not n_in else {},
                                       {"resample_filter": FILTER.clone()}, modules, in_channels=n_in,
                                       resolution=res, architecture=arch, is_last=last)
    synthesis_kwargs = easydict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"],
                                num_fp16_res=cfg["num_fp16_res"], conv_clamp=clamp, architecture=arch)
    kwargs = {"z_dim": cfg["z_dim"], "w_dim": w, "mapping_kwargs": easydict(num_layers=cfg["map"]),
              "synthesis_kwargs": synthesis_kwargs, "c_dim": cfg["c_dim"], "img_resolution": cfg["img_resolution"],
              "img_channels": 3}
    synthesis = Persistent(NET + "SynthesisNetwork", (), {}, modules=blocks, img_resolution=cfg["img_resolution"])
    return Persistent(NET + "Generator", (), kwargs, modules={
        "synthesis": synthesis, "mapping": mapping(rng, cfg["z_dim"], cfg["c_dim"], w, cfg["map"], True)},
        z_dim=cfg["z_dim"], c_dim=cfg["c_dim"], w_dim=w)


def discriminator(cfg: dict, seed: int = 1, easydict: type = dict) -> Persistent:
    rng = _Rng(seed)
    res_log2 = int(np.log2(cfg["img_resolution"]))
    ch = {2**i: min(cfg["channel_base"] // 2**i, cfg["channel_max"]) for i in range(2, res_log2 + 1)}
    arch, clamp = cfg["d_architecture"], cfg["conv_clamp"]
    modules = {}
    for res in range(res_log2, 2, -1):
        res = 2**res
        n_in = ch[res] if res < cfg["img_resolution"] else 0
        block = {}
        if n_in == 0 or arch == "skip":
            block["fromrgb"] = conv(rng, 3, ch[res], 1, clamp=clamp)
        block["conv0"] = conv(rng, ch[res], ch[res], 3, clamp=clamp)
        block["conv1"] = conv(rng, ch[res], ch[res // 2], 3, down=2, clamp=clamp)
        if arch == "resnet":
            block["skip"] = conv(rng, ch[res], ch[res // 2], 1, lrelu=False, bias=False, down=2)
        modules[f"b{res}"] = Persistent(NET + "DiscriminatorBlock", (n_in, ch[res], ch[res // 2]),
                                        {"architecture": arch}, buffers={"resample_filter": FILTER.clone()},
                                        modules=block, in_channels=n_in, architecture=arch)
    cmap_dim = ch[4] if cfg["c_dim"] else 0
    if cfg["c_dim"]:
        modules["mapping"] = mapping(rng, 0, cfg["c_dim"], cmap_dim, 8, False)
    epilogue = {}
    if arch == "skip":
        epilogue["fromrgb"] = conv(rng, 3, ch[4], 1)
    epilogue["mbstd"] = Persistent(NET + "MinibatchStdLayer", (), {"group_size": cfg["mbstd_group_size"],
                                                                   "num_channels": cfg["mbstd_num_channels"]},
                                   group_size=cfg["mbstd_group_size"], num_channels=cfg["mbstd_num_channels"])
    epilogue["conv"] = conv(rng, ch[4] + cfg["mbstd_num_channels"], ch[4], 3, clamp=clamp)
    epilogue["fc"] = fc(rng, ch[4] * 16, ch[4], lrelu=True)
    epilogue["out"] = fc(rng, ch[4], cmap_dim or 1)
    modules["b4"] = Persistent(NET + "DiscriminatorEpilogue", (ch[4],), {"cmap_dim": cmap_dim}, modules=epilogue,
                               cmap_dim=cmap_dim, architecture=arch)
    kwargs = {"block_kwargs": easydict(), "mapping_kwargs": easydict(), "architecture": arch,
              "epilogue_kwargs": easydict(mbstd_group_size=cfg["mbstd_group_size"],
                                          mbstd_num_channels=cfg["mbstd_num_channels"]),
              "channel_base": cfg["channel_base"], "channel_max": cfg["channel_max"],
              "num_fp16_res": cfg["num_fp16_res"], "conv_clamp": clamp, "c_dim": cfg["c_dim"],
              "img_resolution": cfg["img_resolution"], "img_channels": 3}
    return Persistent(NET + "Discriminator", (), kwargs, modules=modules, c_dim=cfg["c_dim"])


SMALL = {"z_dim": 24, "w_dim": 32, "c_dim": 0, "img_resolution": 16, "channel_base": 256, "channel_max": 32,
         "map": 2, "num_fp16_res": 2, "conv_clamp": 256, "architecture": "skip", "d_architecture": "resnet",
         "mbstd_group_size": 2, "mbstd_num_channels": 1}


@contextmanager
def nvlabs_modules(marker: Path, legacy_numpy: bool = False) -> Iterator[type]:
    """Stand-in torch_utils.persistence and dnnlib.util (and numpy 1's module name) while pickling; yields
    the EasyDict class."""
    fakes = {name: types.ModuleType(name) for name in ("torch_utils", "torch_utils.persistence", "dnnlib",
                                                       "dnnlib.util", "numpy.core.multiarray")}

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("only for pickling")

    def scalar(dtype, data):
        raise AssertionError("only for pickling")

    class EasyDict(dict):
        pass

    for obj, module, name in ((_reconstruct_persistent_obj, "torch_utils.persistence", "_reconstruct_persistent_obj"),
                              (EasyDict, "dnnlib.util", "EasyDict"), (scalar, "numpy.core.multiarray", "scalar")):
        obj.__module__, obj.__qualname__ = module, name
        setattr(fakes[module], name, obj)
    fakes["torch_utils.persistence"].SOURCE = module_src(marker)
    if not legacy_numpy:
        del fakes["numpy.core.multiarray"]
    saved = {name: sys.modules.get(name) for name in fakes}
    sys.modules.update(fakes)
    try:
        yield EasyDict
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def network_pickle(cfg: dict, marker: Path, legacy_numpy: bool = False, seed: int = 0,
                   extra: dict | None = None) -> tuple[bytes, dict[str, Persistent]]:
    """Bytes of a network-snapshot pkl (G, D, G_ema differ) and the trees written into it; `legacy_numpy` writes
    it as stylegan2-ada's 2021 setting did (Python 3.7: protocol 3, numpy 1 names)."""
    with nvlabs_modules(marker, legacy_numpy) as easydict:
        nets = {"G": generator(cfg, seed + 10, easydict), "D": discriminator(cfg, seed + 1, easydict),
                "G_ema": generator(cfg, seed, easydict)}
        data = {"training_set_kwargs": {"path": "faces.zip", "use_labels": bool(cfg["c_dim"]), "xflip": False,
                                        "resolution": cfg["img_resolution"], "max_size": 70000},
                **nets, "augment_pipe": None, **(extra or {})}
        buffer = io.BytesIO()
        # training_loop's pickle.dump uses the default protocol: 3 under stylegan2-ada's Python 3.7, 4 since 3.8
        pickler = pickle.Pickler(buffer, protocol=3 if legacy_numpy else pickle.DEFAULT_PROTOCOL)
        if legacy_numpy:  # numpy 1 wrote scalars as numpy.core.multiarray.scalar(dtype, bytes)
            scalar = sys.modules["numpy.core.multiarray"].scalar
            pickler.dispatch_table = copyreg.dispatch_table.copy()
            for kind in (np.float64, np.float32):
                pickler.dispatch_table[kind] = lambda x: (scalar, (x.dtype, x.tobytes()))
        pickler.dump(data)
    return buffer.getvalue(), nets


def write_network_pickle(path: Path, cfg: dict, marker: Path, **kwargs: Any) -> dict[str, Persistent]:
    data, nets = network_pickle(cfg, marker, **kwargs)
    path.write_bytes(data)
    return nets


# ------------------------------------------------------------------------------------------------- StyleGAN3

SG3 = "training.networks_stylegan3."
SMALL_SG3 = {"z_dim": 16, "w_dim": 24, "c_dim": 0, "img_resolution": 32, "channel_base": 128, "channel_max": 16,
             "map": 2, "num_fp16_res": 4, "conv_clamp": 256, "conv_kernel": 3, "use_radial_filters": False,
             "d_architecture": "resnet", "mbstd_group_size": 4, "mbstd_num_channels": 1}


def sg3_geometry(cfg: dict) -> tuple[dict, list[dict]]:
    """NVlabs' SynthesisNetwork schedule at its defaults (14 layers, 2 critical, margin 10, filter size 6)."""
    n, crit, res = 14, 2, cfg["img_resolution"]
    e = np.minimum(np.arange(n + 1) / (n - crit), 1)
    cutoffs = 2 * (res / 2 / 2) ** e
    stopbands = 2**2.1 * (res / 2 * 2**0.3 / 2**2.1) ** e
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    sizes = rates + 20
    sizes[-2:] = res
    channels = np.rint(np.minimum(cfg["channel_base"] / 2 / cutoffs, cfg["channel_max"]))
    channels[-1] = 3
    layers = []
    for i in range(n + 1):
        p, rgb = max(i - 1, 0), i == n
        tmp = max(rates[p], rates[i]) * (1 if rgb else 2)
        up, down = int(tmp // rates[p]), int(tmp // rates[i])
        k = 1 if rgb else cfg["conv_kernel"]
        ut, dt = (6 * up if up > 1 and not rgb else 1), (6 * down if down > 1 and not rgb else 1)
        total = (sizes[i] - 1) * down + 1 - (sizes[p] + k - 1) * up + ut + dt - 2
        lo = int((total + up) // 2)
        layers.append(dict(name=f"L{i}_{int(sizes[i])}_{int(channels[i])}", cin=int(channels[p]),
                           cout=int(channels[i]), k=k, up=up, down=down, pad=(lo, int(total) - lo), ut=ut, dt=dt,
                           radial=cfg["use_radial_filters"] and i < n - crit, cutoff=(cutoffs[p], cutoffs[i]),
                           rate=tmp, rgb=rgb))
    return {"channels": int(channels[0]), "size": int(sizes[0]), "rate": rates[0], "bandwidth": cutoffs[0]}, layers


def lowpass(taps: int, cutoff: float, fs: float, radial: bool) -> torch.Tensor | None:
    """A Kaiser-windowed sinc low-pass (its values are data to the loader; only the shape must be NVlabs')."""
    if taps == 1:
        return None
    t = np.arange(taps) - (taps - 1) / 2
    f = np.sinc(2 * cutoff / fs * t) * np.kaiser(taps, 6.0)
    f = np.outer(f, f) if radial else f
    return torch.tensor(f / f.sum(), dtype=torch.float32)


def generator_sg3(cfg: dict, seed: int = 0, easydict: type = dict) -> Persistent:
    rng = _Rng(seed)
    first, layers = sg3_geometry(cfg)
    w, c0 = cfg["w_dim"], first["channels"]
    freqs = rng(c0, 2)
    freqs = freqs / (freqs.norm(dim=1, keepdim=True) * freqs.square().sum(1, keepdim=True).exp().pow(0.25))
    modules = {"input": Persistent(SG3 + "SynthesisInput", (), {"w_dim": w, "channels": c0, "size": first["size"]},
                                   {"weight": rng(c0, c0)},
                                   {"transform": torch.eye(3), "freqs": freqs * first["bandwidth"],
                                    "phases": torch.rand(c0, generator=rng.g) - 0.5},
                                   {"affine": fc(rng, w, 4, bias_init=0.0)}, size=np.array([first["size"]] * 2),
                                   sampling_rate=first["rate"], bandwidth=first["bandwidth"])}
    modules["input"].modules["affine"].params["bias"] += torch.tensor([1.0, 0, 0, 0])  # NVlabs' bias_init
    for spec in layers:
        modules[spec["name"]] = Persistent(
            SG3 + "SynthesisLayer", (), {"w_dim": w, "is_torgb": spec["rgb"], "in_channels": spec["cin"],
                                         "out_channels": spec["cout"]},
            {"weight": rng(spec["cout"], spec["cin"], spec["k"], spec["k"]), "bias": rng(spec["cout"], scale=0.1)},
            {"magnitude_ema": torch.rand([], generator=rng.g) + 0.5,
             "up_filter": lowpass(spec["ut"], spec["cutoff"][0], spec["rate"], False),
             "down_filter": lowpass(spec["dt"], spec["cutoff"][1], spec["rate"], spec["radial"])},
            {"affine": fc(rng, w, spec["cin"], bias_init=1.0)}, up_factor=spec["up"], down_factor=spec["down"],
            padding=[spec["pad"][0], spec["pad"][1]] * 2, conv_kernel=spec["k"], in_size=np.array([1, 1]))
    kwargs = {"z_dim": cfg["z_dim"], "w_dim": w, "mapping_kwargs": easydict(num_layers=cfg["map"]),
              "channel_base": cfg["channel_base"], "channel_max": cfg["channel_max"], "magnitude_ema_beta": 0.999,
              "c_dim": cfg["c_dim"], "img_resolution": cfg["img_resolution"], "img_channels": 3,
              "num_fp16_res": cfg["num_fp16_res"], "conv_clamp": cfg["conv_clamp"]}
    if cfg["conv_kernel"] != 3 or cfg["use_radial_filters"]:  # stylegan3-r
        kwargs.update(conv_kernel=cfg["conv_kernel"], use_radial_filters=cfg["use_radial_filters"])
    mapping_net = mapping(rng, cfg["z_dim"], cfg["c_dim"], w, cfg["map"], True)
    mapping_net.class_name = SG3 + "MappingNetwork"
    return Persistent(SG3 + "Generator", (), kwargs, modules={
        "synthesis": Persistent(SG3 + "SynthesisNetwork", (), {}, modules=modules), "mapping": mapping_net})


def sg3_network_pickle(cfg: dict, marker: Path, seed: int = 0) -> tuple[bytes, dict[str, Persistent]]:
    """A stylegan3-t/-r network-snapshot pkl: StyleGAN3 G / G_ema, StyleGAN2 D (networks_stylegan2)."""
    with nvlabs_modules(marker) as easydict:
        d = discriminator(cfg, seed + 1, easydict)
        d.class_name = "training.networks_stylegan2.Discriminator"
        nets = {"G": generator_sg3(cfg, seed + 10, easydict), "D": d, "G_ema": generator_sg3(cfg, seed, easydict)}
        data = pickle.dumps({"training_set_kwargs": {"resolution": cfg["img_resolution"]}, **nets,
                             "augment_pipe": None})
    return data, nets
