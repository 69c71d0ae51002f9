"""StyleGAN2-ADA (NVlabs/stylegan2-ada-pytorch `training/networks.py`) in plain torch, keyed to NVlabs' names.

The modules nest and name their parameters and buffers as NVlabs' do (`mapping.fc0.weight`,
`synthesis.b16.conv0.affine.bias`, `b4.out.weight`, ...), so the tensors read from a network pickle load
strictly. Behaviour follows NVlabs' reference (non-CUDA) code paths:
- weights are stored raw and scaled at run time: fully connected lr_mul/sqrt(in) (bias * lr_mul), conv
  1/sqrt(in * k^2); the mapping's lr_mul is 0.01;
- bias_act: x + b, activation, gain (sqrt(2) for lrelu, times the block's gain), then clamp to +-conv_clamp
  (times the gain) wherever the file sets conv_clamp, at every resolution, as NVlabs does;
- upfirdn2d with the [1,3,3,1] filter: up x2 = zero insertion, pad (2, 1), filter, gain 4; down x2 = pad
  (1, 1), filter, keep every second sample; a 3x3 conv with up=2 is a transposed conv (stride 2) followed by
  the filter padded (1, 1); with down=2 the filter (padded 2, 2) precedes a stride-2 conv;
- modulated conv: styles = affine(w) (ToRGB: times 1/sqrt(in)); demodulation by 1/sqrt(sum (w*s)^2 + 1e-8);
  noise (noise_const or fresh maps, times noise_strength) is added after demodulation, before bias_act;
- fp16 blocks (num_fp16_res) run in fp32 here; the moving average w_avg is read, never updated.
The modulated conv runs as x * s -> one dense conv -> * demod, NVlabs' own non-fused path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .stylegan2 import make_kernel

SQRT2 = math.sqrt(2.0)
SQRT_HALF = math.sqrt(0.5)
ARCHITECTURES = ("orig", "skip", "resnet")


def channels_for(resolutions: Sequence[int], channel_base: int, channel_max: int) -> dict[int, int]:
    return {res: min(channel_base // res, channel_max) for res in resolutions}


def bias_act(x: Tensor, bias: Tensor | None, lrelu: bool, gain: float = 1.0, clamp: float | None = None) -> Tensor:
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    if lrelu:
        x = F.leaky_relu(x, 0.2) * (SQRT2 * gain)
    elif gain != 1:
        x = x * gain
    return x if clamp is None else x.clamp(-clamp * gain, clamp * gain)


def upfirdn(x: Tensor, f: Tensor | None, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
            gain: float = 1.0) -> Tensor:
    """NVlabs' upfirdn2d: zero insertion, pad (negative crops), FIR filter (a true convolution; 1-D taps run as two
    passes), decimation. The filter runs depthwise (groups=C), 3-10x faster on CPU than as one single-channel
    conv over B*C maps; decimation is the conv's stride."""
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    if f is None:  # identity filter
        return x[:, :, ::down, ::down] * gain
    taps = (f.flip(list(range(f.ndim))) * gain ** (f.ndim / 2)).to(x)
    if f.ndim == 1:
        x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, -1, -1, -1), stride=(1, down), groups=c)
        return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, -1, -1, -1), stride=(down, 1), groups=c)
    return F.conv2d(x, taps[None, None].expand(c, -1, -1, -1), stride=down, groups=c)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    return upfirdn(x, f, up=2, pad=(2, 1), gain=4)


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    return upfirdn(x, f, down=2, pad=(1, 1))


def _filter() -> Tensor:
    return make_kernel([1, 3, 3, 1])


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, lrelu: bool = False,
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain, self.bias_gain, self.lrelu = lr_multiplier / math.sqrt(in_features), lr_multiplier, lrelu

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias * self.bias_gain
        return bias_act(x @ (self.weight * self.weight_gain).t(), bias, self.lrelu)


class Conv2dLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 lrelu: bool = False, up: int = 1, down: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("resample_filter", _filter())
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.up, self.down, self.lrelu, self.conv_clamp = up, down, lrelu, conv_clamp

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w, f = self.weight * self.weight_gain, self.resample_filter
        if self.up > 1:  # only the 1x1 resnet skip of G: conv, then upsample
            x = upsample2d(F.conv2d(x, w), f)
        elif self.down > 1:
            pad = 2 if w.shape[-1] == 3 else 1  # the filter's padding for a 3x3 (stride-2) or a 1x1 conv
            x = F.conv2d(upfirdn(x, f, pad=(pad, pad)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=w.shape[-1] // 2)
        return bias_act(x, self.bias, self.lrelu, gain, self.conv_clamp)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_layers: int = 8, embed_features: int | None = None,
                 layer_features: int | None = None, lr_multiplier: float = 0.01, w_avg: bool = True):
        super().__init__()
        self.z_dim, self.c_dim, self.num_layers = z_dim, c_dim, num_layers
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], lrelu=True,
                                                        lr_multiplier=lr_multiplier))
        if w_avg:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor | None, c: Tensor | None) -> Tensor:
        """z (B, z_dim), c (B, c_dim) one-hot -> w (B, w_dim); each input scaled to unit second moment."""
        parts = [_normalize(z)] if self.z_dim > 0 else []
        if self.c_dim > 0:
            parts.append(_normalize(self.embed(c)))
        x = torch.cat(parts, 1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


def _normalize(x: Tensor) -> Tensor:
    return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


class SynthesisLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: float | None = None):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.register_buffer("resample_filter", _filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None, gain: float = 1.0) -> Tensor:
        styles = self.affine(w)  # (B, in); the weight gain cancels in the demodulation, so NVlabs skips it
        x = x * styles[:, :, None, None]
        if self.up > 1:
            x = upfirdn(F.conv_transpose2d(x, self.weight.transpose(0, 1), stride=2), self.resample_filter, pad=(1, 1),
                        gain=4)
        else:
            x = F.conv2d(x, self.weight, padding=1)
        # sum over (in, k, k) of (weight * s)^2 = s^2 @ (sum_kk weight^2)
        demod = torch.rsqrt(styles.square() @ self.weight.square().sum((2, 3)).t() + 1e-8)
        x = x * demod[:, :, None, None]
        if noise is not None:
            x = x + noise * self.noise_strength
        return bias_act(x, self.bias, True, gain, self.conv_clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain, self.conv_clamp = 1 / math.sqrt(in_channels), conv_clamp

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = F.conv2d(x * styles[:, :, None, None], self.weight)  # not demodulated
        return bias_act(x, self.bias, False, 1.0, self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.architecture = in_channels, architecture
        self.register_buffer("resample_filter", _filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1 if is_last or architecture == "skip" else 0
        if self.num_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp)
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, up=2)

    def layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor,
                noise: Sequence[Tensor | None]) -> tuple[Tensor, Tensor | None]:
        if self.in_channels == 0:
            x = self.conv1(self.const.expand(ws.shape[0], -1, -1, -1), ws[:, 0], noise[0])
        elif self.architecture == "resnet":
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv1(self.conv0(x, ws[:, 0], noise[0]), ws[:, 1], noise[1], gain=SQRT_HALF)
            x = y + x
        else:
            x = self.conv1(self.conv0(x, ws[:, 0], noise[0]), ws[:, 1], noise[1])
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, ws[:, self.num_conv])
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, architecture: str = "skip", conv_clamp: float | None = None):
        super().__init__()
        log2 = int(math.log2(img_resolution))
        self.resolutions = [2**i for i in range(2, log2 + 1)]
        channels = channels_for(self.resolutions, channel_base, channel_max)
        self.num_ws = 0
        for res in self.resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res, img_channels,
                                   res == img_resolution, architecture, conv_clamp)
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.resolutions]

    def layers(self) -> list[SynthesisLayer]:
        return [layer for block in self.blocks() for layer in block.layers()]

    def forward(self, ws: Tensor, noise: Sequence[Tensor | None]) -> Tensor:
        """ws (B, num_ws, w_dim) or one w (B, w_dim) for every layer; one noise map (or None) per layer."""
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        x = img = None
        w_idx = n_idx = 0
        for block in self.blocks():
            # a block's ToRGB shares its w with the next block's first conv
            x, img = block(x, img, ws[:, w_idx:w_idx + block.num_conv + block.num_torgb],
                           noise[n_idx:n_idx + block.num_conv])
            w_idx += block.num_conv
            n_idx += block.num_conv
        return img


class Generator(nn.Module):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.z_dim, self.c_dim, self.w_dim = config["z_dim"], config["c_dim"], config["w_dim"]
        self.img_resolution = config["img_resolution"]
        self.synthesis = SynthesisNetwork(config["w_dim"], config["img_resolution"], config["img_channels"],
                                          config["channel_base"], config["channel_max"], config["architecture"],
                                          config["conv_clamp"])
        self.mapping = MappingNetwork(config["z_dim"], config["c_dim"], config["w_dim"], **config["mapping"])

    def const_noise(self, batch: int) -> list[Tensor]:
        """The stored noise_const maps, shared by the whole batch (NVlabs' noise_mode='const')."""
        return [layer.noise_const.expand(batch, 1, -1, -1) for layer in self.synthesis.layers()]

    def forward(self, z: Tensor, c: Tensor | None, noise: Sequence[Tensor | None] | None = None) -> Tensor:
        return self.synthesis(self.mapping(z, c), self.const_noise(z.shape[0]) if noise is None else noise)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
                 architecture: str = "resnet", conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.architecture = in_channels, architecture
        self.register_buffer("resample_filter", _filter())
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, lrelu=True, conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, lrelu=True, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, lrelu=True, down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor | None, img: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img)
            x = y if x is None else x + y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            return self.skip(x, gain=SQRT_HALF) + self.conv1(self.conv0(x), gain=SQRT_HALF), img
        return self.conv1(self.conv0(x)), img


def minibatch_stddev(x: Tensor, group_size: int | None, num_channels: int) -> Tensor:
    """Append the mean (over channels and pixels) stddev across groups of samples n, n + N/G, n + 2N/G, ...

    NVlabs needs N divisible by min(group_size, N); other batches use the largest group size that divides N.
    """
    n, c, h, w = x.shape
    g = min(group_size or n, n)
    g = next(size for size in range(g, 0, -1) if n % size == 0)
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean((2, 3, 4))  # (N/G, F)
    return torch.cat([x, y.reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)], 1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels: int, cmap_dim: int, img_channels: int, architecture: str = "resnet",
                 mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.architecture, self.cmap_dim = architecture, cmap_dim
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, lrelu=True)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, lrelu=True, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * 16, in_channels, lrelu=True)
        self.out = FullyConnectedLayer(in_channels, cmap_dim or 1)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None) -> Tensor:
        if self.architecture == "skip":
            x = x + self.fromrgb(img)
        if self.mbstd_num_channels > 0:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:  # projection discriminator: the logit is <out, cmap> / sqrt(cmap_dim)
            x = (x * cmap).sum(1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(nn.Module):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.c_dim, res = config["c_dim"], config["img_resolution"]
        self.resolutions = [2**i for i in range(int(math.log2(res)), 2, -1)]
        channels = channels_for([*self.resolutions, 4], config["channel_base"], config["channel_max"])
        arch, clamp = config["architecture"], config["conv_clamp"]
        for r in self.resolutions:
            setattr(self, f"b{r}", DiscriminatorBlock(channels[r] if r < res else 0, channels[r], channels[r // 2],
                                                       config["img_channels"], arch, clamp))
        cmap_dim = 0 if self.c_dim == 0 else (config["cmap_dim"] or channels[4])
        if self.c_dim > 0:
            self.mapping = MappingNetwork(0, self.c_dim, cmap_dim, **config["mapping"], w_avg=False)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim, config["img_channels"], arch,
                                        config["mbstd_group_size"], config["mbstd_num_channels"], clamp)

    def forward(self, img: Tensor, c: Tensor | None) -> Tensor:
        """Raw logits (B, 1); c is the one-hot class of conditional models."""
        x = None
        for r in self.resolutions:
            x, img = getattr(self, f"b{r}")(x, img)
        return self.b4(x, img, self.mapping(None, c) if self.c_dim > 0 else None)


# ---------------------------------------------------------------------------------------------------------------
# Constructor kwargs as pickled by NVlabs -> the plain config these modules are built from
# ---------------------------------------------------------------------------------------------------------------

# settings that change nothing once trained (speed, memory layout, training-only bookkeeping)
_IGNORED = {"num_fp16_res", "fp16_channels_last", "channels_last", "fused_modconv_default", "freeze_layers",
            "freeze_embed", "w_avg_beta", "magnitude_ema_beta"}
# settings these modules implement only at NVlabs' defaults
_DEFAULTS = {"resample_filter": [1, 3, 3, 1], "activation": "lrelu", "kernel_size": 3, "use_noise": True}


def _split(kwargs: Mapping[str, Any], known: set[str], what: str) -> dict[str, Any]:
    """The `known` entries; unknown ones must be ignorable or at their defaults, else ValueError."""
    for key, value in kwargs.items():
        if key in known or key in _IGNORED:
            continue
        default = _DEFAULTS.get(key, ValueError)
        if default is ValueError or (list(value) if isinstance(value, (list, tuple)) else value) != default:
            raise ValueError(f"{what} setting {key}={value!r} is not supported")
    return {k: kwargs[k] for k in known if k in kwargs}


def _mapping(kwargs: Mapping[str, Any], what: str) -> dict[str, Any]:
    known = _split(kwargs, {"num_layers", "embed_features", "layer_features", "lr_multiplier"}, what)
    return {"num_layers": int(known.get("num_layers", 8)), "embed_features": known.get("embed_features"),
            "layer_features": known.get("layer_features"), "lr_multiplier": float(known.get("lr_multiplier", 0.01))}


def _common(kwargs: Mapping[str, Any], default_architecture: str, what: str) -> dict[str, Any]:
    res = int(kwargs["img_resolution"])
    if res < 4 or res & (res - 1):
        raise ValueError(f"{what} img_resolution {res} is not a power of two >= 4")
    architecture = kwargs.get("architecture", default_architecture)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{what} architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    clamp = kwargs.get("conv_clamp")
    return {"c_dim": int(kwargs.get("c_dim", 0)), "img_resolution": res, "img_channels": int(kwargs["img_channels"]),
            "channel_base": int(kwargs.get("channel_base", 32768)), "channel_max": int(kwargs.get("channel_max", 512)),
            "architecture": architecture, "conv_clamp": None if clamp is None else float(clamp),
            "num_fp16_res": int(kwargs.get("num_fp16_res", 0))}


def generator_config(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """From `Generator._init_kwargs`: stylegan2-ada nests the synthesis settings in `synthesis_kwargs`, stylegan3's
    networks_stylegan2 passes them at the top level. Raises ValueError for settings not implemented here."""
    top = {k: v for k, v in init_kwargs.items() if k not in ("mapping_kwargs", "synthesis_kwargs")}
    flat = {**top, **(init_kwargs.get("synthesis_kwargs") or {})}
    known = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "channel_base", "channel_max",
             "architecture", "conv_clamp", "num_fp16_res"}
    _split(flat, known, "generator")
    return {"z_dim": int(flat["z_dim"]), "w_dim": int(flat["w_dim"]), **_common(flat, "skip", "generator"),
            "mapping": _mapping(init_kwargs.get("mapping_kwargs") or {}, "generator mapping")}


def discriminator_config(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """From `Discriminator._init_kwargs` (block, mapping and epilogue settings nested as NVlabs nests them)."""
    known = {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max",
             "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs"}
    _split(init_kwargs, known, "discriminator")
    _split(init_kwargs.get("block_kwargs") or {}, set(), "discriminator block")
    epilogue = _split(init_kwargs.get("epilogue_kwargs") or {}, {"mbstd_group_size", "mbstd_num_channels"},
                      "discriminator epilogue")
    group = epilogue.get("mbstd_group_size", 4)
    cmap_dim = init_kwargs.get("cmap_dim")
    return {**_common(init_kwargs, "resnet", "discriminator"),
            "cmap_dim": None if cmap_dim is None else int(cmap_dim),
            "mbstd_group_size": None if group is None else int(group),
            "mbstd_num_channels": int(epilogue.get("mbstd_num_channels", 1)),
            "mapping": _mapping(init_kwargs.get("mapping_kwargs") or {}, "discriminator mapping")}
