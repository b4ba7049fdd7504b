"""ESRGAN-family upscaler models written from the published architectures.

spandrel, which would load these model files, imports torchvision (its package imports its whole architecture
registry, and two architectures import torchvision), and torchvision cannot be installed beside the CPU torch that
Serena's machines use. So the two network families the webui's ESRGAN upscaler runs are written here from their
published descriptions, with the published state-dict key names so that released weights load strictly:

- `RRDBNet`: ESRGAN's network (Wang et al. 2018, "ESRGAN: Enhanced Super-Resolution Generative Adversarial
  Networks"), with Real-ESRGAN's pixel-unshuffle input for scales 2 and 1 (RealESRGAN_x2plus). Key names are the
  "new" layout of BasicSR / Real-ESRGAN; the original ESRGAN repository's "old" layout (`model.0.*`,
  `model.1.sub.N.RDB1.conv1.0.*`, ...; most community models such as 4x-UltraSharp) is converted by
  `convert_old_esrgan`.
- `SRVGGNetCompact`: Real-ESRGAN's compact VGG-style network (realesr-general-x4v3, realesr-animevideov3).

`load_upscaler` reads a `.safetensors` or `.pth` file, detects the layout and every size (scale included) from the
keys and tensor shapes alone, and `upscale` runs a model over a PIL image in feathered tiles, with the webui's
ESRGAN tile options (`ESRGAN_tile` 192, `ESRGAN_tile_overlap` 8).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

ARCHITECTURES = ("ESRGAN", "RealESRGAN", "SRVGGNetCompact")
DEFAULT_TILE = 192  # the webui's ESRGAN_tile
DEFAULT_TILE_OVERLAP = 8  # the webui's ESRGAN_tile_overlap

# The published configurations, and their parameter counts as this module builds them (test/test_upscaler_models.py
# builds each on the meta device and checks the count). Configurations: ESRGAN's RRDB_ESRGAN_x4.pth (the ESRGAN
# repository) and Real-ESRGAN's inference_realesrgan.py model table.
PUBLISHED_CONFIGS: dict[str, tuple[str, dict]] = {
    "RRDB_ESRGAN_x4": ("RRDBNet", {"scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}),
    "RealESRGAN_x4plus": ("RRDBNet", {"scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}),
    "RealESRGAN_x4plus_anime_6B": ("RRDBNet", {"scale": 4, "num_feat": 64, "num_block": 6, "num_grow_ch": 32}),
    "RealESRGAN_x2plus": ("RRDBNet", {"scale": 2, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}),
    "realesr-animevideov3": ("SRVGGNetCompact", {"num_feat": 64, "num_conv": 16, "upscale": 4, "act_type": "prelu"}),
    "realesr-general-x4v3": ("SRVGGNetCompact", {"num_feat": 64, "num_conv": 32, "upscale": 4, "act_type": "prelu"}),
}
PARAMETER_COUNTS = {
    # 16,697,987 is the widely quoted parameter count of ESRGAN's RRDBNet x4 (64 features, 23 blocks, growth 32);
    # this module's RRDBNet gives exactly that. RealESRGAN_x4plus is the same network.
    "RRDB_ESRGAN_x4": 16_697_987,
    "RealESRGAN_x4plus": 16_697_987,
    # The rest: computed from the published configuration (not checked against a published number).
    "RealESRGAN_x4plus_anime_6B": 4_467_779,
    "RealESRGAN_x2plus": 16_703_171,  # x4 plus conv_first's 9 extra input channels (3x3x9x64 = 5,184)
    "realesr-animevideov3": 621_424,
    "realesr-general-x4v3": 1_213_296,
}


def build_published(name: str) -> nn.Module:
    """The network of a published model (PUBLISHED_CONFIGS), uninitialised weights: build it on the meta device."""
    kind, config = PUBLISHED_CONFIGS[name]
    return RRDBNet(**config) if kind == "RRDBNet" else SRVGGNetCompact(**config)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------------------------
# RRDBNet (ESRGAN, Real-ESRGAN)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and every earlier conv's output (dense connections); LeakyReLU 0.2
    after the first four; the fifth's output is scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        for i in range(5):
            out_ch = num_feat if i == 4 else num_grow_ch
            setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow_ch, out_ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        convs = (self.conv1, self.conv2, self.conv3, self.conv4)
        for conv in convs:
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks in series, the result scaled by 0.2 plus the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator with BasicSR / Real-ESRGAN key names.

    conv_first; `num_block` RRDBs (`body`); conv_body, added to conv_first's output; per upsampling step nearest x2,
    a conv (`conv_upN`) and LeakyReLU 0.2; conv_hr + LeakyReLU; conv_last. Scale 4 has 2 upsampling steps, 8 has 3.
    Scales 2 and 1, by default (`unshuffle=True`), are Real-ESRGAN's (RealESRGAN_x2plus): the input is pixel-unshuffled
    by 2 (scale 2) or 4 (scale 1) into conv_first (4x or 16x the input channels) and the network upsamples by 4. With
    `unshuffle=False` they are the original ESRGAN's smaller models instead: log2(scale) upsampling steps (1 or 0).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        *,
        unshuffle: bool = True,
    ):
        super().__init__()
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"RRDBNet scale must be 1, 2, 4 or 8, not {scale}")
        self.scale = scale
        self.unshuffle_factor = 4 // scale if unshuffle and scale < 4 else 1
        self.num_upsample = int(math.log2(scale * self.unshuffle_factor))
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle_factor**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        for i in range(self.num_upsample):
            setattr(self, f"conv_up{i + 1}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    @property
    def input_multiple(self) -> int:
        """Height and width of an input must be multiples of this (the pixel-unshuffle factor)."""
        return self.unshuffle_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle_factor > 1:
            x = F.pixel_unshuffle(x, self.unshuffle_factor)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(self.num_upsample):
            conv = getattr(self, f"conv_up{i + 1}")
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


# ----------------------------------------------------------------------------------------------------------------------
# SRVGGNetCompact (Real-ESRGAN)


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU()
    if act_type == "leakyrelu":
        return nn.LeakyReLU(0.1)  # Real-ESRGAN's slope for this network
    raise ValueError(f"SRVGGNetCompact act_type must be 'prelu', 'relu' or 'leakyrelu', not {act_type!r}")


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact network: a flat `body` of conv(in, feat), activation, `num_conv` x [conv(feat, feat),
    activation], conv(feat, out * upscale^2); pixel shuffle by `upscale`; plus the nearest-upsampled input."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ):
        super().__init__()
        self.scale = self.upscale = upscale
        self.act_type = act_type
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    input_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


# ----------------------------------------------------------------------------------------------------------------------
# The original ESRGAN key layout


_OLD_RDB = re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)")
_OLD_SUB = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
_OLD_TOP = re.compile(r"model\.(\d+)\.(weight|bias)")


def convert_old_esrgan(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original ESRGAN repository's key layout -> BasicSR / Real-ESRGAN's (RRDBNet's), same tensors.

    The old network is one flattened nn.Sequential `model`: 0 conv_first; 1 a shortcut whose `sub` holds the RRDBs
    (`sub.N.RDBk.convj.0`, each conv wrapped in a Sequential with its activation) and conv_body (`sub.<num_block>`);
    then per upsampling step [Upsample, Conv, LeakyReLU] (3 indices: convs at 3, 6, 9, ...); then conv_hr, LeakyReLU
    and conv_last (for n upsampling steps: convs at 3n+2 and 3n+4; x4: 8 and 10).
    """
    new: dict[str, torch.Tensor] = {}
    top: dict[int, dict[str, torch.Tensor]] = {}
    body_convs: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if match := _OLD_RDB.fullmatch(key):
            block, rdb, conv, kind = match.groups()
            new[f"body.{block}.rdb{rdb}.conv{conv}.{kind}"] = tensor
        elif match := _OLD_SUB.fullmatch(key):
            body_convs.setdefault(int(match[1]), {})[match[2]] = tensor
        elif match := _OLD_TOP.fullmatch(key):
            top.setdefault(int(match[1]), {})[match[2]] = tensor
        else:
            raise ValueError(f"not an old-layout ESRGAN key: {key!r}")
    num_block = len({key.split(".")[1] for key in new})
    if list(body_convs) != [num_block] or sorted({int(key.split(".")[1]) for key in new}) != list(range(num_block)):
        raise ValueError(f"old-layout ESRGAN: expected RRDBs model.1.sub.0..{num_block - 1} then conv_body there")
    for kind, tensor in body_convs[num_block].items():
        new[f"conv_body.{kind}"] = tensor
    indices = sorted(top)
    num_upsample = (len(indices) - 3) if indices else -1  # conv_first, the upsampling convs, conv_hr, conv_last
    expected = [0, *(3 * (i + 1) for i in range(num_upsample)), 3 * num_upsample + 2, 3 * num_upsample + 4]
    if num_upsample < 0 or indices != expected:
        raise ValueError(f"old-layout ESRGAN: top-level conv indices {indices} do not follow the published pattern")
    names = ["conv_first", *(f"conv_up{i + 1}" for i in range(num_upsample)), "conv_hr", "conv_last"]
    for name, index in zip(names, indices):
        for kind, tensor in top[index].items():
            new[f"{name}.{kind}"] = tensor
    return new


# ----------------------------------------------------------------------------------------------------------------------
# Loading


@dataclass
class UpscalerModel:
    """A loaded upscaler: `module` (eval mode, no gradients), its architecture ("ESRGAN": the original repository's
    key layout; "RealESRGAN": BasicSR's RRDBNet layout; "SRVGGNetCompact"), its scale and size, all read from the
    weights."""

    module: nn.Module
    architecture: str
    scale: int
    parameters: int
    path: Path | None = None
    config: dict = field(default_factory=dict)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for wrapper in ("params_ema", "params"):  # Real-ESRGAN's releases (BasicSR training checkpoints)
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return state


def _rrdb_config(state: dict[str, torch.Tensor], path: Path) -> dict:
    num_feat, in_ch = state["conv_first.weight"].shape[:2]
    num_out_ch = state["conv_last.weight"].shape[0]
    num_block = len({key.split(".")[1] for key in state if key.startswith("body.")})
    num_grow_ch = state["body.0.rdb1.conv1.weight"].shape[0]
    num_upsample = len({key.split(".")[0] for key in state if re.fullmatch(r"conv_up\d+\.(weight|bias)", key)})
    if in_ch == num_out_ch:
        factor = 1
    elif in_ch == num_out_ch * 4:
        factor = 2
    elif in_ch == num_out_ch * 16:
        factor = 4
    else:
        raise ValueError(f"{path}: RRDBNet with {in_ch} input and {num_out_ch} output channels is not a known layout")
    if factor > 1 and num_upsample != 2:
        raise ValueError(f"{path}: pixel-unshuffled RRDBNet input with {num_upsample} upsampling steps is not known")
    scale = 2**num_upsample // factor
    if scale not in (1, 2, 4, 8):
        raise ValueError(f"{path}: RRDBNet with {num_upsample} upsampling steps is not a known layout")
    return {
        "num_in_ch": in_ch // factor**2,
        "num_out_ch": num_out_ch,
        "scale": scale,
        "num_feat": num_feat,
        "num_block": num_block,
        "num_grow_ch": num_grow_ch,
        "unshuffle": factor > 1,
    }


def _srvgg_config(state: dict[str, torch.Tensor], path: Path) -> dict:
    convs = sorted(int(key.split(".")[1]) for key in state if key.endswith(".weight") and state[key].ndim == 4)
    if convs != list(range(0, 2 * len(convs), 2)) or len(convs) < 2:
        raise ValueError(f"{path}: SRVGGNetCompact convs must sit at body.0, body.2, ...; found {convs}")
    num_feat, num_in_ch = state["body.0.weight"].shape[:2]
    last = state[f"body.{convs[-1]}.weight"].shape[0]
    num_out_ch = num_in_ch  # the published models map RGB to RGB; the last conv's size fixes out * upscale^2
    upscale = math.isqrt(last // num_out_ch)
    if upscale * upscale * num_out_ch != last:
        raise ValueError(f"{path}: SRVGGNetCompact's last conv has {last} outputs, not {num_out_ch} x a square")
    prelu = state.get("body.1.weight")
    # PReLU has a weight of shape [num_feat]; ReLU and LeakyReLU have none and cannot be told apart by keys.
    act_type = "prelu" if prelu is not None and tuple(prelu.shape) == (num_feat,) else "relu"
    return {
        "num_in_ch": num_in_ch,
        "num_out_ch": num_out_ch,
        "num_feat": num_feat,
        "num_conv": len(convs) - 2,
        "upscale": upscale,
        "act_type": act_type,
    }


KNOWN_LAYOUTS = (
    "the original ESRGAN layout (model.0.weight, model.1.sub.0.RDB1.conv1.0.weight), "
    "BasicSR / Real-ESRGAN's RRDBNet (conv_first.weight, body.0.rdb1.conv1.weight), "
    "Real-ESRGAN's SRVGGNetCompact (body.0.weight, a conv, and no conv_first)"
)


def load_upscaler(path: str | Path) -> UpscalerModel:
    """Load an ESRGAN-family model file (.safetensors, or .pth read with weights_only), detecting the layout, the
    sizes and the scale from the keys and shapes (never from the file name)."""
    path = Path(path)
    state = _read_state(path)
    if "model.0.weight" in state and "model.1.sub.0.RDB1.conv1.0.weight" in state:
        try:
            architecture, state = "ESRGAN", convert_old_esrgan(state)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
    elif "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        architecture = "RealESRGAN"
    elif "body.0.weight" in state and state["body.0.weight"].ndim == 4 and "conv_first.weight" not in state:
        architecture = "SRVGGNetCompact"
    else:
        raise ValueError(f"{path}: not a known upscaler layout; known: {KNOWN_LAYOUTS}")
    if architecture == "SRVGGNetCompact":
        config = _srvgg_config(state, path)
        module: nn.Module = SRVGGNetCompact(**config)
    else:
        config = _rrdb_config(state, path)
        module = RRDBNet(**config)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit the detected {architecture} layout: {error}") from error
    module.eval().requires_grad_(False)
    return UpscalerModel(module, architecture, module.scale, count_parameters(module), path, config)


# ----------------------------------------------------------------------------------------------------------------------
# Running


def _run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module over a 1xCxHxW tensor, padding H and W up to the module's input multiple and cropping back."""
    multiple = getattr(module, "input_multiple", 1)
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    out = module(x)
    scale = out.shape[-1] // x.shape[-1]
    return out[..., : height * scale, : width * scale]


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis, spread evenly as the webui's split_grid does, overlapping by at least `overlap`."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def _ramp(length: int, fade_in: int, fade_out: int) -> torch.Tensor:
    """A tile's blending weight along one axis: linear fades over its overlaps with the neighbours, 1 elsewhere; where
    two tiles overlap their weights sum to 1."""
    weight = torch.ones(length, dtype=torch.float32)
    if fade_in:
        weight[:fade_in] = (torch.arange(fade_in, dtype=torch.float32) + 0.5) / fade_in
    if fade_out:
        weight[length - fade_out :] = torch.minimum(
            weight[length - fade_out :], (torch.arange(fade_out, 0, -1, dtype=torch.float32) - 0.5) / fade_out
        )
    return weight


def _axis_weights(starts: list[int], tile: int, size: int, scale: int) -> list[torch.Tensor]:
    weights = []
    for i, start in enumerate(starts):
        end = min(start + tile, size)
        fade_in = (starts[i - 1] + tile - start) * scale if i > 0 else 0
        fade_out = (end - starts[i + 1]) * scale if i + 1 < len(starts) else 0
        weights.append(_ramp((end - start) * scale, fade_in, fade_out))
    return weights


def _input_channels(module: nn.Module) -> int | None:
    if isinstance(module, RRDBNet):
        return module.conv_first.in_channels // module.unshuffle_factor**2
    if isinstance(module, SRVGGNetCompact):
        return module.body[0].in_channels
    return None


def upscale(
    model: UpscalerModel | nn.Module,
    image: Image.Image,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_TILE_OVERLAP,
) -> Image.Image:
    """Upscale an image by the model's scale: RGB, float32 in 0..1, in `tile` px tiles overlapping by `overlap` px
    (tile 0: the whole image at once), overlaps blended with linear weight ramps; clamped and rounded to uint8. On the
    CPU with torch's current threads; deterministic."""
    module = model.module if isinstance(model, UpscalerModel) else model
    scale = int(module.scale)
    if _input_channels(module) not in (None, 3):
        raise ValueError(f"upscale runs RGB models (3 input channels), not {_input_channels(module)}")
    if tile < 0 or overlap < 0 or (tile and overlap >= tile):
        raise ValueError(f"tile must be 0 or larger than overlap (>= 0); got tile {tile}, overlap {overlap}")
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    height, width = pixels.shape[:2]
    module = module.to("cpu", torch.float32)
    with torch.inference_mode():
        if not tile or (height <= tile and width <= tile):
            out = _run(module, x)[0]
        else:
            ys, xs = _tile_starts(height, tile, overlap), _tile_starts(width, tile, overlap)
            wy, wx = _axis_weights(ys, tile, height, scale), _axis_weights(xs, tile, width, scale)
            out = torch.zeros(3, height * scale, width * scale)
            total = torch.zeros(height * scale, width * scale)
            for y0, row_weight in zip(ys, wy):
                for x0, col_weight in zip(xs, wx):
                    piece = _run(module, x[..., y0 : y0 + tile, x0 : x0 + tile])[0]
                    weight = row_weight[:, None] * col_weight[None, :]
                    sy, sx = (
                        slice(y0 * scale, y0 * scale + piece.shape[1]),
                        slice(x0 * scale, x0 * scale + piece.shape[2]),
                    )
                    out[:, sy, sx] += piece * weight
                    total[sy, sx] += weight
            out = out / total
    array = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")
