"""Model families (modules.families): the engine asks the loaded model's family what differs between kinds of
checkpoints; SD and SDXL moved behind it with their bytes (the goldens and test_sdxl pin those)."""

from types import SimpleNamespace

import pytest
import torch
from diffusers.configuration_utils import FrozenDict

from modules import families, sd_models
from modules.families.base import ModelFamily


def test_the_embedded_models_are_stable_diffusion():
    for name in ("serena-default", "serena-scenes"):
        model = sd_models.load_model(None if name == "serena-default" else name)
        assert model.family is families.STABLE_DIFFUSION
        assert model.checkpoint.architecture in model.family.architectures


def fake_model(**vae_config):
    config = FrozenDict({"scaling_factor": 0.5, "latent_channels": 16} | vae_config)
    vae = SimpleNamespace(config=config, dtype=torch.float32)
    return SimpleNamespace(pipeline=SimpleNamespace(vae=vae), dtype=torch.float32)


def test_the_latent_format_scales_and_shifts_as_the_vae_config_says():
    encoded = torch.linspace(-2, 2, 16).view(1, 1, 4, 4)
    plain, shifted = fake_model(), fake_model(shift_factor=0.25)
    family = families.STABLE_DIFFUSION
    assert torch.equal(family.to_latents(plain, encoded), encoded * 0.5)  # SD's arithmetic, to the bit
    assert torch.equal(family.to_latents(shifted, encoded), (encoded - 0.25) * 0.5)  # SD 3 / FLUX VAEs
    for model in (plain, shifted):
        assert torch.allclose(family.from_latents(model, family.to_latents(model, encoded)), encoded)
    assert family.latent_channels(plain) == 16


def test_a_family_is_found_by_its_components_and_a_new_one_is_one_declaration(monkeypatch):
    sd_pipeline = SimpleNamespace(unet=object(), text_encoder=object())
    sdxl_pipeline = SimpleNamespace(unet=object(), text_encoder=object(), text_encoder_2=object())
    assert families.family_of(sd_pipeline).name == "sd" and families.family_of(sdxl_pipeline).name == "sdxl"

    class Transformer(ModelFamily):
        def matches(self, pipeline) -> bool:
            return getattr(pipeline, "transformer", None) is not None

    new = Transformer("dit", ("dit",), default_sampler="Euler")
    monkeypatch.setattr(families, "FAMILIES", (new, *families.FAMILIES))
    assert families.family_of(SimpleNamespace(transformer=object())) is new
    with pytest.raises(ValueError, match="^no model family has the components of SimpleNamespace"):
        families.family_of(SimpleNamespace(vae=object()))
