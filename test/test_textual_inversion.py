"""Textual-inversion embeddings: the file's name in a prompt activates it; webui formats; hashes recorded."""

import io

import pytest
import safetensors.torch
import torch

from modules import extra_networks, replay, sd_models, textual_inversion
from modules.processing import StableDiffusionProcessingTxt2Img, process_images

PROMPT = "a violet circle on a green background"


def generate(prompt=PROMPT, **fields):
    fields = {"seed": 2, "steps": 8, "do_not_save_samples": True, "do_not_save_grid": True} | fields
    return process_images(StableDiffusionProcessingTxt2Img(prompt=prompt, **fields))


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def example_vectors() -> torch.Tensor:
    return safetensors.torch.load_file(extra_networks.list_embeddings()["violet"].path)["emb_params"]


@pytest.fixture
def embeddings_folder(tmp_path, monkeypatch):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    monkeypatch.setenv("SERENA_EMBEDDINGS_DIR", str(folder))
    return folder


def test_the_example_embedding_has_one_vector_of_the_text_encoders_width():
    assert tuple(example_vectors().shape) == (1, sd_models.text_encoder_width())


def test_the_name_in_the_prompt_activates_the_embedding_and_the_infotext_records_its_hash():
    result = generate()
    violet = extra_networks.list_embeddings()["violet"]
    assert f'TI hashes: "violet: {violet.sha256[:12]}"' in result.info
    assert "TI hashes" not in generate("a red circle on a green background").info


def test_a_multi_vector_embedding_takes_one_token_per_vector(embeddings_folder):
    three = torch.cat([example_vectors()] * 3)
    safetensors.torch.save_file({"emb_params": three}, embeddings_folder / "violet3.safetensors")
    prompt = "a violet3 circle on a green background"
    result = generate(prompt)
    assert 'TI hashes: "violet3: ' in result.info
    model = sd_models.load_model()
    assert textual_inversion.expand(model, prompt) == "a violet3 violet3_1 violet3_2 circle on a green background"
    ids = model.pipeline.tokenizer(textual_inversion.expand(model, prompt)).input_ids
    added = model.pipeline.tokenizer.convert_tokens_to_ids(["violet3", "violet3_1", "violet3_2"])
    assert [token for token in ids if token in added] == added
    table = model.pipeline.text_encoder.get_input_embeddings().weight
    assert all(torch.equal(table[token], three[i].to(table.dtype)) for i, token in enumerate(added))


def test_the_webui_formats_give_the_same_image(embeddings_folder, monkeypatch):
    vectors = example_vectors()
    reference = png_bytes(generate().images[0])
    safetensors.torch.save_file({"string_to_param.*": vectors}, embeddings_folder / "violet.safetensors")
    textual_inversion.unload_all(sd_models.load_model())
    assert png_bytes(generate().images[0]) == reference
    (embeddings_folder / "violet.safetensors").unlink()
    torch.save({"string_to_param": {"*": vectors}, "name": "violet", "step": 300}, embeddings_folder / "violet.pt")
    textual_inversion.unload_all(sd_models.load_model())
    with pytest.raises(ValueError, match="pickle file .* SERENA_ALLOW_PICKLE_EMBEDDINGS=1"):
        generate()
    monkeypatch.setenv("SERENA_ALLOW_PICKLE_EMBEDDINGS", "1")
    assert png_bytes(generate().images[0]) == reference


def test_an_embedding_for_another_text_encoder_is_refused(embeddings_folder):
    safetensors.torch.save_file({"emb_params": torch.zeros(1, 768)}, embeddings_folder / "sd15word.safetensors")
    with pytest.raises(ValueError, match="embedding 'sd15word' has vectors of size 768, this model's text encoder"):
        generate("a sd15word circle")
    listing = textual_inversion.list_for_model(sd_models.text_encoder_width())
    assert listing["skipped"]["sd15word"]["shape"] == 768
    assert listing["loaded"]["violet"] == {
        "step": None,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
        "shape": sd_models.text_encoder_width(),
        "vectors": 1,
    }


def test_replay_finds_the_embedding_by_name_and_refuses_another_file(embeddings_folder):
    result = generate()
    again = process_images(replay.processing_from_infotext(result.info, strict=True))
    assert png_bytes(again.images[0]) == png_bytes(result.images[0])
    safetensors.torch.save_file({"emb_params": example_vectors() * 2}, embeddings_folder / "violet.safetensors")
    with pytest.raises(ValueError, match="TI hashes: embedding 'violet' here .* has hash"):
        replay.processing_from_infotext(result.info)


def test_prompts_without_embeddings_are_unchanged_by_loaded_ones():
    plain = "a red circle on a green background"
    textual_inversion.unload_all(sd_models.load_model())
    before = png_bytes(generate(plain).images[0])
    generate()  # loads the embedding
    assert png_bytes(generate(plain).images[0]) == before
