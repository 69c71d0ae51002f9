"""StyleGAN1 against rosinality's layout and behaviour.

The reference below is written from rosinality's documented layout and behaviour, as plain functions over the
state_dict, and deliberately computes the tricky parts another way: fused transposed convs as zero-insertion
plus a flipped-kernel conv, fused strided convs as a dense conv then decimation, blur as
shifted sums, instance norm by hand. Agreement within 1e-4 therefore checks the module code, not itself.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from installation.models.stylegan1 import FFHQ_CHANNELS, Discriminator, StyledGenerator

SMALL = (16, 16, 8, 8, 8, 4)  # 4..128 px: includes fused blocks (>= 128 px) at a test-friendly width


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Replace every parameter by random values (init leaves noise weights at 0 and AdaIN biases at 1/0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


# --------------------------------------------------------------------------------- reference implementation

def he(w: torch.Tensor) -> torch.Tensor:
    fan_in = w.shape[1] * (w[0, 0].numel() if w.dim() > 2 else 1)
    return w * math.sqrt(2 / fan_in)


def lrelu(x):
    return torch.where(x >= 0, x, 0.2 * x)


def ref_blur(x):
    k = [1.0, 2.0, 1.0]
    p = F.pad(x, [1, 1, 1, 1])
    h, w = x.shape[2:]
    return sum(k[dy] * k[dx] / 16 * p[:, :, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))


def four_tap(w):
    """3x3 kernel -> 4x4: average of the four one-pixel shifts."""
    out = torch.zeros(*w.shape[:2], 4, 4)
    for dy in (0, 1):
        for dx in (0, 1):
            out[:, :, dy:dy + 3, dx:dx + 3] += w / 4
    return out


def ref_fused_up(x, w_raw, b):
    """conv_transpose2d(stride 2, padding 1) as zero insertion + padding 2 + conv with the flipped kernel."""
    w = four_tap(w_raw * math.sqrt(2 / (w_raw.shape[0] * 9)))  # (in, out, 4, 4)
    n, c, h, wd = x.shape
    up = torch.zeros(n, c, 2 * h - 1, 2 * wd - 1)
    up[:, :, ::2, ::2] = x
    kernel = torch.flip(w, [2, 3]).transpose(0, 1)
    return F.conv2d(F.pad(up, [2, 2, 2, 2]), kernel) + b.view(1, -1, 1, 1)


def ref_fused_down(x, w_raw, b):
    """conv2d(stride 2, padding 1) as a dense conv then keeping every second pixel."""
    w = four_tap(w_raw * math.sqrt(2 / (w_raw.shape[1] * 9)))
    return F.conv2d(F.pad(x, [1, 1, 1, 1]), w)[:, :, ::2, ::2] + b.view(1, -1, 1, 1)


def conv(x, s, prefix, padding):
    return F.conv2d(x, he(s[prefix + ".weight_orig"]), s[prefix + ".bias"], padding=padding)


def ref_adain(x, w, s, prefix):
    style = w @ he(s[prefix + ".style.linear.weight_orig"]).t() + s[prefix + ".style.linear.bias"]
    gamma, beta = style[:, : x.shape[1], None, None], style[:, x.shape[1]:, None, None]
    mean = x.mean((2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((2, 3), keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + 1e-5) + beta


def ref_mapping(s, z, n_mlp):
    x = z / torch.sqrt((z**2).mean(1, keepdim=True) + 1e-8)
    for i in range(n_mlp):
        x = lrelu(x @ he(s[f"style.{2 * i + 1}.linear.weight_orig"]).t() + s[f"style.{2 * i + 1}.linear.bias"])
    return x


def ref_generator(s, channels, n_mlp, z, noise, step, alpha=-1.0, mean=None, psi=1.0):
    w = ref_mapping(s, z, n_mlp)
    if mean is not None:
        w = mean + psi * (w - mean)
    x = s["generator.progression.0.conv1.input"].repeat(z.shape[0], 1, 1, 1)
    prev = x
    for i in range(step + 1):
        p = f"generator.progression.{i}"
        prev = x
        if i > 0:
            if 4 * 2**i >= 128:
                x = ref_fused_up(x, s[p + ".conv1.0.weight"], s[p + ".conv1.0.bias"])
            else:
                x = conv(x.repeat_interleave(2, 2).repeat_interleave(2, 3), s, p + ".conv1.1.conv", 1)
            x = ref_blur(x)
        for j in (1, 2):
            if j == 2:
                x = conv(x, s, p + ".conv2.conv", 1)
            x = x + he(s[f"{p}.noise{j}.weight_orig"]) * noise[i]
            x = ref_adain(lrelu(x), w, s, f"{p}.adain{j}")
    out = conv(x, s, f"generator.to_rgb.{step}.conv", 0)
    if step > 0 and 0 <= alpha < 1:
        skip = conv(prev, s, f"generator.to_rgb.{step - 1}.conv", 0).repeat_interleave(2, 2).repeat_interleave(2, 3)
        out = (1 - alpha) * skip + alpha * out
    return out


def ref_discriminator(s, channels, x, step, activate=True, alpha=-1.0):
    n = len(channels)
    rgb = (lambda k: f"from_rgb.{k}.0.conv") if activate else (lambda k: f"from_rgb.{k}.conv")

    def from_rgb(k, image):
        out = conv(image, s, rgb(k), 0)
        return lrelu(out) if activate else out

    out = None
    for i in range(step, -1, -1):
        k = n - 1 - i
        if i == step:
            out = from_rgb(k, x)
        p = f"progression.{k}"
        if i == 0:
            std = torch.sqrt(((out - out.mean(0)) ** 2).mean(0) + 1e-8).mean()
            out = torch.cat([out, std * torch.ones(out.shape[0], 1, 4, 4)], 1)
            out = lrelu(conv(out, s, p + ".conv1.0.conv", 1))
            out = lrelu(conv(out, s, p + ".conv2.0.conv", 0))
            break
        out = ref_blur(lrelu(conv(out, s, p + ".conv1.0.conv", 1)))
        if 4 * 2**i >= 128:
            out = lrelu(ref_fused_down(out, s[p + ".conv2.1.weight"], s[p + ".conv2.1.bias"]))
        else:
            y = conv(out, s, p + ".conv2.1.conv", 1)
            out = lrelu((y[:, :, ::2, ::2] + y[:, :, 1::2, ::2] + y[:, :, ::2, 1::2] + y[:, :, 1::2, 1::2]) / 4)
        if i == step and 0 <= alpha < 1:
            skip = from_rgb(k + 1, F.avg_pool2d(x, 2))
            out = (1 - alpha) * skip + alpha * out
    flat = out.flatten(1)
    return flat @ he(s["linear.linear.weight_orig"]).t() + s["linear.linear.bias"]


# ------------------------------------------------------------------------------------------------ tests

def test_full_network_matches_upstream_key_table():
    g, d, d_old = StyledGenerator(), Discriminator(), Discriminator(from_rgb_activate=False)
    gs, ds = g.state_dict(), d.state_dict()
    assert len(gs) == 139 and sum(v.numel() for v in gs.values()) == 26_255_691
    assert sum(p.numel() for p in g.parameters()) == 26_219_115
    assert len(ds) == 72 and sum(v.numel() for v in ds.values()) == 25_490_241
    assert sum(p.numel() for p in d.parameters()) == 25_444_737
    expected_g = {
        "generator.progression.0.conv1.input": (1, 512, 4, 4),
        "generator.progression.0.noise1.weight_orig": (1, 512, 1, 1),
        "generator.progression.1.conv1.1.conv.weight_orig": (512, 512, 3, 3),
        "generator.progression.1.conv1.2.weight": (512, 1, 3, 3),
        "generator.progression.1.conv1.2.weight_flip": (512, 1, 3, 3),
        "generator.progression.4.conv1.1.conv.weight_orig": (256, 512, 3, 3),
        "generator.progression.4.adain1.style.linear.weight_orig": (512, 512),
        "generator.progression.5.conv1.0.weight": (256, 128, 3, 3),
        "generator.progression.5.conv1.0.bias": (128,),
        "generator.progression.5.conv1.1.weight": (128, 1, 3, 3),
        "generator.progression.8.adain2.style.linear.weight_orig": (32, 512),
        "generator.to_rgb.8.conv.weight_orig": (3, 16, 1, 1),
        "style.15.linear.weight_orig": (512, 512),
    }
    for key, shape in expected_g.items():
        assert tuple(gs[key].shape) == shape, key
    expected_d = {
        "progression.0.conv1.0.conv.weight_orig": (32, 16, 3, 3),
        "progression.0.conv2.0.weight_flip": (32, 1, 3, 3),
        "progression.0.conv2.1.weight": (32, 32, 3, 3),
        "progression.3.conv2.1.weight": (256, 256, 3, 3),
        "progression.4.conv2.1.conv.weight_orig": (512, 512, 3, 3),
        "progression.8.conv1.0.conv.weight_orig": (512, 513, 3, 3),
        "progression.8.conv2.0.conv.weight_orig": (512, 512, 4, 4),
        "from_rgb.0.0.conv.weight_orig": (16, 3, 1, 1),
        "from_rgb.8.0.conv.bias": (512,),
        "linear.linear.weight_orig": (1, 512),
    }
    for key, shape in expected_d.items():
        assert tuple(ds[key].shape) == shape, key
    old = d_old.state_dict()
    assert "from_rgb.3.conv.weight_orig" in old and "from_rgb.3.0.conv.weight_orig" not in old
    assert set(old) - {k for k in old if k.startswith("from_rgb")} == {k for k in ds if not k.startswith("from_rgb")}
    blur = gs["generator.progression.2.conv1.2.weight"][0, 0]
    assert torch.allclose(blur, torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0)


@pytest.mark.parametrize("step", [0, 1, 3, 5])
def test_generator_matches_reference(step):
    torch.manual_seed(0)
    g = StyledGenerator(code_dim=16, n_mlp=3, channels=SMALL)
    randomise(g, 1)
    s = g.state_dict()
    z = torch.randn(2, 16)
    noise = [torch.randn(2, 1, 4 * 2**i, 4 * 2**i) for i in range(step + 1)]
    with torch.no_grad():
        ours = g(z, noise=noise, step=step)
        ref = ref_generator(s, SMALL, 3, z, noise, step)
    assert ours.shape == (2, 3, 4 * 2**step, 4 * 2**step)
    assert (ours - ref).abs().max() <= 1e-4


def test_generator_fade_in_truncation_and_latent_input_match_reference():
    torch.manual_seed(0)
    g = StyledGenerator(code_dim=16, n_mlp=2, channels=SMALL)
    randomise(g, 2)
    s = g.state_dict()
    z = torch.randn(3, 16)
    noise = [torch.randn(3, 1, 4 * 2**i, 4 * 2**i) for i in range(6)]
    with torch.no_grad():
        mean = g.mean_style(torch.randn(64, 16))
        for step in (2, 5):
            ours = g(z, noise=noise, step=step, alpha=0.3, mean_style=mean, style_weight=0.7)
            ref = ref_generator(s, SMALL, 2, z, noise, step, alpha=0.3, mean=mean, psi=0.7)
            assert (ours - ref).abs().max() <= 1e-4
        w = g.style(z)
        assert torch.equal(g(w, noise=noise, step=4, input_is_latent=True), g(z, noise=noise, step=4))


def test_inference_plan_matches_the_reference_at_batch_one_and_the_module_path_when_mixing():
    """fp32 inference runs the generator's inference plan (at batch 1 AdaIN as one batch-norm kernel): it agrees
    with the reference, and with the module path that autograd takes, style mixing included."""
    torch.manual_seed(0)
    g = StyledGenerator(code_dim=16, n_mlp=2, channels=SMALL)
    randomise(g, 10)
    z = torch.randn(1, 16)
    noise = [torch.randn(1, 1, 4 * 2**i, 4 * 2**i) for i in range(6)]
    with torch.no_grad():
        ours = g(z, noise=noise, step=5)
    assert (ours - ref_generator(g.state_dict(), SMALL, 2, z, noise, 5)).abs().max() <= 1e-4
    pair, noise = [torch.randn(2, 16), torch.randn(2, 16)], [n.expand(2, -1, -1, -1) for n in noise]
    with torch.no_grad():
        planned = g(pair, noise=noise, step=4, mixing_range=(1, 2))
        unmixed = g(pair[0], noise=noise, step=4)
    recorded = g(pair, noise=noise, step=4, mixing_range=(1, 2))
    assert recorded.requires_grad and (planned - recorded).abs().max() <= 1e-4
    assert (planned - unmixed).abs().max() > 1e-2  # the second style reached blocks 1 and 2


def test_noise_is_one_map_per_block_feeding_both_injections():
    g = StyledGenerator(code_dim=16, n_mlp=1, channels=SMALL)
    randomise(g, 3)
    z = torch.randn(1, 16)
    noise = [torch.randn(1, 1, 4 * 2**i, 4 * 2**i) for i in range(3)]
    with torch.no_grad():
        a = g(z, noise=noise, step=2)
        changed = list(noise)
        changed[1] = torch.randn_like(noise[1])
        assert not torch.allclose(a, g(z, noise=changed, step=2))
        assert torch.equal(a, g(z, noise=noise, step=2))  # explicit noise makes it deterministic
    assert [n.shape for n in g.make_noise(2, 3)] == [(2, 1, 4, 4), (2, 1, 8, 8), (2, 1, 16, 16), (2, 1, 32, 32)]


@pytest.mark.parametrize("activate", [True, False])
@pytest.mark.parametrize("step", [0, 2, 5])
def test_discriminator_matches_reference(activate, step):
    torch.manual_seed(0)
    d = Discriminator(SMALL, from_rgb_activate=activate)
    randomise(d, 4)
    x = torch.randn(3, 3, 4 * 2**step, 4 * 2**step)
    with torch.no_grad():
        ours = d(x, step=step)
        ref = ref_discriminator(d.state_dict(), SMALL, x, step, activate)
        assert ours.shape == (3, 1)
        assert (ours - ref).abs().max() <= 1e-4
        if step:
            faded = d(x, step=step, alpha=0.4)
            assert (faded - ref_discriminator(d.state_dict(), SMALL, x, step, activate, alpha=0.4)).abs().max() <= 1e-4


def test_full_width_network_matches_reference_at_low_resolution():
    torch.manual_seed(0)
    g, d = StyledGenerator(), Discriminator()
    randomise(g, 5)
    randomise(d, 6)
    z = torch.randn(2, 512)
    noise = [torch.randn(2, 1, 4 * 2**i, 4 * 2**i) for i in range(3)]
    with torch.no_grad():
        image = g(z, noise=noise, step=2)
        assert (image - ref_generator(g.state_dict(), FFHQ_CHANNELS, 8, z, noise, 2)).abs().max() <= 1e-4
        ref = ref_discriminator(d.state_dict(), FFHQ_CHANNELS, image, 2)
        assert (d(image, step=2) - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())


def test_frozen_discriminator_still_passes_gradients_to_its_input():
    d = Discriminator(SMALL).requires_grad_(False).eval()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    d(x, step=3).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.parameters())


def test_instance_norm_affine_backward_matches_autograd():
    from installation.models.stylegan1 import InstanceNormAffine

    g = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    gamma = torch.randn(2, 3, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(2, 3, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(InstanceNormAffine.apply, (x, gamma, beta))
    plain = gamma * F.instance_norm(x) + beta
    assert (InstanceNormAffine.apply(x, gamma, beta) - plain).abs().max() <= 1e-12


def test_training_gradients_match_reference_and_cached_weights_follow_updates():
    """Cached equal-lr weights must not leak into autograd, and must be rebuilt after every optimiser step."""
    torch.manual_seed(0)
    g, d = StyledGenerator(code_dim=16, n_mlp=2, channels=SMALL[:5]), Discriminator(SMALL[:5])
    randomise(g, 8)
    randomise(d, 9)
    d.requires_grad_(False)
    z = torch.randn(2, 16)
    noise = [torch.randn(2, 1, 4 * 2**i, 4 * 2**i) for i in range(5)]
    with torch.no_grad():
        g(z, noise=noise, step=4)  # fills the caches
    d(g(z, noise=noise, step=4), step=4).sum().backward()

    ref_g = {k: v.detach().clone().requires_grad_(True) for k, v in g.state_dict().items()}
    ref_d = d.state_dict()
    ref_discriminator(ref_d, SMALL[:5], ref_generator(ref_g, SMALL[:5], 2, z, noise, 4), 4).sum().backward()
    for name, p in g.named_parameters():
        expected = ref_g[name].grad
        if expected is None or not expected.abs().sum():
            assert p.grad is None or not p.grad.abs().sum(), name
        else:
            assert (p.grad - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item()), name

    torch.optim.Adam(g.parameters(), lr=0.1).step()  # in place: bumps every parameter's version
    fresh = StyledGenerator(code_dim=16, n_mlp=2, channels=SMALL[:5])
    fresh.load_state_dict(g.state_dict())
    with torch.no_grad():
        assert torch.equal(g(z, noise=noise, step=4), fresh(z, noise=noise, step=4))
