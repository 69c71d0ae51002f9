"""StyleGAN3 generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"; NVlabs/stylegan3
`training/networks_stylegan3.py`) in plain torch, keyed to NVlabs' names, for stylegan3-t and -r pickles.

The discriminator of these files is StyleGAN2-ADA's (`stylegan2_ada.Discriminator`). The generator:
- the layer geometry (cutoffs, stopbands, sampling rates, sizes with a 10 px margin, channels) follows the
  paper's geometric schedule from the pickled settings; the FIR filters come from the file's buffers
  (`up_filter`, `down_filter`: separable Kaiser taps, or a 2-D radial filter for -r), so no filter design is needed;
- the input is Fourier features: the stored frequencies and phases, rotated and translated by an affine map of
  the first w, amplitude-damped near the band limit, sampled on a [-size/2, size/2] / sampling_rate grid, then
  mixed by a learned channels x channels matrix;
- each layer: modulated conv ("full" padding k-1; weights and styles pre-normalised, demodulated except in the
  ToRGB layer, inputs scaled by 1/sqrt(magnitude_ema)), then filtered leaky ReLU: bias, upsample by zero
  insertion + up_filter (gain up^2) with the layer's asymmetric padding, leaky ReLU (slope 0.2, gain sqrt(2);
  linear for ToRGB), clamp to +-conv_clamp, down_filter and decimation;
- the output is scaled by output_scale (0.25). There is no noise input; w_avg and magnitude_ema are read, never
  updated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .stylegan2_ada import FullyConnectedLayer, MappingNetwork, _split, upfirdn

DEFAULTS = {"channel_base": 32768, "channel_max": 512, "num_layers": 14, "num_critical": 2, "first_cutoff": 2.0,
            "first_stopband": 2**2.1, "last_stopband_rel": 2**0.3, "margin_size": 10, "output_scale": 0.25,
            "conv_kernel": 3, "filter_size": 6, "lrelu_upsampling": 2, "use_radial_filters": False,
            "conv_clamp": 256.0}


def layer_specs(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Fourier input's and each layer's geometry, from the SynthesisNetwork settings (paper, Sec. 3.2 / App. F)."""
    res, n, crit = cfg["img_resolution"], cfg["num_layers"], cfg["num_critical"]
    last_cutoff = res / 2
    exponents = np.minimum(np.arange(n + 1) / (n - crit), 1)
    cutoffs = cfg["first_cutoff"] * (last_cutoff / cfg["first_cutoff"]) ** exponents
    stopbands = cfg["first_stopband"] * (last_cutoff * cfg["last_stopband_rel"] / cfg["first_stopband"]) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    sizes = rates + cfg["margin_size"] * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((cfg["channel_base"] / 2) / cutoffs, cfg["channel_max"]))
    channels[-1] = cfg["img_channels"]
    layers = []
    for i in range(n + 1):
        prev, torgb = max(i - 1, 0), i == n
        tmp_rate = max(int(rates[prev]), int(rates[i])) * (1 if torgb else cfg["lrelu_upsampling"])
        up, down = int(round(tmp_rate / rates[prev])), int(round(tmp_rate / rates[i]))
        kernel = 1 if torgb else cfg["conv_kernel"]
        up_taps = cfg["filter_size"] * up if up > 1 and not torgb else 1
        down_taps = cfg["filter_size"] * down if down > 1 and not torgb else 1
        pad_total = ((int(sizes[i]) - 1) * down + 1 - (int(sizes[prev]) + kernel - 1) * up + up_taps + down_taps - 2)
        pad_lo = (pad_total + up) // 2  # the symmetric interpretation of sample positions (App. C.3)
        layers.append({"in_channels": int(channels[prev]), "out_channels": int(channels[i]),
                       "in_size": int(sizes[prev]), "out_size": int(sizes[i]), "torgb": torgb, "kernel": kernel,
                       "up": up, "down": down, "padding": (pad_lo, pad_total - pad_lo),
                       "up_taps": up_taps, "down_taps": down_taps,
                       "radial": cfg["use_radial_filters"] and i < n - crit,
                       "name": f"L{i}_{int(sizes[i])}_{int(channels[i])}"})
    first = {"channels": int(channels[0]), "size": int(sizes[0]), "sampling_rate": float(rates[0]),
             "bandwidth": float(cutoffs[0])}
    return first, layers


class SynthesisInput(nn.Module):
    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.size, self.sampling_rate, self.bandwidth = size, sampling_rate, bandwidth
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnectedLayer(w_dim, 4)
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", torch.randn(channels, 2))
        self.register_buffer("phases", torch.rand(channels) - 0.5)

    def forward(self, w: Tensor) -> Tensor:
        t = self.affine(w)  # (cos, sin, tx, ty), normalised so the rotation part has unit length
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        eye = torch.eye(3, device=w.device).expand(w.shape[0], 3, 3)
        rotate, translate = eye.clone(), eye.clone()
        rotate[:, 0, 0], rotate[:, 0, 1], rotate[:, 1, 0], rotate[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        translate[:, 0, 2], translate[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = rotate @ translate @ self.transform  # rotate the image, then translate, then the user's own
        phases = self.phases + (self.freqs @ transforms[:, :2, 2:]).squeeze(2)  # (B, C)
        freqs = self.freqs @ transforms[:, :2, :2]  # (B, C, 2)
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # pixel centres of a size x size grid spanning [-size/2, size/2] / sampling_rate (affine_grid, no corners)
        coords = (torch.arange(self.size, device=w.device) + 0.5 - self.size / 2) / self.sampling_rate
        grid = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), -1).reshape(-1, 2)  # (H*W, xy)
        x = torch.sin(2 * math.pi * (grid @ freqs.transpose(1, 2) + phases[:, None]))  # (B, H*W, C)
        x = (x * amplitudes[:, None]) @ (self.weight / math.sqrt(self.weight.shape[0])).t()
        return x.transpose(1, 2).reshape(w.shape[0], -1, self.size, self.size)


class SynthesisLayer(nn.Module):
    def __init__(self, w_dim: int, spec: Mapping[str, Any], conv_clamp: float | None):
        super().__init__()
        self.spec, self.conv_clamp = dict(spec), conv_clamp
        self.affine = FullyConnectedLayer(w_dim, spec["in_channels"], bias_init=1)
        k = spec["kernel"]
        self.weight = nn.Parameter(torch.randn(spec["out_channels"], spec["in_channels"], k, k))
        self.bias = nn.Parameter(torch.zeros(spec["out_channels"]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        # identity filters (1 tap) are None in NVlabs' files and so absent from their state
        self.register_buffer("up_filter", torch.zeros(spec["up_taps"]) if spec["up_taps"] > 1 else None)
        down_shape = (spec["down_taps"],) * (2 if spec["radial"] else 1)
        self.register_buffer("down_filter", torch.zeros(down_shape) if spec["down_taps"] > 1 else None)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        spec, weight = self.spec, self.weight
        styles = self.affine(w)
        demodulate = not spec["torgb"]
        if demodulate:  # NVlabs pre-normalises (it cancels in the demodulation but for the 1e-8)
            weight = weight * weight.square().mean((1, 2, 3), keepdim=True).rsqrt()
            styles = styles * styles.square().mean().rsqrt()
        else:
            styles = styles / math.sqrt(spec["in_channels"] * spec["kernel"] ** 2)
        x = F.conv2d(x * (styles * self.magnitude_ema.rsqrt())[:, :, None, None], weight, padding=spec["kernel"] - 1)
        if demodulate:
            x = x * torch.rsqrt(styles.square() @ weight.square().sum((2, 3)).t() + 1e-8)[:, :, None, None]
        x = upfirdn(x + self.bias[None, :, None, None], self.up_filter, up=spec["up"], pad=spec["padding"],
                    gain=spec["up"] ** 2)
        if demodulate:
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return upfirdn(x, self.down_filter, down=spec["down"])


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__()
        first, specs = layer_specs(cfg)
        self.output_scale = cfg["output_scale"]
        self.num_ws = cfg["num_layers"] + 2
        self.input = SynthesisInput(cfg["w_dim"], **first)
        self.layer_names = [spec["name"] for spec in specs]
        for spec in specs:
            setattr(self, spec["name"], SynthesisLayer(cfg["w_dim"], spec, cfg["conv_clamp"]))

    def forward(self, ws: Tensor, noise: Sequence[Tensor | None] = ()) -> Tensor:
        """ws (B, num_ws, w_dim) or one w (B, w_dim) for every layer; StyleGAN3 has no noise inputs."""
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        x = self.input(ws[:, 0])
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x, ws[:, i + 1])
        return x * self.output_scale


class Generator(nn.Module):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.synthesis = SynthesisNetwork(config)
        self.mapping = MappingNetwork(config["z_dim"], config["c_dim"], config["w_dim"], **config["mapping"])

    def const_noise(self, batch: int) -> list[Tensor]:
        """No noise maps: the StyleGAN3 synthesis has no noise inputs (the GAN facade asks every NVlabs model)."""
        return []

    def forward(self, z: Tensor, c: Tensor | None) -> Tensor:
        return self.synthesis(self.mapping(z, c))


def generator_config(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """From a networks_stylegan3 `Generator._init_kwargs` (synthesis settings at the top level)."""
    flat = {k: v for k, v in init_kwargs.items() if k != "mapping_kwargs"}
    _split(flat, {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", *DEFAULTS}, "StyleGAN3 generator")
    cfg = {**DEFAULTS, **{k: flat[k] for k in DEFAULTS if k in flat}}
    mapping = _split(init_kwargs.get("mapping_kwargs") or {}, {"num_layers", "lr_multiplier"}, "StyleGAN3 mapping")
    res = int(flat["img_resolution"])
    if res < 4 or res & (res - 1):
        raise ValueError(f"StyleGAN3 generator img_resolution {res} is not a power of two >= 4")
    clamp = cfg["conv_clamp"]
    return {"z_dim": int(flat["z_dim"]), "w_dim": int(flat["w_dim"]), "c_dim": int(flat.get("c_dim", 0)),
            "img_resolution": res, "img_channels": int(flat["img_channels"]),
            **{k: type(DEFAULTS[k])(v) for k, v in cfg.items() if k != "conv_clamp"},
            "conv_clamp": None if clamp is None else float(clamp),
            "mapping": {"num_layers": int(mapping.get("num_layers", 2)), "embed_features": None,
                        "layer_features": None, "lr_multiplier": float(mapping.get("lr_multiplier", 0.01))}}
