"""LoRAs in the engine: applied per batch through diffusers' PEFT backend, removed without a trace, recorded by hash."""

import io
import re

import numpy as np
import pytest
import safetensors.torch
import torch
from helpers import base_weights

from modules import extra_networks, lora, replay, sd_models
from modules.processing import StableDiffusionProcessingTxt2Img, process_images

PROMPT = "a red ring on a blue background"


def generate(prompt=PROMPT, **fields):
    fields = {"seed": 3, "steps": 8, "do_not_save_samples": True, "do_not_save_grid": True} | fields
    return process_images(StableDiffusionProcessingTxt2Img(prompt=prompt, **fields))


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def lora_folder(tmp_path, monkeypatch):
    folder = tmp_path / "Lora"
    folder.mkdir()
    monkeypatch.setenv("SERENA_LORA_DIR", str(folder))
    return folder


def scaled_copy(folder, name: str, factor: float):
    """Another LoRA file: the example's up-projections scaled (a different network, a different hash)."""
    tensors = safetensors.torch.load_file(extra_networks.list_loras()["ring"].path)
    tensors = {key: value * factor if "lora_up" in key else value for key, value in tensors.items()}
    safetensors.torch.save_file(tensors, folder / f"{name}.safetensors")


def test_the_lora_changes_the_image_and_weight_0_gives_the_base_models_bytes():
    base = png_bytes(generate().images[0])
    assert png_bytes(generate(PROMPT + " <lora:ring:1>").images[0]) != base
    assert png_bytes(generate(PROMPT + " <lora:ring:0>").images[0]) == base


def test_twenty_alternating_jobs_leave_the_base_model_byte_identical():
    base = png_bytes(generate().images[0])
    unet = sd_models.load_model().pipeline.unet
    weights = base_weights(unet)
    for job in range(20):
        prompt = PROMPT + (f" <lora:ring:{0.5 + job / 20:g}>" if job % 2 == 0 else "")
        generate(prompt, steps=2)
    assert png_bytes(generate().images[0]) == base
    after = base_weights(unet)
    assert after.keys() == weights.keys()
    assert all(torch.equal(after[name], weights[name]) for name in weights)
    lora.unload_all(sd_models.load_model())  # and with the LoRA layers gone, the UNet's state is the base one
    assert all(torch.equal(value, weights[name]) for name, value in unet.state_dict().items())
    assert png_bytes(generate().images[0]) == base


def test_negative_weights_and_several_loras_apply_together(lora_folder):
    scaled_copy(lora_folder, "ring_half", 0.5)
    one = np.asarray(generate(PROMPT + " <lora:ring:1>").images[0], dtype=float)
    both = np.asarray(generate(PROMPT + " <lora:ring:0.5> <lora:ring_half:1>").images[0], dtype=float)
    opposite = np.asarray(generate(PROMPT + " <lora:ring:-1>").images[0], dtype=float)
    base = np.asarray(generate().images[0], dtype=float)
    # ring at 0.5 plus a copy at half strength is ring at 1 up to float rounding (the same low-rank update).
    assert np.abs(both - one).mean() < 0.1 * np.abs(one - base).mean()
    assert np.abs(opposite - base).mean() > 0


def test_an_unknown_lora_is_refused_before_any_model_work_listing_the_available_ones():
    with pytest.raises(ValueError, match=r"prompt: no LoRA named 'star'; available: .*ring"):
        generate(PROMPT + " <lora:star:1>")


def test_the_infotext_records_the_webuis_lora_hash_and_replay_remakes_the_image():
    result = generate(PROMPT + " <lora:ring:0.7>")
    ring = extra_networks.list_loras()["ring"]
    assert f'Lora hashes: "ring: {ring.shorthash}"' in result.info
    assert re.fullmatch(r"[0-9a-f]{12}", ring.shorthash)
    assert result.info.startswith(PROMPT + " <lora:ring:0.7>")  # the tag stays in the recorded prompt
    again = process_images(replay.processing_from_infotext(result.info, strict=True))
    assert png_bytes(again.images[0]) == png_bytes(result.images[0])


def test_replay_refuses_a_lora_file_that_is_not_the_one_recorded(lora_folder):
    info = generate(PROMPT + " <lora:ring:1>").info
    scaled_copy(lora_folder, "ring", 2.0)  # the user's folder wins: "ring" is now another file
    with pytest.raises(ValueError, match="Lora hashes: LoRA 'ring' here .* has hash"):
        replay.processing_from_infotext(info)


# Keys as PEFT returns them, and as diffusers' training scripts save them (`convert_state_dict_to_diffusers` renames
# only the attention projections, a mix diffusers reads in the layout of the file's first key).
@pytest.mark.parametrize("as_training_scripts_save", [False, True], ids=["peft_keys", "training_script_keys"])
def test_the_diffusers_peft_layout_gives_the_kohya_layouts_image(lora_folder, as_training_scripts_save):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    kohya = generate(PROMPT + " <lora:ring:1>").images[0]
    model = sd_models.load_model()
    ring = extra_networks.list_loras()["ring"]
    layers = get_peft_model_state_dict(model.pipeline.unet, adapter_name=lora.adapter_name(ring))
    if as_training_scripts_save:
        layers = convert_state_dict_to_diffusers(layers)
    name = "ring_diffusers" if as_training_scripts_save else "ring_peft"  # another adapter name in the cached model
    StableDiffusionPipeline.save_lora_weights(lora_folder, unet_lora_layers=layers, weight_name=f"{name}.safetensors")
    keys = safetensors.torch.load_file(lora_folder / f"{name}.safetensors").keys()
    assert all(key.startswith("unet.") for key in keys)
    assert any(".lora.down." in key for key in keys) == as_training_scripts_save
    peft_image = np.asarray(generate(PROMPT + f" <lora:{name}:1>").images[0], dtype=float)
    kohya, base = np.asarray(kohya, dtype=float), np.asarray(generate().images[0], dtype=float)
    # The same update up to float rounding (the kohya file's alpha scale is applied as a separate factor).
    print(f"kohya vs PEFT layout: largest pixel difference {np.abs(peft_image - kohya).max():.0f}")
    assert np.abs(peft_image - kohya).mean() < 0.02 * np.abs(kohya - base).mean()


def test_a_batch_with_different_loras_is_split_and_each_image_is_as_made_alone():
    mixed = generate([PROMPT + " <lora:ring:1>", PROMPT + " <lora:ring:1>", PROMPT], seed=[4, 5, 6], batch_size=3)
    alone = generate(PROMPT, seed=6)
    assert png_bytes(mixed.images[2]) == png_bytes(alone.images[0])
    assert "Lora hashes" in mixed.infotexts[0] and "Lora hashes" not in mixed.infotexts[2]


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def test_memory_stays_bounded_over_50_jobs_switching_among_3_loras(lora_folder):
    for name, factor in (("ring_a", 0.5), ("ring_b", 1.5)):
        scaled_copy(lora_folder, name, factor)
    names = ["ring", "ring_a", "ring_b"]
    rss = []
    for job in range(50):
        generate(f"{PROMPT} <lora:{names[job % 3]}:1>", steps=2)
        rss.append(resident_bytes())
    model = sd_models.load_model()
    assert len(lora.loaded_adapters(model)) >= 3
    growth = rss[-1] - rss[9]  # after the three are loaded and warm
    print(f"RSS after job 10: {rss[9] / 2**20:.1f} MiB, after job 50: {rss[-1] / 2**20:.1f} MiB")
    assert growth < 20 * 2**20, [round(value / 2**20, 1) for value in rss]


def test_loaded_adapters_are_capped(lora_folder, monkeypatch):
    monkeypatch.setattr(lora, "MAX_LOADED_ADAPTERS", 3)  # the rule, not the number: each UNet load takes seconds
    lora.unload_all(sd_models.load_model())
    names = []
    for index in range(lora.MAX_LOADED_ADAPTERS + 2):
        scaled_copy(lora_folder, f"copy{index}", 1 + index / 10)
        names.append(lora.adapter_name(extra_networks.list_loras()[f"copy{index}"]))
        generate(f"{PROMPT} <lora:copy{index}:1>", steps=1)
    assert list(lora.loaded_adapters(sd_models.load_model())) == names[2:]  # the two least recently used went
