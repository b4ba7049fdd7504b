"""LoRAs and embeddings through the faces: REST API (webui shapes), CLI listings, a LoRA weight as a sweep axis."""

import io

import pytest
from fastapi.testclient import TestClient

from modules import extra_networks, sd_models
from modules.api import create_app
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from serena_kit import sweep
from serena_kit.cli import main

PROMPT = "a red ring on a blue background"


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(outdir=tmp_path / "outputs")) as client:
        yield client


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_api_lists_loras_in_the_webuis_shape(client):
    response = client.get("/sdapi/v1/loras")
    assert response.status_code == 200
    ring = next(item for item in response.json() if item["name"] == "ring")
    assert ring == {
        "name": "ring",
        "alias": "ring",
        "path": str(extra_networks.list_loras()["ring"].path),
        "metadata": extra_networks.safetensors_metadata(extra_networks.list_loras()["ring"].path),
    }
    assert client.post("/sdapi/v1/refresh-loras").status_code == 200


def test_api_lists_embeddings_in_the_webuis_shape(client):
    response = client.get("/sdapi/v1/embeddings")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"loaded", "skipped"}
    assert body["loaded"]["violet"]["vectors"] == 1
    assert body["loaded"]["violet"]["shape"] == sd_models.text_encoder_width()
    assert client.post("/sdapi/v1/refresh-embeddings").status_code == 200


def test_api_txt2img_applies_prompt_tags_and_refuses_unknown_loras(client):
    body = {"prompt": PROMPT + " <lora:ring:1>", "steps": 4, "seed": 1, "width": 32, "height": 32}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    assert "Lora hashes" in response.json()["info"]
    refused = client.post("/sdapi/v1/txt2img", json=body | {"prompt": PROMPT + " <lora:nope:1>"})
    assert refused.status_code == 400
    assert refused.json()["field"] == "prompt"
    assert "available: " in refused.json()["detail"] and "ring" in refused.json()["detail"]


def test_cli_lists_loras_and_embeddings(capsys):
    assert main(["loras"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ring = extra_networks.list_loras()["ring"]
    assert f"ring\t{ring.shorthash}\t{ring.path}" in lines
    assert main(["embeddings"]) == 0
    assert any(line.startswith("violet\t1 vectors\tloaded\t") for line in capsys.readouterr().out.splitlines())


def test_cli_txt2img_with_an_unknown_lora_exits_2_naming_the_prompt(capsys):
    code = main(["txt2img", "--prompt", PROMPT + " <lora:nope:1>", "--steps", "2"])
    assert code == 2
    assert "prompt: no LoRA named 'nope'" in capsys.readouterr().err


def test_a_lora_weight_is_a_sweep_axis():
    base = {"prompt": PROMPT, "seed": 7, "steps": 6}
    result = sweep(base, x=("lora:ring", [0, 0.5, 1]))
    assert [result.x.label(value) for value in result.x.values] == ["LoRA ring: 0", "LoRA ring: 0.5", "LoRA ring: 1"]
    plain = process_images(StableDiffusionProcessingTxt2Img(**base, do_not_save_samples=True)).images[0]
    assert png_bytes(result.cell(x=0).image) == png_bytes(plain)  # weight 0: the base model's bytes
    assert len({png_bytes(image) for image in result.images}) == 3
    assert result.cell(x=1).processed.prompt == PROMPT + " <lora:ring:1>"


def test_a_lora_axis_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"x: no LoRA named 'star'; available: .*ring"):
        sweep({"prompt": PROMPT}, x=("lora:star", [0, 1]))
    with pytest.raises(TypeError, match="x: lora:ring values are LoRA weights"):
        sweep({"prompt": PROMPT}, x=("lora:ring", ["strong"]))


def test_the_widget_forms_prompt_takes_lora_tags_and_embedding_names():
    import serena_kit as sk

    form = sk.GenerationForm(prompt="a violet ring on a blue background <lora:ring:1>", steps=4, seed=3)
    result = form.generate()
    assert "Lora hashes" in result.info and "TI hashes" in result.info
    with pytest.raises(ValueError, match="prompt: no LoRA named 'nope'"):
        sk.request_from_widgets({"prompt": "a ring <lora:nope:1>"})
