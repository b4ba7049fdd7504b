"""The scenes scorer reads rendered ground-truth scenes right (>= 97 % per category, issue 30), parses the suite's
templates and refuses other text naming the templates; the suite keeps GenEval's proportions."""

import collections
import json

import numpy as np
import pytest

from modules.scenes_model import SUITE_FILE, scoring
from training.scenes_model import dataset

SCENES_PER_CATEGORY = 150


@pytest.fixture(scope="module")
def ground_truth():
    """Per category: (correct, total, the captions it got wrong), over scenes drawn with training captions."""
    rng = np.random.default_rng(30)
    results = collections.defaultdict(lambda: [0, 0, []])
    for category in scoring.CATEGORIES:
        for _ in range(SCENES_PER_CATEGORY):
            scene = dataset.random_scene(rng, category)
            caption = dataset.caption_for(scene, rng).text()
            verdict = scoring.score_prompt(dataset.render(scene), caption)
            entry = results[verdict["category"]]
            entry[0] += verdict["correct"]
            entry[1] += 1
            if not verdict["correct"]:
                entry[2].append(caption)
    return results


@pytest.mark.parametrize("category", scoring.CATEGORIES)
def test_the_scorer_reads_ground_truth_scenes_right(ground_truth, category):
    correct, total, wrong = ground_truth[category]
    print(f"{category}: {correct}/{total} right; wrong: {wrong[:3]}")
    assert total >= 40 and correct / total >= 0.97, (correct, total, wrong[:5])


def test_each_check_fails_when_the_scene_differs_from_the_caption():
    rng = np.random.default_rng(1)
    scene = dataset.random_scene(rng, "position")
    first, second = scene.objects
    image = dataset.render(scene)
    right = f"a {first.colour} {first.shape} {scoring.relation_words(scene.relation)} a {second.colour} {second.shape}"
    assert scoring.score_prompt(image, right)["correct"]
    opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[scene.relation]
    swapped = right.replace(scoring.relation_words(scene.relation), scoring.relation_words(opposite))
    assert scoring.score_prompt(image, swapped)["position"] is False
    other_colour = next(c for c in scoring.PALETTE if c not in (first.colour, second.colour))
    recoloured = scoring.score_prompt(image, right.replace(first.colour, other_colour, 1))
    assert recoloured["colour"] is False and recoloured["correct"] is False
    counted = scoring.score_prompt(image, f"a photo of three {first.shape}s")
    assert counted["count"] is False


def test_prompts_outside_the_templates_are_refused_naming_them():
    with pytest.raises(ValueError, match="not in the scenes model's caption templates.*relations: left of"):
        scoring.score_prompt(np.zeros((64, 64, 3)), "a cat on a sofa")
    assert scoring.parse_scene_caption("a photo of five circles") is None
    parsed = scoring.parse_scene_caption("A photo of two small red circles on a white background.")
    assert parsed == scoring.SceneCaption((scoring.Phrase("circle", 2, "red", "small", counted=True),), None, "white")
    assert parsed.category == "counting"


def test_the_suite_has_genevals_proportions_and_every_prompt_parses():
    suite = json.loads(SUITE_FILE.read_text())
    counts = collections.Counter(entry["category"] for entry in suite["prompts"])
    assert counts == suite["counts"] and sum(counts.values()) == 553 and suite["version"] == 1
    assert len({entry["prompt"] for entry in suite["prompts"]}) == 553
    for entry in suite["prompts"]:
        assert scoring.parse_or_raise(entry["prompt"]).category == entry["category"]


def test_the_suite_file_is_what_its_command_writes():
    from training.scenes_model.make_suite import suite_prompts

    assert suite_prompts() == json.loads(SUITE_FILE.read_text())["prompts"]
