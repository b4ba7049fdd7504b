"""The scenes model, serena-scenes: shipped inside the package, loaded by name like any checkpoint, replayed byte
for byte, and able to compose: scored by its own scene scorer on the benchmark's fixed quick part."""

import numpy as np
import pytest
from PIL import Image

import serena_kit as sk
from modules import generation_fields, sd_models
from modules.scenes_model import SCENES_MODEL_DIR, SCENES_MODEL_NAME
from serena_kit import benchmarks as bench

MAX_WEIGHTS_BYTES = 15 * 1024 * 1024
# Floors under the quick part's shares at the model's defaults (measured 0.25 / 0.625 / 0.375 / 0.75 / 0.05 / 0.45,
# overall 0.42; the full benchmark: docs/scenes_model.md), so a model that stopped composing fails.
FLOORS = {"single_object": 0.15, "two_object": 0.5, "counting": 0.25, "colors": 0.6, "color_attr": 0.3, "overall": 0.35}


def test_shipped_and_loaded_by_name_like_any_checkpoint():
    info = sd_models.resolve_checkpoint(SCENES_MODEL_NAME)
    assert info.embedded and info.path.resolve() == SCENES_MODEL_DIR.resolve()
    assert SCENES_MODEL_NAME in [checkpoint.name for checkpoint in sd_models.list_checkpoints()]
    assert sd_models.resolve_checkpoint(str(SCENES_MODEL_DIR)).name == SCENES_MODEL_NAME  # a path names it too
    assert sd_models.resolve_checkpoint(info.title).path == info.path
    # Labels (sweep grids, the form) name it, not its folder "weights".
    assert generation_fields.declaration_of("sd_model_checkpoint").display(str(SCENES_MODEL_DIR)) == SCENES_MODEL_NAME
    assert sum(path.stat().st_size for path in SCENES_MODEL_DIR.rglob("*.safetensors")) <= MAX_WEIGHTS_BYTES


def test_generates_at_its_native_64_px_names_itself_in_the_infotext_and_replays_byte_for_byte():
    result = sk.txt2img("a photo of a red circle", sd_model_checkpoint=SCENES_MODEL_NAME, seed=7)
    image = result.images[0]
    assert image.size == (64, 64)
    info = sd_models.resolve_checkpoint(SCENES_MODEL_NAME)
    assert f"Model hash: {info.shorthash}, Model: {SCENES_MODEL_NAME}" in result.infotexts[0]
    again = sk.replay(image)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(image))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The benchmark's quick part (25 prompts x 4 seeds), the model's defaults: Euler a, 20 steps, CFG 7."""
    return bench.bench("scenes", SCENES_MODEL_NAME, quick=True, out_dir=tmp_path_factory.mktemp("bench"))


def test_composes_what_its_prompts_ask_on_the_quick_benchmark(quick_run):
    rates = quick_run.summary().set_index("category")["rate"]
    # Floors below the rates the full benchmark measured (model card), so a model that stopped composing fails.
    for category, floor in FLOORS.items():
        assert rates[category] >= floor, (category, rates.to_dict())


def test_its_failures_are_named_by_the_checks_that_failed(quick_run):
    failures = quick_run.failures()
    assert len(failures) == (~quick_run.rows["correct"].astype(bool)).sum()
    assert all(reason for reason in failures["failed"])  # a failed image failed at least one named check
    shown = failures.head(6)
    grid = quick_run.grid(shown, columns=3)
    assert grid.width > 3 * 128 and grid.height > 2 * 128  # two rows of three 64 px images shown at 128 px
    assert np.array_equal(
        np.asarray(quick_run.image(shown.iloc[0])),
        np.asarray(Image.open(quick_run.folder / "images" / shown.iloc[0]["image"]).convert("RGB")),
    )
