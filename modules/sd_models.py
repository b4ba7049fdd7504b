"""Which model, loaded how: resolve a checkpoint name, hash it, load it once, keep it, free it on switch.

Checkpoints are the embedded models (the default model, and the scenes model where its weights are installed), a
diffusers folder (model_index.json), or a single-file checkpoint in
the original Stable Diffusion layout (.safetensors; pickle files only with an explicit allow flag), of the SD 1.x/2.x
or the SDXL family (base or refiner), told apart by the folder's pipeline class or the file's keys. Names are looked
up as given, then in the models folder (SERENA_MODELS_DIR, default `models/Stable-diffusion`).

The cache keeps up to `checkpoints_limit()` models (SERENA_CHECKPOINTS_LIMIT, default 2: the webui's
sd_checkpoints_limit), the least recently used freed first, so a job that needs two (a base and its refiner, or a
hires checkpoint) does not reload the base after every such job; with a limit of 1 every switch frees the previous
model. Generation is serialized by the runner. A checkpoint that fails to load (truncated, corrupt, a config missing,
an unknown layout) is a CheckpointLoadError naming its file, and the model freed to make room for it is loaded again,
so the next job still runs.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from modules import devices, families, fast_path

DEFAULT_MODEL_NAME = "serena-default"
SINGLE_FILE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]$")
_hash_cache: dict[tuple[str, int, int], str] = {}
# diffusers folders whose pipeline class names the architecture (the SD folders are told apart by their encoder)
PIPELINE_ARCHITECTURES = {"StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux"}


def default_model_dir() -> Path:
    from modules.default_model import DEFAULT_MODEL_DIR

    return Path(DEFAULT_MODEL_DIR)


def embedded_model_dirs() -> dict[str, Path]:
    """name -> folder of the models shipped inside the package, loaded by name like any checkpoint."""
    from modules.flow_model import FLOW_MODEL_DIR, FLOW_MODEL_NAME
    from modules.scenes_model import SCENES_MODEL_DIR, SCENES_MODEL_NAME

    return {
        DEFAULT_MODEL_NAME: default_model_dir(),
        SCENES_MODEL_NAME: Path(SCENES_MODEL_DIR),
        FLOW_MODEL_NAME: Path(FLOW_MODEL_DIR),
    }


def models_dir() -> Path:
    return Path(os.environ.get("SERENA_MODELS_DIR", "models/Stable-diffusion"))


def vae_dir() -> Path:
    return Path(os.environ.get("SERENA_VAE_DIR", "models/VAE"))


def list_vaes(folder: Path | None = None) -> list[Path]:
    """The VAE files (.safetensors, original layout, as the webui's models/VAE) in the VAE folder, by name."""
    folder = folder or vae_dir()
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES)


def sha256_of_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    kind: str  # "diffusers" (a folder, the default model included) or "single_file"
    name: str
    # Separate text encoders and VAE it is loaded with (modules.sd_modules): part of the model's identity.
    modules: tuple[Path, ...] = ()

    def same_model(self, other: CheckpointInfo) -> bool:
        return self.path == other.path and self.modules == other.modules

    @property
    def embedded(self) -> bool:
        """One of the models shipped inside the package (named by its name, not by a path)."""
        folder = embedded_model_dirs().get(self.name)
        return folder is not None and folder.resolve() == self.path.resolve()

    @property
    def is_pickle(self) -> bool:
        return self.path.suffix.lower() in PICKLE_SUFFIXES

    @cached_property
    def sha256(self) -> str:
        """The webui's hash for single files; for a folder, the same over its weight files in name order."""
        files = [self.path] if self.kind == "single_file" else sorted(self.path.rglob("*.safetensors"))
        stat_key = (str(self.path), sum(f.stat().st_size for f in files), max(f.stat().st_mtime_ns for f in files))
        if stat_key not in _hash_cache:
            _hash_cache[stat_key] = sha256_of_files(files)
        return _hash_cache[stat_key]

    @cached_property
    def architecture(self) -> str:
        """ "sd1", "sd2", "sd" (another SD size, as the default model), "sdxl", "sdxl-refiner", "sd3" or "flux"."""
        if self.kind == "single_file":
            from modules.sd_single_file import file_architecture

            try:
                return file_architecture(self.path)
            except Exception:  # noqa: BLE001 - an unreadable file (safetensors' own error type): loading it says why
                return "unknown"
        index = json.loads((self.path / "model_index.json").read_text(encoding="utf-8"))
        pipeline_class = index.get("_class_name", "")
        if pipeline_class.startswith("StableDiffusionXL"):
            return "sdxl" if (index.get("text_encoder") or [None])[0] else "sdxl-refiner"
        if pipeline_class in PIPELINE_ARCHITECTURES:
            return PIPELINE_ARCHITECTURES[pipeline_class]
        text_config = self.path / "text_encoder" / "config.json"
        if not text_config.is_file():  # not a loadable folder: loading it says why
            return "unknown"
        hidden_size = json.loads(text_config.read_text(encoding="utf-8")).get("hidden_size")
        return {768: "sd1", 1024: "sd2"}.get(hidden_size, "sd")

    @property
    def is_sdxl(self) -> bool:
        return self.architecture.startswith("sdxl")

    @property
    def shorthash(self) -> str:
        return self.sha256[:10]

    @property
    def title(self) -> str:
        """The webui's checkpoint title, "name [hash]"."""
        return f"{self.name} [{self.shorthash}]"


def default_checkpoint() -> CheckpointInfo:
    return CheckpointInfo(default_model_dir(), "diffusers", DEFAULT_MODEL_NAME)


def configured_native_size(checkpoint: CheckpointInfo) -> int | None:
    """A diffusers folder's native size read from its configs (UNet sample size x VAE scale), without loading it;
    None for a single file (its size is known once loaded)."""
    if checkpoint.kind != "diffusers":
        return None
    denoiser_config = next(
        (
            path
            for path in (checkpoint.path / name / "config.json" for name in ("unet", "transformer"))
            if path.is_file()
        ),
        None,
    )
    if denoiser_config is None:
        return None
    denoiser = json.loads(denoiser_config.read_text(encoding="utf-8"))
    vae = json.loads((checkpoint.path / "vae" / "config.json").read_text(encoding="utf-8"))
    return int(denoiser["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def embedded_checkpoints() -> list[CheckpointInfo]:
    """The default model, then each other embedded model whose weights are installed."""
    return [
        CheckpointInfo(folder, "diffusers", name)
        for name, folder in embedded_model_dirs().items()
        if name == DEFAULT_MODEL_NAME or (folder / "model_index.json").is_file()
    ]


def checkpoint_from_path(path: Path) -> CheckpointInfo | None:
    if path.is_dir() and (path / "model_index.json").is_file():
        # The embedded folders by their own path (a link to one elsewhere keeps its own name).
        embedded = {folder.absolute(): name for name, folder in embedded_model_dirs().items()}
        return CheckpointInfo(path.resolve(), "diffusers", embedded.get(path.absolute(), path.name))
    if path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES + PICKLE_SUFFIXES:
        return CheckpointInfo(path.resolve(), "single_file", path.stem)
    return None


def list_checkpoints(folder: Path | None = None) -> list[CheckpointInfo]:
    """The embedded models, then every checkpoint in the models folder."""
    folder = folder or models_dir()
    found = embedded_checkpoints()
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            info = checkpoint_from_path(path)
            if info is not None:
                found.append(info)
    return found


def resolve_checkpoint(
    name: str | os.PathLike | None,
    folder: Path | None = None,
    field: str = "sd_model_checkpoint",
    modules: tuple[Path, ...] = (),
) -> CheckpointInfo:
    """The checkpoint `name` refers to: None/"default", a path, a file or folder name in the models folder, or a
    webui title "name [hash]", loaded with `modules` (modules.sd_modules). ValueError (naming `field`) lists what is
    available."""
    info = _find_checkpoint(name, folder, field)
    if modules and not (info.kind == "single_file" and info.architecture in ("sd3", "flux")):
        raise ValueError(
            f"additional_modules: text encoders and VAEs in files of their own load with single-file SD 3 and FLUX "
            f"checkpoints; {info.name} is {info.architecture} (a VAE for it: sd_vae)"
        )
    return dataclasses.replace(info, modules=tuple(modules)) if modules else info


def _find_checkpoint(name, folder: Path | None, field: str) -> CheckpointInfo:
    if name is None or str(name) in ("", "default", DEFAULT_MODEL_NAME):
        return default_checkpoint()
    text = _TITLE_HASH.sub("", str(name))
    embedded = {info.name: info for info in embedded_checkpoints()}
    if text in embedded:
        return embedded[text]
    folder = folder or models_dir()
    candidates = [Path(text)]
    if not Path(text).is_absolute():
        candidates.append(folder / text)
        candidates += [folder / (text + suffix) for suffix in SINGLE_FILE_SUFFIXES + PICKLE_SUFFIXES]
    for candidate in candidates:
        info = checkpoint_from_path(candidate)
        if info is not None:
            return info
    if Path(text).is_file():
        raise ValueError(
            f"{field}: {text!r} is not a checkpoint; allowed: a diffusers folder with model_index.json "
            f"or a file ending in {', '.join(SINGLE_FILE_SUFFIXES + PICKLE_SUFFIXES)}"
        )
    available = ", ".join(info.name for info in list_checkpoints(folder))
    raise ValueError(f"{field}: no model {str(name)!r}; available: {available} (or a path)")


@dataclass
class LoadedModel:
    """A loaded pipeline: its components are what the engine samples with."""

    checkpoint: CheckpointInfo
    pipeline: object  # diffusers.StableDiffusionPipeline
    device: torch.device
    dtype: torch.dtype
    fast_path: fast_path.FastPath | None = None
    # (text, clip_skip, emphasis[, text-encoder LoRAs]) -> embedding
    prompt_cache: dict = field(default_factory=dict, repr=False)
    networks: dict = field(default_factory=dict, repr=False)  # LoRAs/embeddings loaded into it (modules.lora, ...)
    # The LoRAs applied to its text encoders now, ((adapter, weight), ...) (modules.lora.applied): they change what a
    # text encodes to, so the prompt cache keys on them.
    text_encoder_loras: tuple = ()

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.pipeline.vae.config.block_out_channels) - 1)

    @cached_property
    def family(self) -> families.ModelFamily:
        """What its kind of model decides (text conditioning, denoiser inputs, latent format): modules.families."""
        return families.family_of(self.pipeline)

    @property
    def native_size(self) -> int:
        """The size the model was trained at: its denoiser's sample size in pixels."""
        return self.family.native_size(self)


def load_pipeline(
    checkpoint: CheckpointInfo,
    device: torch.device,
    dtype: torch.dtype,
    allow_pickle: bool,
    speedups: fast_path.FastPath | None = None,
):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # the engine reports progress through GenerationState
    transformers_logging.disable_progress_bar()
    if checkpoint.kind == "single_file" and checkpoint.architecture in ("sd3", "flux"):
        from modules.transformer_single_file import load_transformer_file_pipeline

        pipeline = load_transformer_file_pipeline(checkpoint.path, checkpoint.modules, dtype)
    elif checkpoint.kind == "single_file":
        from modules.sd_single_file import load_single_file_pipeline

        pipeline = load_single_file_pipeline(checkpoint.path, allow_pickle=allow_pickle, torch_dtype=dtype)
    elif checkpoint.is_sdxl or checkpoint.architecture in PIPELINE_ARCHITECTURES.values():
        from diffusers import DiffusionPipeline

        # The class named by model_index.json: SDXL's base or refiner (whose first text encoder is absent), SD 3's
        # (without T5 where the folder has none: its null entries are passed as None, as diffusers asks).
        index = json.loads((checkpoint.path / "model_index.json").read_text(encoding="utf-8"))
        absent = {name: None for name, value in index.items() if isinstance(value, list) and value[0] is None}
        pipeline = DiffusionPipeline.from_pretrained(checkpoint.path, local_files_only=True, dtype=dtype, **absent)
    else:
        pipeline = StableDiffusionPipeline.from_pretrained(
            checkpoint.path,
            local_files_only=True,
            dtype=dtype,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipeline.set_progress_bar_config(disable=True)
    if speedups is not None and speedups.cpu_offload and device.type == "cuda":
        fast_path.apply(pipeline, speedups, device)  # offload places the weights itself
        return pipeline
    pipeline.to(device)
    sdxl = getattr(pipeline, "text_encoder_2", None) is not None
    if sdxl and dtype == torch.float16 and pipeline.vae.config.get("force_upcast", False):
        pipeline.vae.to(torch.float32)  # SDXL's own VAE overflows in float16 (an fp16-fixed one says it does not)
    if speedups is not None:
        fast_path.apply(pipeline, speedups, device)
    return pipeline


class CheckpointLoadError(ValueError):
    """A checkpoint that cannot be loaded; the message names its file and says why in one line."""

    def __init__(self, checkpoint: CheckpointInfo, error: Exception):
        reason = " ".join(str(error).split())[:400] or type(error).__name__
        super().__init__(f"sd_model_checkpoint: cannot load {checkpoint.path}: {type(error).__name__}: {reason}")


def checkpoints_limit() -> int:
    """How many models the cache keeps (SERENA_CHECKPOINTS_LIMIT, at least 1)."""
    text = os.environ.get("SERENA_CHECKPOINTS_LIMIT", "2")
    try:
        limit = int(text)
    except ValueError:
        raise ValueError(f"SERENA_CHECKPOINTS_LIMIT: {text!r} is not a whole number; allowed: 1 or more") from None
    if limit < 1:
        raise ValueError(f"SERENA_CHECKPOINTS_LIMIT: {limit} is too small; allowed: 1 or more")
    return limit


class ModelCache:
    """Keeps the loaded models, most recently used last; a request for another frees the least recently used one
    when the limit is reached (and loads it again if the new one fails)."""

    def __init__(self):
        self._models: list[LoadedModel] = []
        self._lock = threading.Lock()

    @property
    def loaded(self) -> LoadedModel | None:
        """The most recently used model."""
        return self._models[-1] if self._models else None

    @property
    def models(self) -> list[LoadedModel]:
        """Every model kept, least recently used first."""
        return list(self._models)

    def holds(self, checkpoint: CheckpointInfo) -> bool:
        return any(model.checkpoint.same_model(checkpoint) for model in self._models)

    def get(
        self,
        checkpoint: CheckpointInfo,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        allow_pickle: bool = False,
        speedups: fast_path.FastPath | None | str = "unchanged",
    ) -> LoadedModel:
        """The loaded model for `checkpoint`, loading it (and freeing the least recently used one at the limit)
        unless it is kept with the requested device, dtype and fast path (unspecified ones: whatever it has; the
        fast path of a new load: the most recently used model's)."""
        with self._lock:
            current = self.loaded
            for kept in self._models:
                if (
                    kept.checkpoint.same_model(checkpoint)
                    and (device is None or kept.device == device)
                    and (dtype is None or kept.dtype == dtype)
                    and (speedups == "unchanged" or kept.fast_path == speedups)
                ):
                    self._models.remove(kept)
                    self._free(self._make_room())
                    self._models.append(kept)
                    return kept
            device = device or devices.default_device()
            dtype = dtype or devices.default_dtype(device)
            if speedups == "unchanged":
                speedups = current.fast_path if current is not None else fast_path.from_environment()
            current = None
            # The same checkpoint with other settings goes; then the least recently used, to make room.
            evicted = [kept for kept in self._models if kept.checkpoint.path == checkpoint.path]
            self._models = [kept for kept in self._models if kept.checkpoint.path != checkpoint.path]
            evicted += self._make_room()
            # What reloads a freed model if this one fails; not the model itself, so freeing really frees it.
            previous = [(m.checkpoint, m.device, m.dtype, m.fast_path) for m in evicted]
            self._free(evicted)
            try:
                pipeline = load_pipeline(checkpoint, device, dtype, allow_pickle, speedups)
            except Exception as error:
                for entry in previous:
                    self._restore(*entry)
                raise CheckpointLoadError(checkpoint, error) from error
            model = LoadedModel(checkpoint, pipeline, device, dtype, speedups)
            self._models.append(model)
            return model

    def _make_room(self) -> list[LoadedModel]:
        """Take the least recently used models out until one more fits under the limit; returns them."""
        surplus = max(0, len(self._models) - checkpoints_limit() + 1)
        taken, self._models = self._models[:surplus], self._models[surplus:]
        return taken

    def _restore(self, checkpoint: CheckpointInfo, device, dtype, speedups) -> None:
        """Load a freed model again after a failed load (its weights were freed to make room), as the least
        recently used."""
        try:  # it loaded before, so a pickle checkpoint was allowed then
            pipeline = load_pipeline(checkpoint, device, dtype, checkpoint.is_pickle, speedups)
        except Exception:  # gone or changed on disk since: the next job loads what it names, and says why if it fails
            return
        self._models.insert(0, LoadedModel(checkpoint, pipeline, device, dtype, speedups))  # less used than the rest

    def clear(self) -> None:
        with self._lock:
            models, self._models = self._models, []
            self._free(models)

    @staticmethod
    def _free(models: list[LoadedModel]) -> None:
        if not models:
            return
        on_cuda = any(model.device.type == "cuda" for model in models)
        models.clear()
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()


model_cache = ModelCache()


def text_encoder_width() -> int:
    """The loaded model's text-embedding width (the default model's when none is loaded), read without loading it."""

    loaded = model_cache.loaded
    if loaded is not None:
        encoder = loaded.pipeline.text_encoder
        if encoder is None:  # the SDXL refiner: its one encoder is the second
            encoder = loaded.pipeline.text_encoder_2
        return int(encoder.get_input_embeddings().weight.shape[1])
    config = json.loads((default_model_dir() / "text_encoder" / "config.json").read_text(encoding="utf-8"))
    return int(config["hidden_size"])


def load_model(
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    allow_pickle: bool = False,
    speedups: fast_path.FastPath | None | str = "unchanged",
) -> LoadedModel:
    """Load (or reuse) a model and make it the current one. `speedups`: a FastPath, None for the plain path, or
    "unchanged" to keep the current model's choice (SERENA_FAST_PATH for the first load)."""
    info = resolve_checkpoint(checkpoint)
    return model_cache.get(
        info,
        torch.device(device) if device is not None else None,
        devices.parse_dtype(dtype) if dtype is not None else None,
        allow_pickle=allow_pickle,
        speedups=speedups,
    )
