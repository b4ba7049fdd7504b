"""serena_kit's thin layer: re-exports, one-line helpers, and the image -> infotext -> same image loop."""

import shutil

import pytest
from helpers import png_of
from PIL import Image

import serena_kit as sk
from modules import processing, sd_models
from modules.default_model import DEFAULT_MODEL_DIR
from modules.runtime import runner


def test_the_kit_re_exports_the_engines_own_objects():
    from serena_kit import GenerationForm, ProcessingRunner, request_from_widgets, sweep  # noqa: F401 (the issue's line)

    assert sk.ProcessingRunner is runner.ProcessingRunner
    assert sk.ProcessingRequest is runner.ProcessingRequest
    assert sk.process_images is processing.process_images
    assert sk.Processed is processing.Processed
    assert sk.StableDiffusionProcessingTxt2Img is processing.StableDiffusionProcessingTxt2Img
    assert sk.StableDiffusionProcessingImg2Img is processing.StableDiffusionProcessingImg2Img
    assert callable(GenerationForm) and callable(request_from_widgets) and callable(sweep)


def test_txt2img_helper_goes_through_the_runner(monkeypatch):
    seen = []
    original_run = runner.ProcessingRunner.run

    def recording_run(self, request):
        seen.append(request.processing)
        return original_run(self, request)

    monkeypatch.setattr(runner.ProcessingRunner, "run", recording_run)
    result = sk.txt2img("a red circle", seed=3, steps=4, do_not_save_samples=True)
    assert isinstance(result, sk.Processed)
    assert len(seen) == 1 and seen[0].prompt == "a red circle" and seen[0].seed == 3


def test_txt2img_helper_equals_process_images_with_the_same_fields():
    fields = dict(prompt="a blue square", seed=8, steps=5, cfg_scale=5.5, do_not_save_samples=True)
    helper = sk.txt2img(**fields)
    direct = sk.process_images(sk.StableDiffusionProcessingTxt2Img(**fields))
    assert png_of(helper.images[0]) == png_of(direct.images[0])


def test_img2img_helper_takes_one_image_or_one_per_batch_position():
    init = Image.new("RGB", (32, 32), "orange")
    result = sk.img2img(init, "a circle", seed=4, steps=6, denoising_strength=0.5, do_not_save_samples=True)
    direct = sk.process_images(
        sk.StableDiffusionProcessingImg2Img(
            init_images=[init], prompt="a circle", seed=4, steps=6, denoising_strength=0.5, do_not_save_samples=True
        )
    )
    assert "Denoising strength: 0.5" in result.info
    assert png_of(result.images[0]) == png_of(direct.images[0])
    batch = sk.img2img([init, init], "a circle", seed=4, steps=2, batch_size=2, do_not_save_samples=True)
    assert batch.all_seeds == [4, 5]


def test_helpers_report_invalid_fields_like_the_engine():
    with pytest.raises(ValueError, match="^steps: 0 is out of range"):
        sk.txt2img("x", steps=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'stepz'"):
        sk.txt2img("x", stepz=4)


def test_load_model_loads_the_default_by_none_default_or_path():
    default = sk.load_model()
    assert default.checkpoint.name == sd_models.DEFAULT_MODEL_NAME
    assert sk.load_model("default") is default
    assert sk.load_model(DEFAULT_MODEL_DIR).checkpoint.path == default.checkpoint.path
    with pytest.raises(ValueError, match="^sd_model_checkpoint: no model 'missing-model'"):
        sk.load_model("missing-model")


def test_generations_run_on_the_checkpoint_they_name(tmp_path):
    copy = tmp_path / "tiny-copy"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    on_copy = sk.txt2img("a circle", seed=2, steps=3, sd_model_checkpoint=str(copy), do_not_save_samples=True)
    on_default = sk.txt2img("a circle", seed=2, steps=3, do_not_save_samples=True)
    assert "Model: tiny-copy" in on_copy.info and "Model: serena-default" in on_default.info
    assert on_copy.images[0].tobytes() == on_default.images[0].tobytes()


def test_read_infotext_from_a_path_png_bytes_or_an_image(isolated_workdir):
    result = sk.txt2img("a green triangle", seed=12, steps=3)
    path = isolated_workdir / result.paths[0]
    assert sk.read_infotext(path) == result.info
    assert sk.read_infotext(str(path)) == result.info
    assert sk.read_infotext(path.read_bytes()) == result.info
    assert sk.read_infotext(result.images[0]) == result.info
    assert sk.parse_infotext(sk.read_infotext(path))["Seed"] == "12"


def test_read_infotext_of_an_image_without_parameters_says_so(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(
        ValueError, match=r"^image: the image has no generation parameters \(no 'parameters' PNG text chunk\)$"
    ):
        sk.read_infotext(tmp_path / "plain.png")
    with pytest.raises(TypeError, match="^image: expected a PIL image, image file bytes or a path, got int$"):
        sk.read_infotext(12)
    with pytest.raises(ValueError, match="^image: not a readable image"):
        sk.read_infotext(b"not an image")


def test_replay_of_a_saved_png_makes_the_same_bytes(isolated_workdir):
    original = sk.txt2img("a yellow star", seed=-1, steps=5, sampler_name="DPM++ 2M", scheduler="Karras")
    saved = isolated_workdir / original.paths[0]
    replayed = sk.replay(saved)
    assert replayed.seed == original.seed
    assert png_of(replayed.images[0]) == saved.read_bytes()


def test_replay_of_an_img2img_png_needs_its_init_image():
    init = Image.new("RGB", (32, 32), "purple")
    original = sk.img2img(init, "a square", seed=6, steps=4, denoising_strength=0.6, do_not_save_samples=True)
    with pytest.raises(ValueError, match="^init_images: this image was made by img2img"):
        sk.replay(original.images[0])
    replayed = sk.replay(original.images[0], init_images=[init])
    assert png_of(replayed.images[0]) == png_of(original.images[0])


def test_png_hash_changes_with_one_pixel():
    image = sk.txt2img("a dot", seed=1, steps=2, do_not_save_samples=True).images[0]
    changed = image.copy()
    changed.info = dict(image.info)
    red, green, blue = changed.getpixel((0, 0))
    changed.putpixel((0, 0), ((red + 1) % 256, green, blue))
    assert len(sk.png_hash([image])) == 16
    assert sk.png_hash(image) == sk.png_hash([image])
    assert sk.png_hash([changed]) != sk.png_hash([image])
