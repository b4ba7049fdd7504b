"""Text-encoder LoRA layers (kohya `lora_te_`, diffusers `text_encoder.`): injected with peft's own API, applied per
batch like the UNet's, removed without a trace, and kept out of the prompt cache's plain entries."""

import io

import pytest
import safetensors.torch
import torch
from helpers import base_weights

from modules import extra_networks, lora, prompt_encoding, sd_models
from modules.processing import StableDiffusionProcessingTxt2Img, process_images

PROMPT = "a red ring on a blue background"
RANK, ALPHA = 4, 2.0  # scale alpha / rank = 0.5, a power of two: the two layouts compute the same bits
MODULES = ("self_attn_q_proj", "self_attn_v_proj", "mlp_fc1")


def generate(prompt=PROMPT, **fields):
    fields = {"seed": 3, "steps": 4, "do_not_save_samples": True, "do_not_save_grid": True} | fields
    return process_images(StableDiffusionProcessingTxt2Img(prompt=prompt, **fields))


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def kohya_to_diffusers(module: str) -> str:
    return {"self_attn_q_proj": "self_attn.q_proj", "self_attn_v_proj": "self_attn.v_proj", "mlp_fc1": "mlp.fc1"}[
        module
    ]


def te_layers(modules=MODULES, layers=(0, 1), seed=0) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
    """Seeded random (down, up) pairs for the default model's text encoder (width 64), large enough to change images."""
    encoder = sd_models.load_model().pipeline.text_encoder
    generator = torch.Generator().manual_seed(seed)
    pairs = {}
    for layer in layers:
        for module in modules:
            linear = encoder.get_submodule(f"encoder.layers.{layer}.{kohya_to_diffusers(module)}")
            linear = getattr(linear, "base_layer", linear)
            down = torch.randn(RANK, linear.in_features, generator=generator)
            up = torch.randn(linear.out_features, RANK, generator=generator) * 0.5
            pairs[layer, module] = (down, up)
    return pairs


def write_kohya(path, pairs, with_unet=False):
    tensors = {}
    for (layer, module), (down, up) in pairs.items():
        key = f"lora_te_text_model_encoder_layers_{layer}_{module}"
        tensors[f"{key}.lora_down.weight"] = down
        tensors[f"{key}.lora_up.weight"] = up
        tensors[f"{key}.alpha"] = torch.tensor(ALPHA)
    if with_unet:  # the example LoRA's UNet layers (kohya layout) besides
        tensors |= safetensors.torch.load_file(extra_networks.list_loras()["ring"].path)
    safetensors.torch.save_file(tensors, path)


def write_diffusers(path, pairs):
    """The same layers in the diffusers/PEFT layout: no alpha (scale 1), so the up weights carry alpha / rank."""
    tensors = {}
    for (layer, module), (down, up) in pairs.items():
        key = f"text_encoder.text_model.encoder.layers.{layer}.{kohya_to_diffusers(module)}"
        tensors[f"{key}.lora_A.weight"] = down
        tensors[f"{key}.lora_B.weight"] = up * (ALPHA / RANK)
    safetensors.torch.save_file(tensors, path)


@pytest.fixture
def lora_folder(tmp_path, monkeypatch):
    folder = tmp_path / "Lora"
    folder.mkdir()
    monkeypatch.setenv("SERENA_LORA_DIR", str(folder))
    pairs = te_layers()
    write_kohya(folder / "te_kohya.safetensors", pairs)
    write_diffusers(folder / "te_diffusers.safetensors", pairs)
    write_kohya(folder / "te_ring.safetensors", pairs, with_unet=True)
    return folder


def test_both_layouts_give_the_same_bytes_weight_0_the_bases_and_weight_1_changes_the_image(lora_folder):
    base = png_bytes(generate().images[0])
    kohya = png_bytes(generate(PROMPT + " <lora:te_kohya:1>").images[0])
    assert kohya != base
    assert png_bytes(generate(PROMPT + " <lora:te_diffusers:1>").images[0]) == kohya
    assert png_bytes(generate(PROMPT + " <lora:te_kohya:0>").images[0]) == base
    assert png_bytes(generate().images[0]) == base  # the job after: no LoRA, the base bytes
    with_unet = png_bytes(generate(PROMPT + " <lora:te_ring:1>").images[0])
    assert with_unet not in (base, kohya)
    assert png_bytes(generate(PROMPT + " <lora:te_ring:0>").images[0]) == base


def test_alternating_jobs_leave_the_base_text_encoder_byte_identical_and_unload_removes_the_layers(lora_folder):
    model = sd_models.load_model()
    encoder = model.pipeline.text_encoder
    lora.unload_all(model)
    original = {name: value.clone() for name, value in encoder.state_dict().items()}
    base = png_bytes(generate(steps=2).images[0])
    for job in range(10):
        prompt = PROMPT + (f" <lora:te_ring:{0.5 + job / 10:g}> <lora:te_kohya:-0.5>" if job % 2 == 0 else "")
        generate(prompt, steps=2)
    assert any("lora_A" in name for name in encoder.state_dict())
    after = base_weights(encoder)
    assert after.keys() == original.keys()
    assert all(torch.equal(after[name], original[name]) for name in original)
    assert png_bytes(generate(steps=2).images[0]) == base
    lora.unload_all(model)
    state = encoder.state_dict()
    assert state.keys() == original.keys()
    assert all(torch.equal(state[name], original[name]) for name in original)
    assert not hasattr(encoder, "peft_config")


def test_one_layers_output_is_base_plus_weight_times_alpha_over_rank_times_up_down(lora_folder):
    """The math pinned without the library: q_proj(x) = W x + b + weight * alpha / rank * up(down(x))."""
    pairs = te_layers(modules=("self_attn_q_proj",), layers=(0,), seed=7)
    write_kohya(lora_folder / "q_only.safetensors", pairs)
    down, up = pairs[0, "self_attn_q_proj"]
    model = sd_models.load_model()
    weight = 0.7
    available = extra_networks.list_loras()
    lora.ensure_loaded(model, available["q_only"])
    q_proj = model.pipeline.text_encoder.get_submodule("encoder.layers.0.self_attn.q_proj")
    seen = {}
    hook = q_proj.register_forward_hook(lambda module, args, output: seen.update(x=args[0], y=output))
    try:
        with torch.no_grad(), lora.applied(model, [extra_networks.LoraTag("q_only", weight)], available):
            model.prompt_cache.clear()
            lora_encoding = prompt_encoding.encode_text(model, PROMPT, clip_skip=1)
    finally:
        hook.remove()
    x, y = seen["x"], seen["y"]
    base = q_proj.base_layer
    reference = x @ base.weight.T + base.bias + weight * (ALPHA / RANK) * (x @ down.T @ up.T)
    assert not torch.allclose(y, x @ base.weight.T + base.bias, atol=1e-3)  # the LoRA changed this layer
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
    # And the whole encoder: the LoRA'd encoding equals the base encoder with W + weight * alpha / rank * up @ down.
    original = base.weight.detach().clone()
    try:
        with torch.no_grad():
            base.weight += weight * (ALPHA / RANK) * (up @ down)
            model.prompt_cache.clear()
            by_hand = prompt_encoding.encode_text(model, PROMPT, clip_skip=1)
    finally:
        with torch.no_grad():
            base.weight.copy_(original)
        model.prompt_cache.clear()
    torch.testing.assert_close(lora_encoding, by_hand, rtol=1e-5, atol=1e-5)


def test_clip_skip_2_takes_the_penultimate_layers_state_with_the_lora_layers(lora_folder):
    """With two encoder layers and clip skip 2, the LoRA of layer 1 changes nothing, that of layer 0 does."""
    write_kohya(lora_folder / "layer1.safetensors", te_layers(layers=(1,), seed=3))
    write_kohya(lora_folder / "layer0.safetensors", te_layers(layers=(0,), seed=3))
    model = sd_models.load_model()
    assert model.pipeline.text_encoder.config.num_hidden_layers == 2
    available = extra_networks.list_loras()

    def encode(name, clip_skip):
        with torch.no_grad(), lora.applied(model, [extra_networks.LoraTag(name, 1.0)], available):
            return prompt_encoding.encode_text(model, PROMPT, clip_skip)

    with torch.no_grad():
        base = {skip: prompt_encoding.encode_text(model, PROMPT, skip) for skip in (1, 2)}
    assert torch.equal(encode("layer1", 2), base[2])
    assert not torch.equal(encode("layer1", 1), base[1])
    assert not torch.equal(encode("layer0", 2), base[2])
    images = {skip: png_bytes(generate(PROMPT + " <lora:layer1:1>", clip_skip=skip).images[0]) for skip in (1, 2)}
    assert images[2] == png_bytes(generate(clip_skip=2).images[0])
    assert images[1] != png_bytes(generate(clip_skip=1).images[0])


def test_the_prompt_cache_keys_on_the_text_encoder_loras_in_jobs_and_split_batches(lora_folder):
    model = sd_models.load_model()
    model.prompt_cache.clear()
    available = extra_networks.list_loras()
    with torch.no_grad():
        base = prompt_encoding.encode_text(model, PROMPT, 1)
        with lora.applied(model, [extra_networks.LoraTag("te_kohya", 1.0)], available):
            with_lora = prompt_encoding.encode_text(model, PROMPT, 1)
        with lora.applied(model, [extra_networks.LoraTag("te_kohya", 0.5)], available):
            half = prompt_encoding.encode_text(model, PROMPT, 1)
        after = prompt_encoding.encode_text(model, PROMPT, 1)
    assert not torch.equal(with_lora, base) and not torch.equal(half, with_lora)
    assert torch.equal(after, base) and after is base  # the plain entry, untouched
    assert (PROMPT, 1, "Original") in model.prompt_cache
    # Consecutive jobs: LoRA, none, LoRA, none; each no-LoRA image is the base's bytes.
    alone = png_bytes(generate().images[0])
    jobs = [
        png_bytes(generate(PROMPT + tags).images[0]) for tags in (" <lora:te_kohya:1>", "", " <lora:te_kohya:1>", "")
    ]
    assert jobs[1] == jobs[3] == alone and jobs[0] == jobs[2] != alone
    # One batch split by LoRA sets, the same text in each part: each image is as made alone.
    mixed = generate(
        [PROMPT + " <lora:te_kohya:1>", PROMPT, PROMPT + " <lora:te_kohya:1>"], seed=[3, 3, 3], batch_size=3
    )
    assert png_bytes(mixed.images[1]) == alone
    assert png_bytes(mixed.images[0]) == jobs[0] == png_bytes(mixed.images[2])


def test_loaded_adapters_are_capped_and_the_text_encoder_loses_the_oldest_too(lora_folder):
    model = sd_models.load_model()
    lora.unload_all(model)
    names = []
    for index in range(lora.MAX_LOADED_ADAPTERS + 2):
        write_kohya(lora_folder / f"te{index}.safetensors", te_layers(seed=100 + index))
        names.append(lora.adapter_name(extra_networks.list_loras()[f"te{index}"]))
        generate(f"{PROMPT} <lora:te{index}:1>", steps=1)
    encoder = model.pipeline.text_encoder
    assert list(lora.loaded_adapters(model)) == names[2:]
    assert set(encoder.peft_config) == set(names[2:])
    q_proj = encoder.get_submodule("encoder.layers.0.self_attn.q_proj")
    assert set(q_proj.lora_A) == set(names[2:])
    lora.unload_all(model)


def test_a_text_encoder_layout_diffusers_cannot_read_is_refused_naming_the_file(lora_folder):
    tensors = safetensors.torch.load_file(extra_networks.list_loras()["ring"].path)
    tensors["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weird_down"] = torch.zeros(4, 64)
    safetensors.torch.save_file(tensors, lora_folder / "odd_te.safetensors")
    with pytest.raises(ValueError, match=r"LoRA 'odd_te' \(.*odd_te\.safetensors\).*text-encoder layers"):
        generate(PROMPT + " <lora:odd_te:1>")
    model = sd_models.load_model()
    assert not any("odd_te" in name for name in lora.loaded_adapters(model))
    assert png_bytes(generate(steps=2).images[0]) == png_bytes(generate(steps=2).images[0])


def test_a_model_with_loras_and_an_embedding_loaded_saves_its_base_weights_as_a_single_file(lora_folder, tmp_path):
    from modules.sd_single_file import save_single_file

    model = sd_models.load_model()
    lora.unload_all(model)
    save_single_file(model.pipeline, tmp_path / "base.safetensors")
    generate("a violet ring <lora:te_ring:1>", steps=2)  # LoRA layers and the embedding's token now stay loaded
    assert any("lora_A" in name for name in model.pipeline.unet.state_dict())
    assert len(model.pipeline.tokenizer) == model.pipeline.tokenizer.vocab_size + 1
    save_single_file(model.pipeline, tmp_path / "with_loras_loaded.safetensors")
    base = safetensors.torch.load_file(tmp_path / "base.safetensors")
    saved = safetensors.torch.load_file(tmp_path / "with_loras_loaded.safetensors")
    assert saved.keys() == base.keys()
    assert all(torch.equal(saved[key], base[key]) for key in base)
