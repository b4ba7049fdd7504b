"""Prompts become text-encoder embeddings as in the webui: 75-token chunks of 77-token sequences, BREAK, negative and
positive of equal length, per-token weights by the emphasis mode; plain prompts exactly as before."""

import pytest
import torch

from modules import diffusion, sd_models
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from modules.prompt_encoding import CHUNK_LENGTH, Chunk, chunk_ids, chunk_tokens, encode_text, prompt_chunks

SEQUENCE = CHUNK_LENGTH + 2
COMMA = 9  # any id: chunk_tokens is given the comma's id


@pytest.fixture(scope="module")
def model():
    return sd_models.load_model()


def encode(model, text, clip_skip=1, emphasis="Original"):
    return encode_text(model, text, clip_skip, emphasis)


def pixels(**fields) -> bytes:
    job = StableDiffusionProcessingTxt2Img(seed=3, steps=8, do_not_save_samples=True, do_not_save_grid=True, **fields)
    return process_images(job).images[0].tobytes()


def test_a_plain_prompt_is_the_token_ids_diffusers_gives(model):
    text = "a red circle on a blue background"
    (chunk,) = prompt_chunks(model, text, "Original")
    tokenizer = model.pipeline.tokenizer
    expected = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
    assert chunk_ids(model.pipeline.tokenizer, chunk)[0] == expected.input_ids


def test_a_100_token_prompt_is_two_77_token_sequences(model):
    text = " ".join(["red"] * 100)
    chunks = prompt_chunks(model, text, "Original")
    assert [len(chunk.tokens) for chunk in chunks] == [75, 25]
    assert encode(model, text).shape[1] == 2 * SEQUENCE


def test_a_full_chunk_ends_at_its_last_comma_within_the_lookback():
    words = [1] * 70 + [COMMA] + [2] * 10  # the comma is 5 tokens before the chunk's end
    first, second = chunk_tokens([[(words, 1.0)]], COMMA)
    assert first.tokens == [1] * 70 + [COMMA]
    assert second.tokens == [2] * 10


def test_a_comma_further_back_than_the_lookback_does_not_move_words():
    words = [1] * 40 + [COMMA] + [2] * 40  # 34 tokens after the comma: beyond the 20-token lookback
    first, second = chunk_tokens([[(words, 1.0)]], COMMA)
    assert first.tokens == words[:75] and second.tokens == words[75:]


def test_moved_words_keep_their_weights():
    first, second = chunk_tokens([[([1] * 72 + [COMMA], 1.0), ([2] * 5, 1.5)]], COMMA)
    assert first == Chunk([1] * 72 + [COMMA], [1.0] * 73)
    assert second == Chunk([2] * 5, [1.5] * 5)


def test_break_starts_a_new_chunk_encoded_on_its_own(model):
    embedding = encode(model, "a red circle BREAK a blue background")
    assert embedding.shape[1] == 2 * SEQUENCE
    assert torch.equal(embedding[:, :SEQUENCE], encode(model, "a red circle"))
    assert torch.equal(embedding[:, SEQUENCE:], encode(model, "a blue background"))


def test_the_negative_prompt_is_padded_with_empty_chunks_to_the_prompts_length(model):
    long_prompt = ", ".join(["a red circle"] * 30)
    conditioning = diffusion.encode_prompts(model, [long_prompt], ["blurry"], 1, "Original", 20)
    negative, positive = conditioning.at(0)
    assert negative.shape == positive.shape == encode(model, long_prompt)[0].shape
    chunks = positive.shape[0] // SEQUENCE
    assert chunks >= 2
    assert torch.equal(negative[:SEQUENCE], encode(model, "blurry")[0])
    assert torch.equal(negative[SEQUENCE:], encode(model, "")[0].repeat(chunks - 1, 1))


def test_weight_1_is_the_plain_word_byte_for_byte(model):
    assert torch.equal(encode(model, "a (red:1.0) circle"), encode(model, "a red circle"))
    assert pixels(prompt="a (red:1.0) circle on a blue background") == pixels(
        prompt="a red circle on a blue background"
    )


def test_emphasis_modes_weight_the_encoder_output_as_the_webui_does(model):
    plain = encode(model, "a red circle")
    red = 2  # start token, "a", "red"
    no_norm = encode(model, "a (red:1.5) circle", emphasis="No norm")
    assert torch.equal(no_norm[0, red], plain[0, red] * 1.5)
    assert torch.equal(no_norm[0, red + 1 :], plain[0, red + 1 :])
    original = encode(model, "a (red:1.5) circle")
    assert original.mean().item() == pytest.approx(plain.mean().item(), rel=1e-5)  # the mean is restored
    assert not torch.equal(original, no_norm) and not torch.equal(original, plain)
    assert torch.equal(encode(model, "a (red:1.5) circle", emphasis="Ignore"), plain)
    literal = encode(model, "a (red:1.5) circle", emphasis="None")  # brackets, colon and digits are tokens
    assert not torch.equal(literal, plain)
    assert torch.equal(literal, encode(model, "a \\(red:1.5\\) circle", emphasis="Original"))


def test_clip_skip_works_through_chunks_and_weights(model):
    skipped = encode(model, "a (red:1.0) circle BREAK blue", clip_skip=2)
    assert torch.equal(skipped[:, :SEQUENCE], encode(model, "a red circle", clip_skip=2))
    assert not torch.equal(skipped, encode(model, "a red circle BREAK blue"))


def test_editing_changes_the_embedding_at_its_step(model):
    conditioning = diffusion.encode_prompts(
        model, ["a [red:green:0.5] circle", "a blue circle"], ["", ""], 1, "Original", 20
    )
    red, green, blue, empty = (encode(model, text) for text in ("a red circle", "a green circle", "a blue circle", ""))
    assert torch.equal(conditioning.at(10), torch.cat([empty, empty, red, blue]))
    assert torch.equal(conditioning.at(11), torch.cat([empty, empty, green, blue]))


def test_encodings_are_cached_per_text_clip_skip_and_emphasis(model):
    model.prompt_cache.clear()
    diffusion.encode_prompts(model, ["a [(red:1.2):green:3] circle"], [""], 2, "No norm", 10)
    assert set(model.prompt_cache) == {
        ("a (red:1.2) circle", 2, "No norm"),
        ("a green circle", 2, "No norm"),
        ("", 2, "No norm"),
    }


def test_the_emphasis_mode_is_in_the_infotext_only_when_not_the_default():
    job = dict(prompt="a (red:1.3) circle", seed=1, steps=2, do_not_save_samples=True)
    assert "Emphasis" not in process_images(StableDiffusionProcessingTxt2Img(**job)).info
    info = process_images(StableDiffusionProcessingTxt2Img(emphasis="No norm", **job)).info
    assert "Emphasis: No norm" in info


def test_an_unknown_emphasis_mode_is_refused_naming_the_allowed_ones():
    allowed = "Original, No norm, Ignore, None"
    with pytest.raises(ValueError, match=rf"^emphasis: 'Strong' is not allowed; allowed {allowed}$"):
        StableDiffusionProcessingTxt2Img(emphasis="Strong").validate()
