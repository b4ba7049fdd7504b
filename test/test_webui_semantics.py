"""The webui's semantics, pinned from outside the code: every expected value is a literal with its source.

Sources (read 2026-12-02):
- [webui-k] AUTOMATIC1111/stable-diffusion-webui modules/sd_samplers_kdiffusion.py, `samplers_k_diffusion` (v1.9+):
  names and aliases; "uses_ensd" / "brownian_noise" mark the samplers that draw noise at every step.
- [webui-t] same repository, modules/sd_samplers_timesteps.py (DDIM, PLMS, UniPC) and sd_samplers_lcm.py (LCM).
- [webui-seed] same repository, modules/processing.py `get_fixed_seed` (-1 random, anything else is the seed) and
  `create_random_tensors` (seed resize: noise drawn at the old size, pasted centred into the new size's noise, only
  when both old sides are > 0); modules/rng.py `slerp` (linear when the mean dot product is above 0.9995).
- [webui-info] same repository, modules/generation_parameters_copypaste.py: `quote`/`unquote` (JSON-quote values
  with a comma, newline or colon), `parse_generation_parameters` (the last line is the parameter line when it holds
  at least 3 "key: value" pairs; lines after "Negative prompt:" belong to the negative prompt).
- [diffusers] huggingface diffusers docs, api/schedulers/overview: the A1111/k-diffusion -> diffusers table
  (DPM++ 2M SDE = DPMSolverMultistepScheduler with algorithm_type="sde-dpmsolver++", Karras = use_karras_sigmas).
- [serena] Serena's own choices, recorded in docs/serena.md (ranges; the step-noise seed offset).
"""

import math

import pytest
import torch
from PIL import Image

from modules import infotext, rng, sd_samplers
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images

# Samplers ------------------------------------------------------------------------------------------------------------

# [webui-k], [webui-t]: display name -> the webui's aliases.
WEBUI_ALIASES = {
    "Euler a": ("k_euler_a", "k_euler_ancestral"),
    "Euler": ("k_euler",),
    "LMS": ("k_lms",),
    "Heun": ("k_heun",),
    "DPM2": ("k_dpm_2",),
    "DPM2 a": ("k_dpm_2_a",),
    "DPM++ 2M": ("k_dpmpp_2m",),
    "DPM++ SDE": ("k_dpmpp_sde",),
    "DPM++ 2M SDE": ("k_dpmpp_2m_sde",),
    "DDIM": ("ddim",),
    "PLMS": ("plms",),
    "UniPC": ("unipc",),
    "LCM": ("k_lcm",),
}

# [diffusers] overview table; DPM++ SDE is k-diffusion's sample_dpmpp_sde, which diffusers ports as
# DPMSolverSDEScheduler (Brownian-tree noise); PLMS is PNDM without its Runge-Kutta warm-up steps.
SCHEDULERS = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}

# [webui-k] "uses_ensd" (ancestral) and "brownian_noise" (SDE); LCM's multistep sampling re-noises between steps.
STOCHASTIC = {"Euler a", "DPM2 a", "DPM++ 2M SDE", "DPM++ SDE", "LCM"}

# An SD 1.x scheduler config, as in the default model (scaled_linear betas 0.00085..0.012).
SD_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "skip_prk_steps": True,
}


def test_the_display_names_are_the_webuis():
    assert set(sd_samplers.SAMPLER_NAMES) == set(WEBUI_ALIASES)
    assert len(sd_samplers.SAMPLER_NAMES) == len(WEBUI_ALIASES)


@pytest.mark.parametrize("name, alias", [(name, alias) for name, aliases in WEBUI_ALIASES.items() for alias in aliases])
def test_every_webui_alias_names_its_sampler(name, alias):
    assert sd_samplers.find_sampler(alias).name == name
    assert sd_samplers.find_sampler(alias.upper()).name == name
    assert sd_samplers.canonical_names(alias, "Automatic") == (name, "Automatic")


@pytest.mark.parametrize("name", SCHEDULERS)
def test_each_sampler_builds_the_diffusers_scheduler_the_webui_name_means(name):
    class_name, settings = SCHEDULERS[name]
    scheduler = sd_samplers.create_scheduler(name, "Automatic", SD_SCHEDULER_CONFIG)
    assert type(scheduler).__name__ == class_name
    for key, value in settings.items():
        assert scheduler.config[key] == value, key
    assert (scheduler.config.beta_start, scheduler.config.beta_end) == (0.00085, 0.012)
    assert scheduler.config.get("use_karras_sigmas", False) is False
    assert scheduler.config.get("use_exponential_sigmas", False) is False


# [diffusers]: "Karras" = use_karras_sigmas=True; Exponential = use_exponential_sigmas=True. Samplers that take them.
SCHEDULE_FLAGS = {"Karras": "use_karras_sigmas", "Exponential": "use_exponential_sigmas"}
WITH_SIGMA_SCHEDULES = ["Euler", "Heun", "LMS", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE", "UniPC"]


@pytest.mark.parametrize("name", WITH_SIGMA_SCHEDULES)
@pytest.mark.parametrize("schedule", ["Karras", "Exponential"])
def test_a_schedule_type_sets_exactly_its_own_flag(name, schedule):
    scheduler = sd_samplers.create_scheduler(name, schedule, SD_SCHEDULER_CONFIG)
    for other, flag in SCHEDULE_FLAGS.items():
        assert scheduler.config.get(flag, False) is (other == schedule), flag
    assert sd_samplers.supported_schedule_types(name) == ["Automatic", "Karras", "Exponential"]


def test_samplers_without_sigma_schedules_offer_only_automatic():
    for name in set(SCHEDULERS) - set(WITH_SIGMA_SCHEDULES):
        assert sd_samplers.supported_schedule_types(name) == ["Automatic"], name


def test_options_of_the_models_own_scheduler_class_are_not_passed_on():
    scheduler = sd_samplers.create_scheduler("Euler", "Automatic", SD_SCHEDULER_CONFIG)
    assert "skip_prk_steps" not in scheduler.config


def test_schedule_types_are_read_in_any_case_and_refused_by_name():
    assert sd_samplers.find_schedule_type(" karras ") == "Karras"
    assert sd_samplers.find_schedule_type("EXPONENTIAL") == "Exponential"
    with pytest.raises(ValueError, match="^scheduler: unknown schedule type 'Linear'; valid: Automatic, Karras, Expon"):
        sd_samplers.find_schedule_type("Linear")


@pytest.mark.parametrize(
    "legacy, expected",
    [("DPM++ 2M Karras", ("DPM++ 2M", "Karras")), ("Euler Exponential", ("Euler", "Exponential"))],
)
def test_legacy_names_with_a_schedule_are_split(legacy, expected):
    assert sd_samplers.canonical_names(legacy, "Automatic") == expected
    assert sd_samplers.canonical_names(f"  {legacy}  ", "Automatic") == expected


def test_a_legacy_name_contradicting_the_scheduler_is_refused_naming_both():
    with pytest.raises(
        ValueError,
        match=r"^sampler_name: 'Euler Karras' is sampler 'Euler' with schedule type 'Karras', but scheduler names ",
    ):
        sd_samplers.find_sampler("Euler Karras")
    assert sd_samplers.canonical_names("Euler Automatic", "Automatic") == ("Euler Automatic", "Automatic")


def generate(sampler_name, **fields):
    p = StableDiffusionProcessingTxt2Img(
        **(
            {
                "prompt": "a red circle on a blue background",
                "sampler_name": sampler_name,
                "steps": 4,
                "seed": 11,
                "do_not_save_samples": True,
                "do_not_save_grid": True,
            }
            | fields
        )
    )
    return process_images(p).images[0].tobytes()  # pixels only: the infotext records eta and seed resize


@pytest.mark.parametrize("name", SCHEDULERS)
def test_only_stochastic_samplers_depend_on_the_step_noise(name, monkeypatch):
    """Same seed, other step-noise generators: ancestral and SDE samplers change the image, the others do not."""
    plain = generate(name)
    original = rng.step_generators
    monkeypatch.setattr(rng, "step_generators", lambda seeds: original([seed + 1 for seed in seeds]))
    assert (generate(name) != plain) is (name in STOCHASTIC)


def test_eta_adds_step_noise_to_ddim_only():
    """[webui-t] eta_ddim: 0 is deterministic DDIM; samplers without eta ignore it."""
    assert generate("DDIM", eta=0.0) == generate("DDIM")
    assert generate("DDIM", eta=0.7) != generate("DDIM")
    assert generate("Euler", eta=0.7) == generate("Euler")


# Seeds and noise -----------------------------------------------------------------------------------------------------


def test_seed_range_is_the_webuis():
    """[webui-seed] seeds are 32-bit unsigned: 0..4294967295."""
    assert rng.MAX_SEED == 4294967295
    assert rng.image_seeds(4294967294, 3) == [4294967294, 4294967295, 0]


def test_zero_is_a_seed_and_minus_one_is_random(monkeypatch):
    """[webui-seed] get_fixed_seed: only -1 (or nothing) means random; 0 is seed 0."""
    assert rng.resolve_seed(0) == 0
    assert rng.resolve_seed(4294967295) == 4294967295
    asked = []
    monkeypatch.setattr(rng.secrets, "randbelow", lambda bound: asked.append(bound) or bound - 1)
    assert rng.resolve_seed(-1) == 4294967295  # the top of the range is reachable
    assert rng.resolve_seed(None) == 4294967295
    assert asked == [4294967296, 4294967296]


def test_step_noise_seeds_wrap_within_the_seed_range():
    """[serena] step noise is seeded with the image seed + 0x5EED, modulo 2**32 (the goldens record it)."""
    assert rng.step_generators([0])[0].initial_seed() == 0x5EED
    assert rng.step_generators([4294967295])[0].initial_seed() == 0x5EED - 1


def unit_rows(*angles):
    return torch.tensor([[math.cos(angle), math.sin(angle)] for angle in angles], dtype=torch.float32)


def test_slerp_follows_the_arc_between_distant_noises():
    low, high = unit_rows(0.0), unit_rows(math.pi / 2)
    assert torch.allclose(rng.slerp(0.5, low, high), unit_rows(math.pi / 4), atol=1e-6)
    assert torch.allclose(rng.slerp(0.25, low, high), unit_rows(math.pi / 8), atol=1e-6)


def test_slerp_is_linear_only_above_the_webuis_threshold():
    """[webui-seed] mean dot product above 0.9995: a straight line (whose midpoint is shorter than the arc's)."""
    below = math.acos(0.999)  # dot 0.999: still the arc, a unit-length midpoint
    midpoint = rng.slerp(0.5, unit_rows(0.0), unit_rows(below))
    assert torch.allclose(midpoint, unit_rows(below / 2), atol=1e-6)
    above = math.acos(0.9999)
    low, high = unit_rows(0.0), unit_rows(above)
    assert torch.equal(rng.slerp(0.5, low, high), low * 0.5 + high * 0.5)
    assert torch.equal(rng.slerp(0.25, low, high), low * 0.75 + high * 0.25)


def test_variation_noise_is_the_slerp_of_the_two_seeds_noises():
    shape = (4, 6, 6)
    expected = rng.slerp(0.3, rng.randn(3, shape), rng.randn(9, shape))
    assert torch.equal(rng.image_noise(shape, 3, subseed=9, subseed_strength=0.3), expected)


def centred_slice(canvas: int, patch: int) -> tuple[slice, slice]:
    """(canvas slice, patch slice) of the centred paste along one axis.

    [webui-seed] offset = (new - old) // 2 (floor division, so a larger old size loses one more row or column at the
    start than at the end). [serena] the copied length is min(new, old); the webui copies old + 2 * offset when the old
    size is larger, one short of the new size when they differ by an odd number (docs/serena.md, issue 22).
    """
    offset = (canvas - patch) // 2
    length = min(canvas, patch)
    return slice(max(offset, 0), max(offset, 0) + length), slice(max(-offset, 0), max(-offset, 0) + length)


@pytest.mark.parametrize(
    "target, old",
    [((6, 10), (8, 4)), ((7, 9), (4, 4)), ((5, 12), (9, 5)), ((8, 8), (3, 11)), ((4, 12), (6, 8)), ((12, 4), (8, 6))],
    # the last two: one side of the new size is shorter than the other side of the old one, so a width computed
    # from a height (or the reverse) is caught
    ids=["taller-narrower", "odd-margins", "crop-rows-pad-columns", "crop-columns", "wide-new", "tall-new"],
)
def test_non_square_seed_resize_pastes_the_old_noise_centred_and_keeps_the_rest(target, old):
    """[webui-seed] the old size's noise in the middle; everywhere else the new size's own noise, value for value."""
    shape = (4, *target)
    resized = rng.image_noise(shape, 21, seed_resize_from=old)
    old_noise, own_noise = rng.randn(21, (4, *old)), rng.randn(21, shape)
    (rows, old_rows), (columns, old_columns) = centred_slice(target[0], old[0]), centred_slice(target[1], old[1])
    assert torch.equal(resized[:, rows, columns], old_noise[:, old_rows, old_columns])
    outside = torch.ones(target, dtype=torch.bool)
    outside[rows, columns] = False
    assert outside.any() == (old[0] < target[0] or old[1] < target[1])
    assert torch.equal(resized[:, outside], own_noise[:, outside])


def test_seed_resize_with_a_variation_blends_at_the_old_size():
    small = rng.slerp(0.5, rng.randn(4, (4, 4, 6)), rng.randn(5, (4, 4, 6)))
    resized = rng.image_noise((4, 8, 8), 4, subseed=5, subseed_strength=0.5, seed_resize_from=(4, 6))
    assert torch.equal(resized[:, 2:6, 1:7], small)


def test_seed_resize_is_off_unless_both_sides_are_set():
    """[webui-seed] 0 (and -1) mean off; one side alone does nothing either."""
    plain = generate("Euler", width=48, height=32)
    assert generate("Euler", width=48, height=32, seed_resize_from_w=0, seed_resize_from_h=0) == plain
    assert generate("Euler", width=48, height=32, seed_resize_from_w=32, seed_resize_from_h=0) == plain
    assert generate("Euler", width=48, height=32, seed_resize_from_w=32, seed_resize_from_h=64) != plain


# Infotext ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, written",
    [
        ("plain words", "plain words"),
        ("a, b", '"a, b"'),
        ("two\nlines", '"two\\nlines"'),
        ("key: value", '"key: value"'),
        ('say "hi"', '"say \\"hi\\""'),  # [serena] quotes too, so that the value reads back unchanged
        ("grüße, 猫", '"grüße, 猫"'),  # [webui-info] ensure_ascii=False
        ("grüße", "grüße"),
    ],
)
def test_values_are_quoted_when_they_hold_a_comma_newline_colon_or_quote(value, written):
    assert infotext.quote(value) == written
    text = infotext.create_infotext("p", "", {"Steps": 2, "Sampler": "Euler", "Note": value, "Seed": 3})
    assert text.endswith(f"Note: {written}, Seed: 3")
    parsed = infotext.parse_infotext(text)
    assert (parsed["Note"], parsed["Seed"]) == (value, "3")


@pytest.mark.parametrize(
    "text, value",
    [
        ('""', ""),
        ('"a"', "a"),
        ('"', '"'),
        ('"unterminated', '"unterminated'),
        ('"bad \\q escape"', '"bad \\q escape"'),
        (' "padded"', ' "padded"'),
        ('"padded" ', '"padded" '),
        ("", ""),
    ],
)
def test_unquote_reads_json_strings_and_leaves_anything_else_as_it_is(text, value):
    assert infotext.unquote(text) == value


@pytest.mark.parametrize("value, text", [(7.0, "7"), (7.5, "7.5"), (20, "20"), (0.05, "0.05"), (True, "True")])
def test_numbers_are_written_like_the_webui(value, text):
    assert infotext.format_number(value) == text


def test_multi_line_negative_prompts_read_back_whole():
    text = infotext.create_infotext("a\nb", "blurry\nlow res, jpeg", {"Steps": 2, "Sampler": "Euler", "Seed": 1})
    assert text == "a\nb\nNegative prompt: blurry\nlow res, jpeg\nSteps: 2, Sampler: Euler, Seed: 1"
    parsed = infotext.parse_infotext(text)
    assert (parsed["Prompt"], parsed["Negative prompt"]) == ("a\nb", "blurry\nlow res, jpeg")


def test_the_last_line_is_parameters_only_with_three_pairs():
    """[webui-info] fewer than 3 "key: value" pairs on the last line: it is part of the prompt."""
    two = infotext.parse_infotext("a cat\nstyle: oil, mood: calm")
    assert two == {"Prompt": "a cat\nstyle: oil, mood: calm", "Negative prompt": ""}
    three = infotext.parse_infotext("a cat\nSteps: 2, Sampler: Euler, Seed: 1")
    assert (three["Prompt"], three["Steps"], three["Sampler"], three["Seed"]) == ("a cat", "2", "Euler", "1")


def test_an_empty_prompt_round_trips():
    """[webui-info] the parameter line may be the only line (an image made with an empty prompt)."""
    text = infotext.create_infotext("", "", {"Steps": 2, "Sampler": "Euler", "Seed": 1})
    parsed = infotext.parse_infotext(text)
    assert (parsed["Prompt"], parsed["Negative prompt"], parsed["Steps"]) == ("", "", "2")


def test_size_and_seed_resize_from_split_into_sides():
    parsed = infotext.parse_infotext("p\nSteps: 2, Size: 48x32, Seed resize from: 64x40, Other: 3x4")
    assert (parsed["Size-1"], parsed["Size-2"]) == ("48", "32")
    assert (parsed["Seed resize from-1"], parsed["Seed resize from-2"]) == ("64", "40")
    assert "Other-1" not in parsed


# Ranges: the largest allowed value is accepted, one past it refused ---------------------------------------------------

# [serena] the ranges (docs/serena.md); seeds [webui-seed]; sizes multiples of 8 (the VAE's factor) up to 4096.
INTEGER_RANGES = {
    "steps": (1, 1000),
    "batch_size": (1, 64),
    "n_iter": (1, 1000),
    "clip_skip": (1, 12),
    "seed": (-1, 4294967295),
    "subseed": (-1, 4294967295),
}
NUMBER_RANGES = {"cfg_scale": (0.0, 50.0), "subseed_strength": (0.0, 1.0), "eta": (0.0, 1.0)}
IMG2IMG_NUMBER_RANGES = {"denoising_strength": (0.0, 1.0), "initial_noise_multiplier": (0.0, 1.5)}


def check_txt2img(**fields):
    StableDiffusionProcessingTxt2Img(**({"prompt": "x"} | fields)).validate()


def check_img2img(**fields):
    StableDiffusionProcessingImg2Img(**({"prompt": "x", "init_images": [Image.new("RGB", (8, 8))]} | fields)).validate()


@pytest.mark.parametrize("name", INTEGER_RANGES)
def test_integer_fields_take_both_ends_of_their_range_and_nothing_past_them(name):
    low, high = INTEGER_RANGES[name]
    check_txt2img(**{name: low})
    check_txt2img(**{name: high})
    for past in (low - 1, high + 1):
        with pytest.raises(ValueError, match=f"^{name}: {past} is out of range; allowed "):
            check_txt2img(**{name: past})


@pytest.mark.parametrize("name", NUMBER_RANGES)
def test_number_fields_take_both_ends_of_their_range_and_nothing_past_them(name):
    low, high = NUMBER_RANGES[name]
    check_txt2img(**{name: low})
    check_txt2img(**{name: high})
    check_txt2img(**{name: int(high)})  # an integer is a number
    for past in (low - 0.01, high + 0.01):
        with pytest.raises(ValueError, match=f"^{name}: {past} is out of range; allowed {low}..{high}$"):
            check_txt2img(**{name: past})


@pytest.mark.parametrize("name", IMG2IMG_NUMBER_RANGES)
def test_img2img_number_fields_take_both_ends_of_their_range(name):
    low, high = IMG2IMG_NUMBER_RANGES[name]
    check_img2img(**{name: low})
    check_img2img(**{name: high})
    with pytest.raises(ValueError, match=f"^{name}: {high + 0.01} is out of range; allowed {low}..{high}$"):
        check_img2img(**{name: high + 0.01})


@pytest.mark.parametrize("name", ["width", "height", "seed_resize_from_w", "seed_resize_from_h"])
def test_sizes_are_multiples_of_8_from_8_to_4096(name):
    for good in (8, 16, 4096):
        check_txt2img(**{name: good})
    for bad in (4, 12, 4104, 100000):
        with pytest.raises(ValueError, match=f"^{name}: {bad} is not allowed; allowed multiples of 8 from 8 to 4096$"):
            check_txt2img(**{name: bad})


def test_seed_resize_takes_0_and_minus_1_for_off():
    check_txt2img(seed_resize_from_w=0, seed_resize_from_h=-1)
    with pytest.raises(ValueError, match=r"^seed_resize_from_w: -2 is not allowed; allowed -1 or 0 \(off\) or a size$"):
        check_txt2img(seed_resize_from_w=-2)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"cfg_scale": True}, "cfg_scale: expected a number, got bool True"),
        ({"seed": False}, "seed: expected an integer, got bool False"),
        ({"width": True}, "width: expected an integer, got bool True"),
        ({"resize_mode": True}, "resize_mode: expected an integer, got bool True"),
        ({"seed_resize_from_w": 8.0}, "seed_resize_from_w: expected an integer, got float 8.0"),
        ({"styles": ["ok", 3]}, "styles[1]: expected a name, got int 3"),
        ({"seed": [1, "2"], "batch_size": 2}, "seed[1]: expected an integer, got str '2'"),
        ({"init_images": Image.new("RGB", (8, 8))}, "init_images: expected a list of PIL images, got Image "),
        ({"override_settings": []}, "override_settings: expected a dict of webui options, got list []"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(fields, message):
    with pytest.raises(TypeError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        check_img2img(**fields)


def test_per_image_lists_need_one_value_per_image_of_every_batch():
    check_txt2img(seed=[1, 2, 3, 4], batch_size=2, n_iter=2)
    check_txt2img(cfg_scale=[1.0, 2.0], prompt=["a", "b"], batch_size=2)
    with pytest.raises(ValueError, match=r"^seed: a list must have one value per image \(4\), got 3$"):
        check_txt2img(seed=[1, 2, 3], batch_size=2, n_iter=2)


def test_img2img_takes_one_init_image_or_one_per_batch_position():
    image = Image.new("RGB", (8, 8))
    check_img2img(init_images=[image], batch_size=3)
    check_img2img(init_images=[image] * 3, batch_size=3)
    check_img2img(init_images=[Image.new("RGB", (4096, 1))])
    with pytest.raises(ValueError, match=r"^init_images\[0\]: 1x4097 is out of range; allowed 1..4096 per side$"):
        check_img2img(init_images=[Image.new("RGB", (1, 4097))])
    with pytest.raises(ValueError, match=r"^init_images: give 1 image or batch_size \(3\) images, got 2$"):
        check_img2img(init_images=[image] * 2, batch_size=3)


def test_unknown_styles_name_the_first_and_list_the_available_ones(isolated_workdir):
    (isolated_workdir / "styles.csv").write_text("name,prompt,negative_prompt\nink,{prompt} in ink,\noil,oil,\n")
    check_txt2img(styles=["oil", "ink"])
    with pytest.raises(ValueError, match=r"^styles: unknown style 'nope'; available: ink, oil$"):
        check_txt2img(styles=["ink", "nope", "nada"])


def test_plms_skips_the_runge_kutta_steps_whatever_the_models_scheduler_says():
    """PLMS is PNDM with skip_prk_steps, also for a model saved with another scheduler class."""
    config = SD_SCHEDULER_CONFIG | {"_class_name": "EulerDiscreteScheduler", "skip_prk_steps": False}
    assert sd_samplers.create_scheduler("PLMS", "Automatic", config).config.skip_prk_steps is True


@pytest.mark.parametrize("name, algorithm", [("DPM++ 2M", "dpmsolver++"), ("DPM++ 2M SDE", "sde-dpmsolver++")])
def test_dpmpp_2m_is_second_order_dpmsolver_plus_plus_whatever_the_models_scheduler_says(name, algorithm):
    """[webui-k] DPM++ 2M is the second-order multistep DPM-Solver++ (its SDE form the same with noise), also for a
    model saved with another DPM-Solver variant (diffusers' defaults would hide a missing override)."""
    config = SD_SCHEDULER_CONFIG | {
        "_class_name": "DPMSolverMultistepScheduler",
        "algorithm_type": "dpmsolver",
        "solver_order": 3,
    }
    scheduler = sd_samplers.create_scheduler(name, "Automatic", config)
    assert (scheduler.config.algorithm_type, scheduler.config.solver_order) == (algorithm, 2)


def test_each_sampler_lists_exactly_the_webuis_aliases():
    """[webui-k] `/sdapi/v1/samplers` shows each sampler's aliases; a lower-cased name is no alias of its own (the
    lookup ignores case anyway), so the list is the webui's and nothing more."""
    assert {spec.name: spec.aliases for spec in sd_samplers.SAMPLERS} == WEBUI_ALIASES
