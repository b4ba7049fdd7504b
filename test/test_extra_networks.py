"""Extra networks on disk and in prompts: tags, names, folders, the webui's hashes. No model involved."""

import hashlib
from pathlib import Path

import pytest
import safetensors.torch
import torch

from modules import extra_networks
from modules.default_model import EXAMPLE_EMBEDDINGS_DIR, EXAMPLE_LORA_DIR
from modules.extra_networks import LoraTag


def test_lora_tags_are_taken_out_of_the_prompt_with_their_weights():
    text, tags = extra_networks.parse_lora_tags("a red ring <lora:ring:0.8> on a blue background<lora:other:-1.5>")
    assert text == "a red ring  on a blue background"
    assert tags == [LoraTag("ring", 0.8), LoraTag("other", -1.5)]


def test_a_tag_without_weight_means_one_and_a_repeated_name_adds_up():
    assert extra_networks.parse_lora_tags("<lora:ring>")[1] == [LoraTag("ring", 1.0)]
    assert extra_networks.parse_lora_tags("<lora:ring:0.5> x <lora:ring:0.25>")[1] == [LoraTag("ring", 0.75)]


def test_a_prompt_without_tags_is_unchanged():
    prompt = "a red circle on a (blue:1.2) background, [a|b]"
    assert extra_networks.parse_lora_tags(prompt) == (prompt, [])


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("<hypernet:x:1>", "unknown extra network <hypernet"),
        ("<lora:ring:1:0.5>", "take one"),
        ("<lora:ring:strong>", "'strong' is not a number"),
    ],
)
def test_malformed_tags_are_errors_naming_what_is_allowed(prompt, message):
    with pytest.raises(ValueError, match=message):
        extra_networks.parse_lora_tags(prompt)


def test_the_example_networks_are_listed_by_file_name():
    assert extra_networks.list_loras()["ring"].path == (EXAMPLE_LORA_DIR / "ring.safetensors").resolve()
    assert extra_networks.list_embeddings()["violet"].path == (EXAMPLE_EMBEDDINGS_DIR / "violet.safetensors").resolve()


def test_the_users_folder_comes_first_and_is_configurable(tmp_path, monkeypatch):
    folder = tmp_path / "my-loras"
    folder.mkdir()
    safetensors.torch.save_file({"x.lora_down.weight": torch.zeros(1, 1)}, folder / "ring.safetensors")
    monkeypatch.setenv("SERENA_LORA_DIR", str(folder))
    assert extra_networks.list_loras()["ring"].path == (folder / "ring.safetensors").resolve()


def test_an_unknown_lora_is_an_error_listing_the_available_ones():
    with pytest.raises(ValueError, match=r"no LoRA named 'rings'; available: .*ring"):
        extra_networks.find_lora("rings")


def test_a_lora_hash_is_the_webuis_addnet_hash_of_the_tensor_data(tmp_path):
    path = tmp_path / "net.safetensors"
    safetensors.torch.save_file({"a.lora_up.weight": torch.ones(2, 2)}, path, metadata={"ss_note": "metadata"})
    data = path.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    expected = hashlib.sha256(data[header:]).hexdigest()
    network = extra_networks.NetworkFile("net", path, "lora")
    assert network.sha256 == expected
    assert network.shorthash == expected[:12]
    # An embedding's hash is the whole file's, as the webui's.
    assert extra_networks.NetworkFile("net", path, "embedding").sha256 == hashlib.sha256(data).hexdigest()


def test_hashes_values_round_trip():
    networks = [extra_networks.list_loras()["ring"]]
    value = extra_networks.hashes_value(networks)
    assert value == f"ring: {networks[0].shorthash}"
    assert extra_networks.parse_hashes_value(value) == {"ring": networks[0].shorthash}
    assert extra_networks.hashes_value([]) is None


def test_replay_refuses_networks_that_are_missing_or_differ(tmp_path, monkeypatch):
    ring = extra_networks.list_loras()["ring"]
    extra_networks.check_recorded_hashes({"Lora hashes": f"ring: {ring.shorthash}"})  # the same file: accepted
    with pytest.raises(ValueError, match="has hash .* the image was made with 0123456789ab"):
        extra_networks.check_recorded_hashes({"Lora hashes": "ring: 0123456789ab"})
    with pytest.raises(ValueError, match="embedding 'indigo', not found here; available: violet"):
        extra_networks.check_recorded_hashes({"TI hashes": "indigo: 0123456789ab"})


def test_embeddings_are_found_as_words_of_the_prompt():
    available = extra_networks.list_embeddings()
    assert [n.name for n in extra_networks.mentioned_embeddings(["a violet circle"], available)] == ["violet"]
    assert extra_networks.mentioned_embeddings(["a violetta circle", "<lora:violet:1>"], available) == []


def test_package_data_ships_the_example_networks():
    text = Path(__file__).resolve().parents[1].joinpath("pyproject.toml").read_text()
    assert "default_model/networks/**/*" in text
