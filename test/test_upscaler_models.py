"""ESRGAN-family upscaler models (modules/upscaler_models.py): layout and scale detection from the keys, the old ESRGAN
key conversion against an old-layout network built here, tiled vs untiled output, published parameter counts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from modules import upscaler_models as um

TINY_RRDB = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
TINY_SRVGG = {"num_feat": 8, "num_conv": 2}


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Seeded random weights: convs with std 1/sqrt(fan-in), small biases, PReLU slopes near 0.25, and the RRDB nets'
    last bias 0.5, so that tiny random nets give varied mid-grey images rather than clamped black ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim == 4:
                param.copy_(noise / param[0].numel() ** 0.5)
            elif isinstance(module, um.SRVGGNetCompact) and name.endswith("weight"):
                param.copy_(0.25 + 0.05 * noise)  # PReLU slopes
            else:
                param.copy_(0.02 * noise)
        last = getattr(module, "conv_last", None) or getattr(module, "model", [None])[-1]
        if last is not None:
            last.bias.fill_(0.5)
    return module.eval()


def random_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    # smooth-ish content plus noise, as a photo has some structure
    base = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.BILINEAR)
    noise = rng.integers(-20, 21, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image).astype(int) + noise, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------------------------------
# The original ESRGAN repository's network, built here from its published structure (one flattened nn.Sequential), so
# that its state_dict gives the old key names independently of convert_old_esrgan.


class OldDenseBlock(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        for i in range(5):  # conv_block: Sequential(conv, LeakyReLU), the last without activation
            conv = nn.Conv2d(nf + i * gc, nf if i == 4 else gc, 3, 1, 1)
            setattr(self, f"conv{i + 1}", nn.Sequential(conv) if i == 4 else nn.Sequential(conv, nn.LeakyReLU(0.2)))

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(torch.cat((x, x1), 1))
        x3 = self.conv3(torch.cat((x, x1, x2), 1))
        x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * 0.2 + x


class OldRRDB(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = OldDenseBlock(nf, gc), OldDenseBlock(nf, gc), OldDenseBlock(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class OldShortcut(nn.Module):
    def __init__(self, sub: nn.Module):
        super().__init__()
        self.sub = sub

    def forward(self, x):
        return x + self.sub(x)


class OldESRGAN(nn.Module):
    """model = [conv_first, Shortcut(sub=[RRDB x nb, conv_body]), [Upsample, conv, LeakyReLU] x n_up, conv_hr,
    LeakyReLU, conv_last]."""

    def __init__(self, scale: int, num_feat: int, num_block: int, num_grow_ch: int):
        super().__init__()
        nf = num_feat
        layers: list[nn.Module] = [nn.Conv2d(3, nf, 3, 1, 1)]
        blocks = [OldRRDB(nf, num_grow_ch) for _ in range(num_block)]
        layers.append(OldShortcut(nn.Sequential(*blocks, nn.Conv2d(nf, nf, 3, 1, 1))))
        for _ in range(int(np.log2(scale))):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(nf, 3, 3, 1, 1)]
        self.model = nn.Sequential(*layers)
        self.scale = scale

    def forward(self, x):
        return self.model(x)


# ---------------------------------------------------------------------------------------------------------------------

# name: (build the reference network, expected architecture, expected scale)
CASES = {
    "rrdb_x4": (lambda: um.RRDBNet(scale=4, **TINY_RRDB), "RealESRGAN", 4),
    "rrdb_x8": (lambda: um.RRDBNet(scale=8, **TINY_RRDB), "RealESRGAN", 8),
    "rrdb_x2_unshuffle": (lambda: um.RRDBNet(scale=2, **TINY_RRDB), "RealESRGAN", 2),
    "rrdb_x1_unshuffle": (lambda: um.RRDBNet(scale=1, **TINY_RRDB), "RealESRGAN", 1),
    "old_esrgan_x4": (lambda: OldESRGAN(4, **TINY_RRDB), "ESRGAN", 4),
    "old_esrgan_x8": (lambda: OldESRGAN(8, **TINY_RRDB), "ESRGAN", 8),
    "old_esrgan_x2_plain": (lambda: OldESRGAN(2, **TINY_RRDB), "ESRGAN", 2),  # 1 upsampling step, no unshuffle
    "srvgg_x4_prelu": (lambda: um.SRVGGNetCompact(upscale=4, **TINY_SRVGG), "SRVGGNetCompact", 4),
    "srvgg_x2_relu": (lambda: um.SRVGGNetCompact(upscale=2, act_type="relu", **TINY_SRVGG), "SRVGGNetCompact", 2),
}


def save(state: dict, path, wrapper: str | None = None):
    state = {key: value.contiguous() for key, value in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({wrapper: state} if wrapper else state, path)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fmt", ["a.safetensors", "b.pth", "c.pth:params_ema", "d.pth:params"])
def test_load_detects_layout_and_scale_from_keys(case, fmt, tmp_path):
    build, architecture, scale = CASES[case]
    reference = randomize(build(), seed=len(case))
    name, _, wrapper = fmt.partition(":")
    path = tmp_path / name  # the file names say nothing about the model
    save(reference.state_dict(), path, wrapper or None)

    loaded = um.load_upscaler(path)

    assert (loaded.architecture, loaded.scale) == (architecture, scale)
    assert loaded.parameters == sum(p.numel() for p in reference.parameters())
    assert not loaded.module.training and not any(p.requires_grad for p in loaded.module.parameters())
    x = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected, got = reference(x), loaded.module(x)
    assert got.shape == (1, 3, 12 * scale, 16 * scale)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got.abs().max() > 0.05  # the comparison sees a non-trivial output

    image = random_image(20, 14, seed=1)  # 14 is no multiple of 4: the unshuffled x1 model pads and crops
    assert um.upscale(loaded, image, tile=0).size == (20 * scale, 14 * scale)


def test_old_esrgan_conversion_maps_every_tensor_to_the_new_layout():
    old = OldESRGAN(4, num_feat=8, num_block=2, num_grow_ch=4)
    state = old.state_dict()
    # the published old index pattern for x4: conv_first 0, conv_body model.1.sub.<num_block>, up convs 3 and 6,
    # conv_hr 8, conv_last 10
    for key in ("model.0.weight", "model.1.sub.1.RDB3.conv5.0.bias", "model.1.sub.2.weight", "model.3.weight"):
        assert key in state
    assert {"model.6.weight", "model.8.weight", "model.10.weight"} <= set(state)

    converted = um.convert_old_esrgan(state)

    new_keys = list(um.RRDBNet(scale=4, num_feat=8, num_block=2, num_grow_ch=4).state_dict())
    assert sorted(converted) == sorted(new_keys)
    pairs = {
        "conv_first.weight": "model.0.weight",
        "body.1.rdb3.conv5.bias": "model.1.sub.1.RDB3.conv5.0.bias",
        "body.0.rdb2.conv1.weight": "model.1.sub.0.RDB2.conv1.0.weight",
        "conv_body.weight": "model.1.sub.2.weight",
        "conv_up1.weight": "model.3.weight",
        "conv_up2.bias": "model.6.bias",
        "conv_hr.weight": "model.8.weight",
        "conv_last.bias": "model.10.bias",
    }
    for new, old_key in pairs.items():
        assert converted[new] is state[old_key]
    assert len({id(t) for t in converted.values()}) == len(state)  # every old tensor used once

    x8 = um.convert_old_esrgan(OldESRGAN(8, **TINY_RRDB).state_dict())
    assert {"conv_up3.weight", "conv_hr.weight", "conv_last.weight"} <= set(x8)

    broken = dict(state)
    broken["model.9.weight"] = broken.pop("model.8.weight")
    with pytest.raises(ValueError, match="published pattern"):
        um.convert_old_esrgan(broken)


def test_tiled_matches_untiled_within_bounds():
    """40x32 image, tile 16 / overlap 4 vs untiled (tile 0), tiny random nets (seed 11). The receptive fields of these
    nets (RRDB: 20 convs at the low resolution; SRVGG: 4 convs) reach far past a 4 px overlap, so tiles differ near
    their borders. Observed absolute differences, uint8 levels out of 255 (mean over all pixels and channels / max):
    RRDB x4 1.69 / 46, RRDB x2 with pixel-unshuffle 2.26 / 30, SRVGG x4 PReLU 1.64 / 32; on other seeds (12-14) up to
    10.7 / 107 (RRDB x2), so the bounds hold for this seed only: mean < 3.5 and max < 64."""
    image = random_image(40, 32, seed=7)
    for case in ("rrdb_x4", "rrdb_x2_unshuffle", "srvgg_x4_prelu"):
        build, _, scale = CASES[case]
        module = randomize(build(), seed=11)
        untiled = np.asarray(um.upscale(module, image, tile=0), dtype=int)
        tiled = np.asarray(um.upscale(module, image, tile=16, overlap=4), dtype=int)
        assert tiled.shape == untiled.shape == (32 * scale, 40 * scale, 3)
        assert untiled.std() > 10  # a varied image, not a clamped one
        diff = np.abs(tiled - untiled)
        assert diff.mean() < 3.5 and diff.max() < 64, (case, diff.mean(), diff.max())
        assert np.array_equal(np.asarray(um.upscale(module, image, tile=16, overlap=4)), tiled)  # deterministic


def test_tile_weights_are_linear_crossfades():
    """Width 40, tile 16, overlap 4: tiles at 0, 12, 24; at scale 2 each overlap is 8 output px, faded linearly."""
    starts = um._tile_starts(40, 16, 4)
    assert starts == [0, 12, 24]
    first, middle, last = um._axis_weights(starts, 16, 40, 2)
    ramp = (torch.arange(8) + 0.5) / 8
    torch.testing.assert_close(middle[:8], ramp)
    torch.testing.assert_close(first[-8:], ramp.flip(0))
    torch.testing.assert_close(middle[-8:], ramp.flip(0))
    torch.testing.assert_close(last[:8], ramp)
    assert first[:24].eq(1).all() and middle[8:24].eq(1).all() and last[8:].eq(1).all()
    torch.testing.assert_close(first[24:] + middle[:8], torch.ones(8))


class NearestX2(nn.Module):
    """A network with no context: tiled output must equal untiled exactly, so any blending weight error shows."""

    scale = 2

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest")


@pytest.mark.parametrize("tile,overlap", [(16, 4), (16, 0), (12, 5), (64, 8)])
def test_blending_weights_are_a_partition_of_unity(tile, overlap):
    image = random_image(40, 33, seed=5)
    untiled = np.asarray(um.upscale(NearestX2(), image, tile=0))
    np.testing.assert_array_equal(np.asarray(um.upscale(NearestX2(), image, tile=tile, overlap=overlap)), untiled)
    assert untiled.shape == (66, 80, 3)


def test_bad_tile_options_are_refused():
    with pytest.raises(ValueError, match="tile"):
        um.upscale(NearestX2(), random_image(8, 8, 0), tile=8, overlap=8)


def test_published_parameter_counts_on_the_meta_device():
    assert um.PARAMETER_COUNTS["RRDB_ESRGAN_x4"] == 16_697_987  # the widely quoted RRDBNet x4 count
    assert set(um.PARAMETER_COUNTS) == set(um.PUBLISHED_CONFIGS)
    for name in um.PUBLISHED_CONFIGS:
        with torch.device("meta"):
            module = um.build_published(name)
        assert um.count_parameters(module) == um.PARAMETER_COUNTS[name], name


def test_unknown_state_dict_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "mystery.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 3, 3, 3), "encoder.bias": torch.zeros(4)}, str(path))
    with pytest.raises(ValueError, match=r"mystery\.safetensors.*not a known upscaler layout.*SRVGGNetCompact"):
        um.load_upscaler(path)
    pth = tmp_path / "other.pth"
    torch.save({"params": {"conv_first.weight": torch.zeros(8, 3, 3, 3)}}, pth)
    with pytest.raises(ValueError, match=r"other\.pth"):
        um.load_upscaler(pth)
