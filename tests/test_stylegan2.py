"""Tests for installation.models.stylegan2 (rosinality/stylegan2-pytorch compatible G and D).

The numerical tests compare the modules against an independent functional reference written below from
the documented facts (docs: checkpoint-formats.md section 2). It shares no code with the module and is built
differently: convolutions are sums of shifted copies contracted with einsum, every sample gets its own
modulated weight, transposed convs are explicit zero insertion + full convolution, FIR filters are explicit
tap loops, and minibatch stddev uses Python loops over groups. It runs in float64, so the differences
measured are the module's own float32 error.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.nn import functional as F

from installation.models.stylegan2 import (
    Discriminator,
    Generator,
    infer_discriminator_config,
    infer_generator_config,
    is_regenerable_buffer,
    stddev_group_size,
)

TOL = 1e-4
SQ2 = math.sqrt(2.0)

# ---------------------------------------------------------------------------------------------------------------
# Independent functional reference
# ---------------------------------------------------------------------------------------------------------------


def fir_kernel(gain: float = 1.0) -> torch.Tensor:
    """[1,3,3,1] outer product, normalised to sum 1, times gain (4 after 2x zero-insertion upsampling)."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    k = torch.outer(k, k)
    return k / k.sum() * gain


def lrelu(x, bias=None):
    """Fused leaky ReLU: add the per-channel bias, leaky ReLU with slope 0.2, gain sqrt(2)."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *[1] * (x.ndim - 2))
    return torch.where(x >= 0, x, 0.2 * x) * SQ2


def linear(x, w, b, lr_mul=1.0, act=False):
    """Equalised linear layer: weight * lr_mul / sqrt(in), bias * lr_mul."""
    y = x @ (w * lr_mul / math.sqrt(w.shape[1])).T
    return lrelu(y, b * lr_mul) if act else y + b * lr_mul


def zero_pad(x, p0, p1):
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, h + p0 + p1, w + p0 + p1)
    out[:, :, p0:p0 + h, p0:p0 + w] = x
    return out


def correlate(x, w, pad, stride=1):
    """Cross-correlation as a sum over kernel taps; w is (O, I, k, k) or per-sample (B, O, I, k, k)."""
    x = zero_pad(x, pad, pad)
    k = w.shape[-1]
    ho, wo = x.shape[2] - k + 1, x.shape[3] - k + 1
    out = 0
    for a in range(k):
        for b in range(k):
            patch = x[:, :, a:a + ho:stride, b:b + wo:stride]
            if w.ndim == 4:
                out = out + torch.einsum("nihw,oi->nohw", patch, w[:, :, a, b])
            else:
                out = out + torch.einsum("nihw,noi->nohw", patch, w[:, :, :, a, b])
    return out


def fir(x, k, pad, up=1, down=1):
    """upfirdn2d: explicit zero insertion, zero padding, convolution with k (tap loop), decimation."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = zero_pad(x, *pad)
    n = k.shape[0]
    ho, wo = x.shape[2] - n + 1, x.shape[3] - n + 1
    out = 0
    for i in range(n):
        for j in range(n):
            out = out + x[:, :, i:i + ho, j:j + wo] * k[n - 1 - i, n - 1 - j]  # convolution flips the taps
    return out[:, :, ::down, ::down]


def modulated_conv(sd, prefix, x, w, demodulate=True, upsample=False):
    weight = sd[prefix + ".weight"][0]  # (O, I, k, k)
    o, i, k, _ = weight.shape
    s = linear(w, sd[prefix + ".modulation.weight"], sd[prefix + ".modulation.bias"])  # (B, I)
    wb = weight[None] / math.sqrt(i * k * k) * s[:, None, :, None, None]  # one weight per sample
    if demodulate:
        wb = wb / torch.sqrt(wb.pow(2).sum((2, 3, 4), keepdim=True) + 1e-8)
    if not upsample:
        return correlate(x, wb, pad=k // 2)
    # transposed conv, stride 2 = zeros between samples, then full convolution (pad k-1, flipped taps)
    b, c, h, ww = x.shape
    z = x.new_zeros(b, c, 2 * h - 1, 2 * ww - 1)
    z[:, :, ::2, ::2] = x
    y = correlate(z, wb.flip(-1, -2), pad=k - 1)  # (2h+1) x (2w+1)
    return fir(y, fir_kernel(4.0), pad=(1, 1))  # blur back to 2h x 2w


def ref_mapping(sd, z, n_mlp, lr_mul=0.01):
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        x = linear(x, sd[f"style.{i}.weight"], sd[f"style.{i}.bias"], lr_mul=lr_mul, act=True)
    return x


def ref_generator(sd, latent, noise):
    """Synthesis from a (B, n_latent, D) latent and a full noise list."""
    b = latent.shape[0]
    n_blocks = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.bias", k))

    def styled(prefix, x, w, nz, up=False):
        x = modulated_conv(sd, prefix + ".conv", x, w, upsample=up)
        x = x + sd[prefix + ".noise.weight"] * nz
        return lrelu(x, sd[prefix + ".activate.bias"])

    def to_rgb(prefix, x, w):
        return modulated_conv(sd, prefix + ".conv", x, w, demodulate=False) + sd[prefix + ".bias"]

    x = sd["input.input"].expand(b, -1, -1, -1)
    x = styled("conv1", x, latent[:, 0], noise[0])
    rgb = to_rgb("to_rgb1", x, latent[:, 1])
    for r in range(n_blocks):
        x = styled(f"convs.{2 * r}", x, latent[:, 1 + 2 * r], noise[1 + 2 * r], up=True)
        x = styled(f"convs.{2 * r + 1}", x, latent[:, 2 + 2 * r], noise[2 + 2 * r])
        # previous RGB: 2x upsampling FIR, pad (2, 1), taps x4
        rgb = to_rgb(f"to_rgbs.{r}", x, latent[:, 3 + 2 * r]) + fir(rgb, fir_kernel(4.0), pad=(2, 1), up=2)
    return rgb


def ref_latent(sd, n_mlp, n_latent, styles, input_is_latent=False, truncation=1.0, truncation_latent=None,
               inject_index=None):
    ws = styles if input_is_latent else [ref_mapping(sd, z, n_mlp) for z in styles]
    if truncation < 1:
        ws = [truncation_latent + truncation * (w - truncation_latent) for w in ws]
    if ws[0].ndim == 3:
        return ws[0]
    if len(ws) == 1:
        return torch.stack([ws[0]] * n_latent, 1)
    return torch.stack([ws[0]] * inject_index + [ws[1]] * (n_latent - inject_index), 1)


def equal_conv(x, w, pad=0, stride=1):
    return correlate(x, w / math.sqrt(w[0].numel()), pad=pad, stride=stride)


def ref_discriminator(sd, x):
    x = lrelu(equal_conv(x, sd["convs.0.0.weight"]), sd["convs.0.1.bias"])
    n_blocks = sum(1 for k in sd if k.endswith(".conv1.0.weight"))
    for i in range(1, n_blocks + 1):
        p = f"convs.{i}"
        h = lrelu(equal_conv(x, sd[p + ".conv1.0.weight"], pad=1), sd[p + ".conv1.1.bias"])
        # downsampling: blur (pad 2 for 3x3, 1 for 1x1), then an unpadded stride-2 conv
        h = lrelu(equal_conv(fir(h, fir_kernel(), pad=(2, 2)), sd[p + ".conv2.1.weight"], stride=2),
                  sd[p + ".conv2.2.bias"])
        s = equal_conv(fir(x, fir_kernel(), pad=(1, 1)), sd[p + ".skip.1.weight"], stride=2)
        x = (h + s) / SQ2
    # minibatch stddev: group size = largest divisor of B that is <= min(B, 4); groups are strided
    b = x.shape[0]
    g = max(d for d in range(1, min(b, 4) + 1) if b % d == 0)
    m = b // g
    feat = x.new_empty(b, 1, *x.shape[2:])
    for j in range(m):
        members = [j + t * m for t in range(g)]
        grp = x[members]
        std = torch.sqrt(((grp - grp.mean(0)) ** 2).mean(0) + 1e-8).mean()
        feat[members] = std
    x = torch.cat([x, feat], 1)
    x = lrelu(equal_conv(x, sd["final_conv.0.weight"], pad=1), sd["final_conv.1.bias"])
    x = linear(x.reshape(b, -1), sd["final_linear.0.weight"], sd["final_linear.0.bias"], act=True)
    return linear(x, sd["final_linear.1.weight"], sd["final_linear.1.bias"])


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


def randomise(model, seed):
    """Perturb every parameter so zero-initialised biases and noise strengths matter too."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def f64(sd):
    return {k: v.double() for k, v in sd.items()}


# Narrow widths (resolution -> channels) keep the float64 reference fast while exercising every code path:
# widths change at the 16 px and 64 px up-convs (in != out) and inside the D ResBlocks. Upstream widths are
# checked separately at small sizes.
NARROW = {4: 32, 8: 32, 16: 16, 32: 16, 64: 8}
G_CFG = dict(size=64, style_dim=16, n_mlp=3, channels=NARROW)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    g = randomise(Generator(**G_CFG), 1)
    return g, f64(g.state_dict())


@pytest.fixture(scope="module")
def disc():
    torch.manual_seed(1)
    d = randomise(Discriminator(64, channels=NARROW), 2)
    return d, f64(d.state_dict())


def noise_list(g, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *n.shape[1:], generator=gen) for n in g.make_noise()]


def close(a, b):
    diff = (a.double() - b).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff}"
    return diff


# ---------------------------------------------------------------------------------------------------------------
# 1. Key layout
# ---------------------------------------------------------------------------------------------------------------


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_generator_256_layout():
    g = Generator(256, channel_multiplier=2)
    sd = g.state_dict()
    assert len(sd) == 135 and n_params(g) == 30_034_338
    assert g.n_latent == 14 and g.num_layers == 13 and g.style_dim == 512 and g.size == 256
    expected = {
        "style.1.weight": (512, 512), "style.8.bias": (512,), "input.input": (1, 512, 4, 4),
        "conv1.conv.weight": (1, 512, 512, 3, 3), "conv1.conv.modulation.weight": (512, 512),
        "conv1.conv.modulation.bias": (512,), "conv1.noise.weight": (1,), "conv1.activate.bias": (512,),
        "to_rgb1.bias": (1, 3, 1, 1), "to_rgb1.conv.weight": (1, 3, 512, 1, 1),
        "convs.0.conv.blur.kernel": (4, 4), "convs.7.noise.weight": (1,),
        "convs.8.conv.weight": (1, 256, 512, 3, 3), "convs.8.conv.blur.kernel": (4, 4),
        "convs.9.conv.modulation.weight": (256, 512), "convs.10.conv.weight": (1, 128, 256, 3, 3),
        "convs.11.activate.bias": (128,), "to_rgbs.0.upsample.kernel": (4, 4),
        "to_rgbs.3.conv.weight": (1, 3, 512, 1, 1), "to_rgbs.4.conv.weight": (1, 3, 256, 1, 1),
        "to_rgbs.5.conv.weight": (1, 3, 128, 1, 1), "to_rgbs.5.conv.modulation.bias": (128,),
        "noises.noise_0": (1, 1, 4, 4), "noises.noise_2": (1, 1, 8, 8), "noises.noise_12": (1, 1, 256, 256),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "convs.1.conv.blur.kernel" not in sd and "style.0.weight" not in sd and "style.9.weight" not in sd
    assert sum(k.startswith("convs.") and k.endswith(".blur.kernel") for k in sd) == 6
    assert type(g.style[0]).__name__ == "PixelNorm" and len(g.style) == 9  # PixelNorm + 8 EqualLinear
    assert torch.equal(g.state_dict()["convs.0.conv.blur.kernel"], torch.outer(*[torch.tensor([1., 3, 3, 1])] * 2) / 16)


def test_discriminator_256_layout():
    d = Discriminator(256, 2)
    sd = d.state_dict()
    assert len(sd) == 50 and n_params(d) == 28_864_129
    expected = {
        "convs.0.0.weight": (128, 3, 1, 1), "convs.0.1.bias": (128,), "convs.1.conv1.0.weight": (128, 128, 3, 3),
        "convs.1.conv1.1.bias": (128,), "convs.1.conv2.0.kernel": (4, 4), "convs.1.conv2.1.weight": (256, 128, 3, 3),
        "convs.1.conv2.2.bias": (256,), "convs.1.skip.0.kernel": (4, 4), "convs.1.skip.1.weight": (256, 128, 1, 1),
        "convs.2.conv2.1.weight": (512, 256, 3, 3), "convs.6.skip.1.weight": (512, 512, 1, 1),
        "final_conv.0.weight": (512, 513, 3, 3), "final_conv.1.bias": (512,),
        "final_linear.0.weight": (512, 8192), "final_linear.0.bias": (512,),
        "final_linear.1.weight": (1, 512), "final_linear.1.bias": (1,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "convs.7.conv1.0.weight" not in sd and "convs.1.skip.1.bias" not in sd


def test_1024_layout():
    g, d = Generator(1024), Discriminator(1024)
    gsd, dsd = g.state_dict(), d.state_dict()
    assert len(gsd) == 171 and g.n_latent == 18 and g.num_layers == 17
    assert tuple(gsd["noises.noise_16"].shape) == (1, 1, 1024, 1024) and "convs.15.noise.weight" in gsd
    assert [gsd[f"convs.{i}.activate.bias"].numel() for i in range(16)] == [512] * 8 + [256, 256, 128, 128, 64, 64,
                                                                                          32, 32]
    assert len(dsd) == 64 and n_params(d) == 29_012_513
    assert tuple(dsd["convs.0.0.weight"].shape) == (32, 3, 1, 1) and "convs.8.skip.1.weight" in dsd


def test_rejects_bad_sizes():
    for size in (3, 48, 2048):
        with pytest.raises(ValueError):
            Generator(size, style_dim=8, n_mlp=1)
        with pytest.raises(ValueError):
            Discriminator(size)


# ---------------------------------------------------------------------------------------------------------------
# 2. Numerical equivalence with the functional reference
# ---------------------------------------------------------------------------------------------------------------


def test_generator_matches_reference(gen):
    g, sd = gen
    torch.manual_seed(10)
    z = torch.randn(2, G_CFG["style_dim"])
    noise = noise_list(g, 2, 11)
    with torch.no_grad():
        img, latent = g([z], noise=noise, return_latents=True)
    assert img.shape == (2, 3, 64, 64) and latent.shape == (2, g.n_latent, G_CFG["style_dim"])
    ref_lat = ref_latent(sd, G_CFG["n_mlp"], g.n_latent, [z.double()])
    close(latent, ref_lat)
    close(img, ref_generator(sd, ref_lat, [n.double() for n in noise]))
    # the second image differs from the first: per-sample modulation really is per sample
    assert (img[0] - img[1]).abs().max() > 0.1


def test_generator_truncation_and_mixing_match_reference(gen):
    g, sd = gen
    torch.manual_seed(12)
    z1, z2 = torch.randn(2, G_CFG["style_dim"]), torch.randn(2, G_CFG["style_dim"])
    centre = torch.randn(1, G_CFG["style_dim"])
    noise = noise_list(g, 2, 13)
    nd = [n.double() for n in noise]
    with torch.no_grad():
        img_t, lat_t = g([z1, z2], inject_index=4, truncation=0.6, truncation_latent=centre, noise=noise,
                         return_latents=True)
    ref = ref_latent(sd, G_CFG["n_mlp"], g.n_latent, [z1.double(), z2.double()], truncation=0.6,
                     truncation_latent=centre.double(), inject_index=4)
    close(lat_t, ref)
    close(img_t, ref_generator(sd, ref, nd))
    # truncation 1 (the default) ignores truncation_latent entirely
    with torch.no_grad():
        a, _ = g([z1], noise=noise, truncation_latent=centre)
        b, _ = g([z1], noise=noise)
    assert torch.equal(a, b)


def test_generator_input_is_latent_matches_reference(gen):
    g, sd = gen
    torch.manual_seed(14)
    noise = noise_list(g, 2, 15)
    nd = [n.double() for n in noise]
    w = torch.randn(2, G_CFG["style_dim"])
    wplus = torch.randn(2, g.n_latent, G_CFG["style_dim"])
    centre = torch.randn(1, G_CFG["style_dim"])
    with torch.no_grad():
        img_w, _ = g([w], input_is_latent=True, noise=noise)
        img_wp, lat_wp = g([wplus], input_is_latent=True, noise=noise, truncation=0.5, truncation_latent=centre,
                           return_latents=True)
        img_z, _ = g([g.get_latent(w)], input_is_latent=True, noise=noise)
        img_z2, _ = g([w], noise=noise)
    close(img_w, ref_generator(sd, ref_latent(sd, 0, g.n_latent, [w.double()], input_is_latent=True), nd))
    ref_wp = ref_latent(sd, 0, g.n_latent, [wplus.double()], input_is_latent=True, truncation=0.5,
                        truncation_latent=centre.double())
    close(lat_wp, ref_wp)
    close(img_wp, ref_generator(sd, ref_wp, nd))
    assert torch.allclose(img_z, img_z2, atol=1e-5)  # z path == mapping then input_is_latent


def test_generator_noise_modes(gen):
    g, _ = gen
    z = torch.randn(1, G_CFG["style_dim"])
    buffers = [getattr(g.noises, f"noise_{i}") for i in range(g.num_layers)]
    with torch.no_grad():
        fixed1, _ = g([z], randomize_noise=False)
        fixed2, _ = g([z], randomize_noise=False)
        explicit, _ = g([z], noise=buffers)
        rand1, _ = g([z])
        rand2, _ = g([z])
    assert torch.equal(fixed1, fixed2) and torch.equal(fixed1, explicit)
    assert (rand1 - rand2).abs().max() > 1e-3  # noise strengths are non-zero after randomise()
    with pytest.raises(ValueError):
        g([z], noise=buffers[:-1])
    with pytest.raises(ValueError):
        g([z], truncation=0.7)  # needs a truncation_latent


def test_generator_helpers(gen):
    g, _ = gen
    noises = g.make_noise()
    assert [tuple(n.shape) for n in noises] == [tuple(getattr(g.noises, f"noise_{i}").shape)
                                                 for i in range(g.num_layers)]
    assert [n.shape[-1] for n in noises] == [4, 8, 8, 16, 16, 32, 32, 64, 64]
    mean = g.mean_latent(64)
    assert mean.shape == (1, G_CFG["style_dim"]) and torch.isfinite(mean).all()
    z = torch.randn(3, G_CFG["style_dim"])
    assert torch.equal(g.get_latent(z), g.style(z))


def test_upstream_widths_match_reference():
    """Real upstream widths (512 channels up to 32 px): G at 32 px, D at 16 px with batch 2 and 4."""
    torch.manual_seed(3)
    g = randomise(Generator(32, style_dim=32, n_mlp=2, channel_multiplier=1), 4)
    sd = f64(g.state_dict())
    z, noise = torch.randn(2, 32), noise_list(g, 2, 5)
    with torch.no_grad():
        img, latent = g([z], noise=noise, return_latents=True)
    assert img.shape == (2, 3, 32, 32)
    close(img, ref_generator(sd, ref_latent(sd, 2, g.n_latent, [z.double()]), [n.double() for n in noise]))

    d = randomise(Discriminator(16, channel_multiplier=1), 6)
    sd = f64(d.state_dict())
    for batch in (2, 4):
        x = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            out = d(x)
        assert out.shape == (batch, 1)
        close(out, ref_discriminator(sd, x.double()))


# ---------------------------------------------------------------------------------------------------------------
# 3. Config inference
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,style_dim,n_mlp,cm", [(4, 16, 1, 2), (32, 64, 2, 2), (64, 128, 8, 1),
                                                      (256, 512, 8, 2), (512, 256, 4, 4), (1024, 512, 8, 1)])
def test_infer_config_round_trip(size, style_dim, n_mlp, cm):
    with torch.device("meta"):  # shapes only, no allocation
        g = Generator(size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm)
        d = Discriminator(size, channel_multiplier=cm)
    gcfg, dcfg = infer_generator_config(g.state_dict()), infer_discriminator_config(d.state_dict())
    # below 64 px every width is 512 whatever the multiplier, so 2 (the default) is reported
    want_cm = cm if size >= 64 else 2
    assert gcfg == {"size": size, "style_dim": style_dim, "n_mlp": n_mlp, "channel_multiplier": want_cm}
    assert dcfg == {"size": size, "channel_multiplier": want_cm}
    with torch.device("meta"):
        g2, d2 = Generator(**gcfg), Discriminator(**dcfg)
    for a, b in ((g, g2), (d, d2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and all(sa[k].shape == sb[k].shape for k in sa)


def test_infer_config_rejects_other_dicts():
    with torch.device("meta"):
        gsd, dsd = Generator(64, style_dim=8, n_mlp=1).state_dict(), Discriminator(64).state_dict()
    with pytest.raises(ValueError, match="generator"):
        infer_generator_config(dsd)
    with pytest.raises(ValueError, match="discriminator"):
        infer_discriminator_config(gsd)
    with pytest.raises(ValueError, match="input.input"):
        infer_generator_config({k: v for k, v in gsd.items() if k != "input.input"})
    with pytest.raises(ValueError):
        infer_generator_config({"weight": torch.zeros(1)})
    with pytest.raises(ValueError):
        infer_discriminator_config({})
    bad = dict(gsd)
    bad["to_rgbs.3.conv.weight"] = torch.empty(1, 3, 300, 1, 1)  # not 256 * multiplier
    with pytest.raises(ValueError):
        infer_generator_config(bad)


# ---------------------------------------------------------------------------------------------------------------
# 4. Regenerable buffers
# ---------------------------------------------------------------------------------------------------------------


def test_is_regenerable_buffer_classification():
    with torch.device("meta"):
        models = [Generator(64, style_dim=8, n_mlp=2), Discriminator(64)]
    for m in models:
        buffers = {name for name, _ in m.named_buffers()}
        params = {name for name, _ in m.named_parameters()}
        assert buffers and {k for k in buffers | params if is_regenerable_buffer(k)} == buffers
    for key in ("convs.0.conv.blur.kernel", "to_rgbs.2.upsample.kernel", "noises.noise_0", "noises.noise_16",
                "convs.3.conv2.0.kernel", "convs.3.skip.0.kernel", "g_ema.noises.noise_4"):
        assert is_regenerable_buffer(key), key
    for key in ("conv1.noise.weight", "convs.0.conv.weight", "convs.3.conv2.1.weight", "convs.3.skip.1.weight",
                "noises.noise_x", "input.input", "style.1.weight", "final_linear.0.weight"):
        assert not is_regenerable_buffer(key), key


def test_missing_buffers_are_regenerated(gen, disc):
    g, _ = gen
    sd = {k: v for k, v in g.state_dict().items() if not is_regenerable_buffer(k)}
    assert not any("kernel" in k or k.startswith("noises.") for k in sd)
    torch.manual_seed(99)  # the fresh model draws different noise buffers: explicit noise is what matters
    fresh = Generator(**G_CFG).eval()
    result = fresh.load_state_dict(sd, strict=False)
    assert result.unexpected_keys == [] and result.missing_keys
    assert all(is_regenerable_buffer(k) for k in result.missing_keys)
    z, noise = torch.randn(2, G_CFG["style_dim"]), noise_list(g, 2, 5)
    with torch.no_grad():
        assert torch.equal(fresh([z], noise=noise)[0], g([z], noise=noise)[0])

    d, _ = disc
    dsd = {k: v for k, v in d.state_dict().items() if not is_regenerable_buffer(k)}
    fresh_d = Discriminator(64, channels=NARROW)
    result = fresh_d.load_state_dict(dsd, strict=False)
    assert result.unexpected_keys == [] and sorted(result.missing_keys) == sorted(
        k for k, _ in d.named_buffers())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh_d(x), d(x))


# ---------------------------------------------------------------------------------------------------------------
# 5. Discriminator batch sizes
# ---------------------------------------------------------------------------------------------------------------


def test_stddev_group_size_rule():
    assert [stddev_group_size(b) for b in range(1, 13)] == [1, 2, 3, 4, 1, 3, 1, 4, 3, 2, 1, 4]
    for b in (1, 2, 3, 4, 8, 12, 16):  # wherever upstream's min(batch, 4) works, it is unchanged
        assert stddev_group_size(b) == min(b, 4)


def test_discriminator_all_batch_sizes(disc):
    d, sd = disc
    gen_ = torch.Generator().manual_seed(7)
    x = torch.randn(8, 3, 64, 64, generator=gen_)
    for batch in range(1, 9):
        with torch.no_grad():
            out = d(x[:batch])
        assert out.shape == (batch, 1) and torch.isfinite(out).all()
        close(out, ref_discriminator(sd, x[:batch].double()))


def test_discriminator_stddev_mixes_batch(disc):
    d, _ = disc
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        full = d(x)
        y = x.clone()
        y[2] = torch.randn(3, 64, 64)  # with group 4 every logit depends on every sample
        changed = d(y)
        singles = torch.cat([d(x[i:i + 1]) for i in range(4)])
    assert ((full - changed).abs()[[0, 1, 3]] > 0).all()
    assert not torch.allclose(full, singles)


def test_upfirdn_matches_resize_semantics():
    """Sanity check of the FIR helpers against plain torch ops, independent of the model."""
    from installation.models.stylegan2 import upfirdn2d

    x = torch.randn(2, 3, 8, 8)
    k = fir_kernel().float()
    # blur with pad (2,1) keeps the size; constant input stays constant away from the border
    ones = upfirdn2d(torch.ones(1, 1, 8, 8), k * 4, up=2, pad=(2, 1))
    assert ones.shape == (1, 1, 16, 16) and torch.allclose(ones[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))
    assert torch.allclose(upfirdn2d(x, k * 4, up=2, pad=(2, 1)), fir(x.double(), k.double() * 4, (2, 1), up=2).float(),
                          atol=1e-6)
    assert torch.allclose(upfirdn2d(x, k, down=2, pad=(1, 1)), fir(x.double(), k.double(), (1, 1), down=2).float(),
                          atol=1e-6)
    # an asymmetric kernel checks the flip (true convolution, not correlation)
    asym = torch.arange(16.0).reshape(4, 4)
    assert torch.allclose(upfirdn2d(x, asym, pad=(1, 2)), fir(x.double(), asym.double(), (1, 2)).float(), atol=1e-4)
    # 1-tap identity kernel with no padding is the identity, and with up=2 it is plain zero insertion
    eye = torch.ones(1, 1)
    assert torch.equal(upfirdn2d(x, eye), x)
    assert torch.equal(upfirdn2d(x, eye, up=2)[..., ::2, ::2], x)
    assert upfirdn2d(x, eye, up=2)[..., 1::2, :].abs().sum() == 0
    assert F.avg_pool2d(x, 2).shape == upfirdn2d(x, k, down=2, pad=(1, 1)).shape


def test_gradients_flow_from_frozen_discriminator_to_generator():
    """The inverted fine-tuning set-up: D frozen, G updated through D's logit."""
    torch.manual_seed(20)
    g = Generator(64, style_dim=16, n_mlp=2, channels=NARROW)
    d = Discriminator(64, channels=NARROW).requires_grad_(False)
    img, _ = g([torch.randn(2, 16)])
    d(img).mean().backward()
    grads = {name: p.grad for name, p in g.named_parameters()}
    assert all(gr is not None for gr in grads.values())
    assert grads["convs.6.conv.weight"].abs().sum() > 0 and grads["style.1.weight"].abs().sum() > 0
    assert all(p.grad is None for p in d.parameters())


def test_generator_gradients_match_reference(gen):
    """The fused demodulation / noise / bias / leaky ReLU chain and the cached weights under autograd."""
    g, _ = gen
    torch.manual_seed(21)
    z = torch.randn(2, G_CFG["style_dim"])
    noise = noise_list(g, 2, 22)
    g.zero_grad(set_to_none=True)
    with torch.no_grad():
        g([z], noise=noise)  # fills the caches
    g([z], noise=noise)[0].square().mean().backward()
    sd = {k: v.detach().double().requires_grad_(True) for k, v in g.state_dict().items()}
    lat = ref_latent(sd, G_CFG["n_mlp"], g.n_latent, [z.double()])
    ref_generator(sd, lat, [n.double() for n in noise]).square().mean().backward()
    for name, p in g.named_parameters():
        expected = sd[name].grad
        assert (p.grad.double() - expected).abs().max() <= TOL * max(1.0, expected.abs().max().item()), name
    g.zero_grad(set_to_none=True)
