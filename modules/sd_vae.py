"""The webui's `sd_vae` option: a VAE file from the VAE folder (`SERENA_VAE_DIR`, default `models/VAE`) encodes and
decodes instead of the checkpoint's own VAE.

"Automatic" and "None" keep the checkpoint's VAE (Serena has no "VAE beside the checkpoint" lookup, so the two
agree). A file is named as `GET /sdapi/v1/sd-vae` lists it, with or without its suffix. Files in the webui's
original layout (`encoder.down.0.block.0...`, optionally under `first_stage_model.`) are converted with diffusers'
own converter; files in diffusers' layout load as they are. The override is built beside the checkpoint's VAE and
swapped in per job, so the checkpoint's weights are never changed; the last override stays cached on the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules import sd_models

KEEP_CHECKPOINT_VAE = ("Automatic", "None")
FIELD = "sd_vae"


@dataclass(frozen=True)
class VaeFile:
    path: Path

    @property
    def name(self) -> str:
        """The infotext's "VAE" value: the file name, as the webui writes it."""
        return self.path.name

    @property
    def shorthash(self) -> str:
        """The infotext's "VAE hash": the first 10 hex digits of the file's sha256, as the webui writes it."""
        return sd_models.sha256_of_files([self.path])[:10]


def resolve(name: str | None, folder: Path | None = None) -> VaeFile | None:
    """The VAE file `name` selects (None: the checkpoint's own); ValueError naming the field and the choices."""
    if name is None or name in KEEP_CHECKPOINT_VAE:
        return None
    files = sd_models.list_vaes(folder)
    for path in files:
        if name in (path.name, path.stem):
            return VaeFile(path)
    choices = ", ".join([*KEEP_CHECKPOINT_VAE, *(path.name for path in files)])
    raise ValueError(f"{FIELD}: {name!r} is not a VAE in {folder or sd_models.vae_dir()}; allowed {choices}")


def apply(model: sd_models.LoadedModel, vae_file: VaeFile | None) -> None:
    """Make `vae_file`'s weights (None: the checkpoint's own) the VAE `model` encodes and decodes with."""
    own = model.networks.setdefault("checkpoint_vae", model.pipeline.vae)
    if vae_file is None:
        model.pipeline.vae = own
        return
    key = (vae_file.path.resolve(), vae_file.path.stat().st_mtime_ns, vae_file.path.stat().st_size)
    cached = model.networks.get("vae_override")
    if cached is None or cached[0] != key:
        model.networks.pop("vae_override", None)  # free the previous override before building the next
        cached = (key, load(vae_file.path, own))
        model.networks["vae_override"] = cached
    model.pipeline.vae = cached[1]


def load(path: Path, like):
    """A VAE with `like`'s architecture, device and dtype and the weights of `path`."""
    import safetensors.torch
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    try:
        state_dict = safetensors.torch.load_file(str(path))
    except Exception as error:
        raise ValueError(f"{FIELD}: cannot read {path.name}: {' '.join(str(error).split())[:200]}") from error
    if any(".down.0.block." in key or key.startswith("first_stage_model.") for key in state_dict):
        state_dict = convert_ldm_vae_checkpoint(state_dict, dict(like.config))
    vae = AutoencoderKL.from_config(like.config)
    missing, unexpected = vae.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ValueError(
            f"{FIELD}: {path.name} does not fit this checkpoint's VAE ({len(missing)} weights missing, "
            f"{len(unexpected)} unexpected, e.g. {detail})"
        )
    parameter = next(like.parameters())
    return vae.to(device=parameter.device, dtype=parameter.dtype).eval()
