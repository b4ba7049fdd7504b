"""The embedded flow model (SD 3 layout, modules.flow_model) draws what the prompt says through the engine: the
default model's evaluation set (96 images: every shape x colour pair on two backgrounds, two seeds), scored by the
default model's scorer at the model's default guidance (Euler, CFG 7, 20 steps)."""

import pytest

from modules import sd_models
from modules.flow_model import FLOW_MODEL_NAME
from training.default_model.evaluate import adherence_rates, evaluation_cases, generate

CASES = evaluation_cases()


def rates(cfg_scale: float, cases=CASES, sampler: str = "Euler") -> dict[str, float]:
    images = generate(sd_models.resolve_checkpoint(FLOW_MODEL_NAME).path, cases, sampler, cfg_scale)
    return adherence_rates(cases, images)


@pytest.fixture(scope="module")
def default_rates():
    yield rates(7.0)
    sd_models.model_cache.clear()


def test_the_flow_model_is_an_sd3_model():
    model = sd_models.load_model(FLOW_MODEL_NAME)
    assert model.checkpoint.architecture == "sd3" and model.family.flow
    assert model.native_size == 32 and model.pipeline.text_encoder_3 is None


def test_colour_background_and_shape_at_the_default_guidance(default_rates):
    assert default_rates["colour"] >= 0.9, default_rates
    assert default_rates["background"] >= 0.9, default_rates
    assert default_rates["shape"] >= 0.8, default_rates


def test_without_the_prompt_the_flow_model_does_not_follow_it(default_rates):
    """CFG 0 keeps the unconditional prediction alone. (At CFG 1, the prompt's prediction alone, this model already
    follows its prompt about as well as at 7: notebook 12.)"""
    unconditional = rates(0.0, CASES[::4])  # 24 images: seed 0, every shape and colour on one background
    assert unconditional["all"] < 0.5 * default_rates["all"], (unconditional, default_rates)
