"""Replay tells the truth: what it cannot honour, or other kernels than the image records, is said, not hidden."""

import warnings
from pathlib import Path

import pytest
from helpers import png_of

from modules import images
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from modules.replay import ReplayWarning, processing_from_infotext
from serena_kit.cli import main

WEBUI_KEYS = ", Face restoration: GFPGAN, ADetailer model: face_yolov8n.pt, Hires refiner: first pass"


@pytest.fixture(scope="module")
def made():
    image = process_images(
        StableDiffusionProcessingTxt2Img(prompt="a red circle on a blue background", seed=3, steps=3)
    ).images[0]
    return image, image.info["parameters"]


def replay_warnings(text: str, **fields) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        processing_from_infotext(text, **fields)
    return [str(warning.message) for warning in caught if warning.category is ReplayWarning]


def test_a_serena_infotext_replays_without_a_warning(made):
    assert replay_warnings(made[1]) == []


def test_keys_serena_does_not_honour_are_listed_in_one_warning_and_left_out_of_the_new_image(made):
    text = made[1] + WEBUI_KEYS + ", Version: v1.10.1"
    assert replay_warnings(text) == [
        "replay: infotext keys Serena does not honour: Face restoration, ADetailer model, Hires refiner "
        "(the new image may differ)"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReplayWarning)
        new_text = process_images(processing_from_infotext(text)).images[0].info["parameters"]
    assert "ADetailer model" not in new_text and "Hires refiner" not in new_text
    assert new_text.endswith("Version: v1.10.1")  # describes the image without changing it: kept


def test_strict_replay_refuses_what_it_cannot_honour(made):
    with pytest.raises(ValueError, match=r"^infotext: infotext keys Serena does not honour: ADetailer model .*strict"):
        processing_from_infotext(made[1] + ", ADetailer model: face_yolov8n.pt", strict=True)


def test_other_kernels_than_the_image_records_are_named(made):
    text = made[1] + ', Kernels: "avx512 native, 2 threads"'  # quoted, as the writer does
    assert replay_warnings(text) == [
        "replay: the image records kernels 'avx512 native, 2 threads', this machine runs 'avx2 portable': "
        "bytes may differ"
    ]
    with pytest.raises(ValueError, match="bytes may differ"):
        processing_from_infotext(text, strict=True)


def test_portable_generation_records_no_kernels_key_and_js_names_the_path(made):
    result = process_images(StableDiffusionProcessingTxt2Img(prompt="p", seed=1, steps=1, do_not_save_samples=True))
    assert "Kernels" not in result.infotexts[0]
    assert result.kernels["device"] == "cpu" and result.kernels["mode"] == "portable"
    assert result.kernels["cpu_capability"] == "AVX2" and '"kernels"' in result.js()


def test_cli_replay_warns_on_stderr_and_strict_exits_2(made, capsys, isolated_workdir):
    image, text = made
    path = Path("webui.png")
    path.write_bytes(images.png_bytes(image, text + ", ADetailer model: face_yolov8n.pt"))
    assert main(["replay", str(path), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "serena: warning: replay: infotext keys Serena does not honour: ADetailer model (the new" in err
    assert main(["replay", str(path), "--strict", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("serena: error: webui.png: infotext: infotext keys Serena does not")


def test_kit_replay_is_strict_on_request(made):
    import serena_kit as sk

    image, text = made
    with pytest.raises(ValueError, match="Face restoration"):
        sk.replay(images.png_bytes(image, text + WEBUI_KEYS), strict=True)
    assert png_of(sk.replay(png_of(image)).images[0]) == png_of(image)


def test_the_emphasis_mode_replays(made):
    assert processing_from_infotext(made[1] + ", Emphasis: No norm").emphasis == "No norm"


def elsewhere(text: str, model_hash: str | None = None) -> str:
    """The infotext as another machine writes it: its model has another name there (and maybe another hash)."""
    text = text.replace("Model: serena-default", "Model: shapes-v1-from-a-colleague")
    if model_hash:
        text = text.replace(text.split("Model hash: ")[1].split(",")[0], model_hash)
    return text


def test_the_callers_model_wins_over_an_infotext_model_not_installed_here(made):
    import serena_kit as sk
    from modules.default_model import DEFAULT_MODEL_DIR

    image, text = made
    png = images.png_bytes(image, elsewhere(text))
    with pytest.raises(ValueError, match="sd_model_checkpoint: no model 'shapes-v1-from-a-colleague'"):
        sk.replay(png)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplayWarning)  # the hashes agree: nothing to warn about
        replayed = sk.replay(png, sd_model_checkpoint=str(DEFAULT_MODEL_DIR)).images[0]
    assert replayed.tobytes() == image.tobytes()
    assert processing_from_infotext(elsewhere(text), sd_model_checkpoint=None).sd_model_checkpoint is None
    assert processing_from_infotext(
        elsewhere(text), override_settings={"sd_model_checkpoint": "serena-default"}
    ).override_settings == {"sd_model_checkpoint": "serena-default"}


def test_a_model_whose_hash_differs_from_the_recorded_one_is_named(made):
    text = elsewhere(made[1], model_hash="0123456789")
    assert replay_warnings(text, sd_model_checkpoint="serena-default") == [
        "replay: the image records model hash 0123456789 (shapes-v1-from-a-colleague), the model given is "
        f"serena-default [{made[1].split('Model hash: ')[1][:10]}]: the new image may differ"
    ]
    with pytest.raises(ValueError, match="^infotext: the image records model hash 0123456789 .*strict"):
        processing_from_infotext(text, strict=True, sd_model_checkpoint="serena-default")


def test_cli_replay_takes_the_model_from_its_option(made, capsys, isolated_workdir):
    from modules.default_model import DEFAULT_MODEL_DIR

    image, text = made
    path = Path("colleague.png")
    path.write_bytes(images.png_bytes(image, elsewhere(text)))
    assert main(["replay", str(path), "--quiet"]) == 2
    assert "sd_model_checkpoint: no model 'shapes-v1-from-a-colleague'" in capsys.readouterr().err
    assert main(["replay", str(path), "--quiet", "--model", str(DEFAULT_MODEL_DIR)]) == 0
    saved = sorted(Path("outputs").rglob("*.png"))
    assert len(saved) == 1 and images.open_image(str(saved[0]), "file").tobytes() == image.tobytes()
    path.write_bytes(images.png_bytes(image, elsewhere(text, model_hash="0123456789")))
    assert main(["replay", str(path), "--quiet", "--strict", "--model", str(DEFAULT_MODEL_DIR)]) == 2
    assert "records model hash 0123456789" in capsys.readouterr().err
