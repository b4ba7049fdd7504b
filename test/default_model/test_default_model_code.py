"""The default model's training tools (training/default_model): data, tokenizer, scorer, architecture, training and
evaluation commands (fast checks, no trained model)."""

import json
import sys

import numpy as np
import pytest
from transformers import CLIPTokenizer

from modules.default_model import DEFAULT_MODEL_DIR, scoring
from training.default_model import architecture, build, dataset, evaluate, train
from training.default_model.vocabulary import COLOUR_WORDS, SHAPE_WORDS


def test_dataset_is_seeded_and_never_paints_a_shape_in_its_background_colour():
    first, first_samples = dataset.batch(np.random.default_rng(7), 16)
    second, second_samples = dataset.batch(np.random.default_rng(7), 16)
    assert np.array_equal(first, second) and first_samples == second_samples
    assert all(sample.colour != sample.background for sample in first_samples)
    assert {sample.shape for sample in first_samples} <= set(SHAPE_WORDS)


def test_captions_name_shape_colour_and_background():
    assert dataset.caption_for("circle", "red", "blue") == "a red circle on a blue background"


def test_scorer_reads_the_ground_truth_images():
    rng = np.random.default_rng(3)
    samples = [dataset.random_sample(rng) for _ in range(90)]
    matches = [
        scoring.adherence(scoring.score_image(dataset.render(sample)), sample.shape, sample.colour, sample.background)
        for sample in samples
    ]
    for criterion in ("colour", "background", "shape"):
        assert np.mean([match[criterion] for match in matches]) >= 0.95, criterion


def test_tokenizer_has_a_token_per_word_and_falls_back_to_bytes():
    tokenizer = CLIPTokenizer.from_pretrained(DEFAULT_MODEL_DIR / "tokenizer", local_files_only=True)
    for word in COLOUR_WORDS + SHAPE_WORDS:
        assert len(tokenizer(word).input_ids) == 3, word  # <start> word <end>
    ids = tokenizer("ünïcode ✓ prompt").input_ids
    assert tokenizer.unk_token_id not in ids[1:-1] and len(ids) > 5
    assert tokenizer.model_max_length == 77


def test_committed_weights_match_the_architecture_and_size_budget():
    pipeline = build.build_random_pipeline()
    from diffusers import StableDiffusionPipeline

    committed = StableDiffusionPipeline.from_pretrained(DEFAULT_MODEL_DIR, local_files_only=True)
    for name in ("unet", "vae"):
        built, shipped = (json.loads(json.dumps(dict(getattr(p, name).config))) for p in (pipeline, committed))
        # The VAE's scaling factor is measured by training (latent std), not part of the architecture.
        ignored = {"scaling_factor", "_diffusers_version", "_class_name", "_name_or_path", "_use_default_values"}
        assert {k: v for k, v in built.items() if k not in ignored} == {
            k: v for k, v in shipped.items() if k not in ignored
        }, name
    assert architecture.native_size(committed.unet, committed.vae) == 32
    weights = sum(path.stat().st_size for path in DEFAULT_MODEL_DIR.rglob("*.safetensors"))
    assert weights <= build.MAX_WEIGHTS_BYTES


def test_evaluation_set_has_at_least_96_cases_over_every_shape_and_colour():
    cases = evaluate.evaluation_cases()
    assert len(cases) >= 96
    assert {case.shape for case in cases} == set(SHAPE_WORDS)
    assert {case.colour for case in cases} == set(COLOUR_WORDS)
    assert all(case.colour != case.background for case in cases)


@pytest.mark.parametrize("batch_size", [48, 2])
def test_evaluation_makes_one_image_per_case_for_any_case_count(batch_size):
    cases = evaluate.evaluation_cases()[:5]
    images = evaluate.generate(DEFAULT_MODEL_DIR, cases, "Euler a", 7.0, steps=2, batch_size=batch_size)
    assert len(images) == len(cases)


def test_training_command_runs_end_to_end_in_a_few_steps(tmp_path, monkeypatch, capsys):
    out = tmp_path / "model"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train",
            "--out",
            str(out),
            "--threads",
            "1",
            "--vae-steps",
            "2",
            "--vae-batch-size",
            "4",
            "--unet-steps",
            "2",
            "--batch-size",
            "4",
            "--calibration-steps",
            "2",
            "--calibration-batch-size",
            "4",
            "--latent-pool-size",
            "8",
            "--warmup-steps",
            "1",
            "--log-every",
            "1",
        ],
    )
    train.main()
    log = capsys.readouterr().out
    assert "[vae] done" in log and "[unet] done" in log and "[calibration] done" in log, log
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert pipeline.unet.config.sample_size * 4 == 32


@pytest.mark.parametrize("image_size", [32])
def test_rendered_images_have_the_background_on_the_border(image_size):
    sample = dataset.random_sample(np.random.default_rng(11), image_size)
    pixels = np.asarray(dataset.render(sample, image_size))
    assert pixels.shape == (image_size, image_size, 3)
    assert scoring.nearest_palette_colour(scoring.border_median(pixels)) == sample.background
