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
