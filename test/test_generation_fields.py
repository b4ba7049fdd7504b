"""Every generation field is declared once (modules.generation_fields) and every place that handles fields knows it:
the processing classes, validation, the infotext and replay, the CLI, the API schema and sweep labels. The checks
loop over the declarations, so a new declaration is covered without touching this file."""

import dataclasses
import json

import pytest
from fastapi.testclient import TestClient
from helpers import png_of
from PIL import Image

from modules import generation_fields, infotext
from modules.api import create_app, models
from modules.field_types import Integer
from modules.generation_fields import FIELDS, MODES, Api, Cli, GenerationField
from modules.processing import (
    StableDiffusionProcessing,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
    process_images,
)
from modules.replay import processing_from_infotext
from modules.sweeps import axes as sweep_axes
from serena_kit import cli

CLASSES = {"txt2img": StableDiffusionProcessingTxt2Img, "img2img": StableDiffusionProcessingImg2Img}
ENGINE_OWN = {"state", "attention", "trajectory"}  # the job's progress and what it observes: not generation fields


def declared_names(mode: str) -> set[str]:
    return {declaration.name for declaration in generation_fields.fields_for(mode)}


def test_declaration_names_and_short_names_are_unique():
    names = [declaration.name for declaration in FIELDS]
    short_names = [declaration.short_name for declaration in FIELDS]
    assert len(set(names)) == len(names) and len(set(short_names)) == len(short_names)


@pytest.mark.parametrize("mode", MODES)
def test_processing_classes_have_exactly_the_declared_fields_with_their_defaults(mode):
    cls = CLASSES[mode]
    assert {f.name for f in dataclasses.fields(cls)} - ENGINE_OWN == declared_names(mode)
    made = cls()
    for declaration in generation_fields.fields_for(mode):
        assert getattr(made, declaration.name) == declaration.default_for(mode), declaration.name
    shared = declared_names("txt2img") & declared_names("img2img")
    assert {f.name for f in dataclasses.fields(StableDiffusionProcessing)} - ENGINE_OWN == shared


def test_mutable_defaults_are_not_shared_between_jobs():
    first, second = StableDiffusionProcessingTxt2Img(), StableDiffusionProcessingTxt2Img()
    first.styles.append("bold")
    first.override_settings["eta_ddim"] = 0.5
    assert second.styles == [] and second.override_settings == {}


def a_valid_job(mode: str):
    if mode == "img2img":
        return StableDiffusionProcessingImg2Img(init_images=[Image.new("RGB", (32, 32))])
    return StableDiffusionProcessingTxt2Img()


@pytest.mark.parametrize(
    "mode, name", [(mode, declaration.name) for mode in MODES for declaration in generation_fields.fields_for(mode)]
)
def test_validation_checks_every_declared_field(mode, name):
    p = a_valid_job(mode)
    p.validate()
    setattr(p, name, object())
    with pytest.raises(TypeError, match=rf"^{name}(\[0\])?: expected .*, got object"):
        p.validate()


def infotext_examples(mode: str) -> dict:
    return {
        declaration.name: declaration.example
        for declaration in generation_fields.fields_for(mode)
        if declaration.infotext and declaration.example is not None
    }


def test_every_written_infotext_field_has_an_example_to_round_trip():
    for declaration in FIELDS:
        written_from_the_model = declaration.infotext and declaration.infotext.write
        if declaration.infotext and not written_from_the_model:
            assert declaration.example is not None, f"{declaration.name}: declare an example"
            assert declaration.example != declaration.default, f"{declaration.name}: the example is the default"


# Written only for models of a kind the default model is not (test_inpainting checks the first on a 9-channel UNet,
# test_flux.py the second on a guidance-distilled FLUX).
MODEL_KIND_KEYS = {"inpainting_mask_weight", "distilled_cfg_scale"}
# Written only when a file is there to name (test_sd_vae.py round-trips "VAE" with the files it writes,
# test_transformer_single_file.py the "Module N" keys with single-file SD 3 / FLUX checkpoints).
FILE_KEYS = {"sd_vae", "additional_modules"}
# Written only with a refiner, an SDXL model (test_sdxl.py round-trips them on a tiny SDXL pair).
REFINER_KEYS = {"refiner_checkpoint", "refiner_switch_at"}
# Written only for the guidance method that uses them; the example method is APG (test_guidance.py round-trips these).
OTHER_METHOD_KEYS = {"zero_init_steps", "perturbed_scale", "perturbed_layers"}


def test_every_infotext_field_round_trips_through_a_generated_image():
    """Every infotext field at a non-default value: each key is written, read back into the same value, and the
    replayed job makes the same PNG (infotext included). A mask makes it an inpainting job, whose keys are
    written only then."""
    init = Image.new("RGB", (40, 24), (200, 120, 30))
    mask = Image.new("L", (40, 24))
    mask.paste(255, (8, 4, 24, 16))
    skipped = MODEL_KIND_KEYS | REFINER_KEYS | OTHER_METHOD_KEYS
    examples = {name: value for name, value in infotext_examples("img2img").items() if name not in skipped}
    original = StableDiffusionProcessingImg2Img(init_images=[init], mask=mask, do_not_save_samples=True, **examples)
    result = process_images(original)
    parsed = infotext.parse_infotext(result.info)
    for declaration in generation_fields.fields_for("img2img"):
        if declaration.infotext and declaration.name not in skipped | FILE_KEYS:
            spec = declaration.infotext
            assert spec.parsed_key in parsed or any(spec.owns and spec.owns(key) for key in parsed), declaration.name
    control_images = [unit.image for unit in examples.get("controlnet_units", [])]  # not in an infotext
    replayed = processing_from_infotext(result.info, [init], mask=mask, control_images=control_images or None)
    for declaration in generation_fields.fields_for("img2img"):
        if declaration.infotext:
            assert getattr(replayed, declaration.name) == getattr(original, declaration.name), declaration.name
    assert replayed.extra_generation_params == {}
    assert png_of(process_images(replayed).images[0]) == png_of(result.images[0])


@pytest.mark.parametrize("mode", MODES)
def test_every_cli_field_has_its_option_in_help(mode, capsys):
    assert cli.main([mode, "--help"]) == 0
    help_text = capsys.readouterr().out
    for declaration in generation_fields.fields_for(mode):
        if declaration.cli is not None:
            assert f"{declaration.cli_flag} " in help_text, declaration.name


@pytest.mark.parametrize(
    "mode, schema", [("txt2img", "StableDiffusionTxt2ImgAPI"), ("img2img", "StableDiffusionImg2ImgProcessingAPI")]
)
def test_every_api_field_is_in_the_openapi_schema_with_the_webui_apis_default(mode, schema):
    document = TestClient(create_app(outdir="out")).get("/openapi.json").json()
    properties = document["components"]["schemas"][schema]["properties"]
    for declaration in generation_fields.fields_for(mode):
        if declaration.api is not None:
            assert declaration.api_name in properties, declaration.name
            assert properties[declaration.api_name].get("default") == declaration.api_default(mode), declaration.name


@pytest.mark.parametrize("mode", MODES)
def test_every_sweepable_field_is_an_axis_labelled_with_its_declared_label(mode):
    base = a_valid_job(mode)
    for declaration in generation_fields.fields_for(mode):
        if not declaration.sweepable or declaration.name == "init_images":
            continue
        value = declaration.example if declaration.example is not None else declaration.default_for(mode)
        axis = sweep_axes.parse_axis("x", (declaration.short_name, [value]), base)
        assert axis.field == declaration.name
        assert axis.label(value) == f"{declaration.label}: {declaration.display(value)}"
        if declaration.infotext and declaration.infotext.part is None:  # the infotext's own name for it
            assert axis.label(value).startswith(declaration.infotext.key + ": ")


NEW_FIELD = GenerationField(
    "tile_overlap", Integer(0, 64), 8, "pixels tiles overlap by", cli=Cli(), api=Api(default=16), example=12
)


def test_a_new_declaration_appears_in_the_cli_and_the_api_model(monkeypatch, capsys):
    monkeypatch.setattr(generation_fields, "FIELDS", (*FIELDS, NEW_FIELD))

    args = cli.build_parser().parse_args(["txt2img", "--tile-overlap", "12"])
    assert cli.processing_fields(args, "txt2img")["tile_overlap"] == 12
    assert "tile_overlap" not in cli.processing_fields(cli.build_parser().parse_args(["txt2img"]), "txt2img")
    assert cli.main(["txt2img", "--tile-overlap", "many"]) == cli.EXIT_USAGE
    assert "argument --tile-overlap: invalid int value: 'many'" in capsys.readouterr().err

    model = models.request_model("Txt2ImgWithTiles", "txt2img", models.WebuiTxt2ImgRequest)
    assert model().tile_overlap == 16 and model(tile_overlap=3).tile_overlap == 3
    assert model(tile_overlap="3").tile_overlap == 3  # read the webui's way (modules.api.lax), as every API field
    with pytest.raises(ValueError, match="tile_overlap"):
        model(tile_overlap="three")
    schema = json.dumps(model.model_json_schema())
    assert "pixels tiles overlap by" in schema

    # The processing classes do not have it yet: the class test above names what is missing.
    missing = declared_names("txt2img") - {f.name for f in dataclasses.fields(StableDiffusionProcessingTxt2Img)}
    assert missing == {"tile_overlap"}


def test_every_declared_kind_is_immutable():
    """Declarations are module-level values shared by every job and face: a kind changed in place would change
    validation for everyone."""
    for declaration in FIELDS:
        kind = declaration.kind
        for part in (kind, getattr(kind, "kind", None)):
            if part is not None:
                with pytest.raises(dataclasses.FrozenInstanceError):
                    part.low = 0  # any attribute: a frozen dataclass refuses them all


# The webui's UI limits, which the widget form's sliders and bounded boxes take from the declarations.
@pytest.mark.parametrize(
    "name, bounds",
    [
        ("steps", (1, 1000)),
        ("batch_size", (1, 64)),
        ("cfg_scale", (0.0, 50.0)),
        ("denoising_strength", (0.0, 1.0)),
        ("width", (8, 4096)),
        ("height", (8, 4096)),
    ],
)
def test_a_ranged_field_gives_its_bounds_to_controls(name, bounds):
    assert generation_fields.declaration_of(name).kind.bounds() == bounds


@pytest.mark.parametrize("name, kind", [("prompt", "PromptText"), ("sampler_name", "SamplerName")])
def test_a_field_without_a_range_has_no_bounds(name, kind):
    with pytest.raises(TypeError, match=f"^{kind} values have no range$"):
        generation_fields.declaration_of(name).kind.bounds()


def test_a_field_that_may_be_none_takes_its_kinds_types_and_none():
    """width/height: a size, or None for the model's native size, in the API schema, on the CLI and in infotexts."""
    kind = generation_fields.declaration_of("width").kind
    assert kind.json_type == int | None
    assert kind.cli_type is int
    assert kind.parse("64") == 64
    assert kind.from_cli(None, "--width") is None
    assert kind.from_cli(64, "--width") == 64
    assert generation_fields.declaration_of("eta").kind.json_type == float | None


def test_image_fields_read_their_files_from_the_cli(tmp_path):
    """`--mask FILE` and `--init-images FILE ...`: the CLI gives paths, the job gets the images."""
    Image.new("L", (16, 8), 200).save(tmp_path / "mask.png")
    Image.new("RGB", (8, 16), (10, 20, 30)).save(tmp_path / "init.png")
    mask = generation_fields.declaration_of("mask").kind.from_cli(str(tmp_path / "mask.png"), "--mask")
    assert (mask.size, mask.getpixel((0, 0))) == ((16, 8), 200)
    assert generation_fields.declaration_of("mask").kind.from_cli(None, "--mask") is None
    (init,) = generation_fields.declaration_of("init_images").kind.from_cli([str(tmp_path / "init.png")], "--init")
    assert (init.size, init.getpixel((0, 0))) == ((8, 16), (10, 20, 30))
