"""The example networks do what they were trained for, measured with the project's scorer on the default model.

Rates over 24 seeds (training.networks.evaluate): with <lora:ring:1>, "a red ring on a blue background" is read as a
ring in >= 80 % and keeps its colours (red ring, blue background) in >= 90 % each; the base model (never shown a
ring) draws almost none. The embedding makes "violet" the palette's purple in >= 80 % of 24 prompts.
"""

import io

import pytest

from training.networks import evaluate


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def base_images():
    return evaluate.generate([evaluate.lora_prompt(None)] * len(evaluate.SEEDS), evaluate.SEEDS)


def test_the_base_model_does_not_draw_rings(base_images):
    assert evaluate.ring_rates(base_images)["ring"] <= 0.25, evaluate.ring_rates(base_images)


@pytest.fixture(scope="module")
def lora_rates():
    return evaluate.ring_rates(evaluate.generate([evaluate.lora_prompt(1)] * len(evaluate.SEEDS), evaluate.SEEDS))


def test_the_ring_lora_at_weight_1_draws_rings(lora_rates):
    assert lora_rates["ring"] >= 0.8, lora_rates


def test_the_ring_lora_keeps_the_asked_colours(lora_rates):
    assert lora_rates["colour"] >= 0.9 and lora_rates["background"] >= 0.9, lora_rates


def test_the_ring_lora_at_weight_0_gives_the_base_models_bytes(base_images):
    zero = evaluate.generate([evaluate.lora_prompt(0)] * len(evaluate.SEEDS), evaluate.SEEDS)
    assert [png_bytes(image) for image in zero] == [png_bytes(image) for image in base_images]


def test_the_violet_embedding_gives_the_palettes_purple():
    rates = evaluate.violet_rates(evaluate.generate(evaluate.violet_prompts(), evaluate.SEEDS))
    assert rates["purple"] >= 0.8, rates
