"""Engine behaviour on the embedded default model: sizes, seeds, saving, progress, interrupt, skip, options."""

import datetime
import json
import shutil

import numpy as np
import pytest
from helpers import max_pixel_difference, png_of
from PIL import Image, ImageDraw

from modules import sd_models
from modules.default_model import DEFAULT_MODEL_DIR
from modules.infotext import parse_infotext
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext


def txt2img(**fields):
    return StableDiffusionProcessingTxt2Img(**({"prompt": "a red square on a green background", "steps": 4} | fields))


def test_unset_size_is_the_models_native_size():
    model = sd_models.load_model()
    result = process_images(txt2img(seed=1, do_not_save_samples=True))
    assert result.images[0].size == (model.native_size, model.native_size)
    assert (result.width, result.height) == (model.native_size, model.native_size)


def test_other_sizes_are_generated_at_that_size():
    result = process_images(txt2img(seed=1, width=48, height=24, do_not_save_samples=True))
    assert result.images[0].size == (48, 24)
    assert "Size: 48x24" in result.infotexts[0]


def test_samples_and_grid_are_saved_like_the_webui(isolated_workdir):
    result = process_images(txt2img(seed=20, batch_size=2, n_iter=2))
    today = datetime.date.today().isoformat()
    samples = sorted((isolated_workdir / "outputs/txt2img-images" / today).iterdir())
    assert [path.name for path in samples] == ["00000-20.png", "00001-21.png", "00002-22.png", "00003-23.png"]
    assert [path.name for path in (isolated_workdir / "outputs/txt2img-grids" / today).iterdir()] == ["00000-grid.png"]
    assert result.paths[:4] == [str(path.relative_to(isolated_workdir)) for path in samples]
    assert result.index_of_first_image == 1 and len(result.images) == 5
    assert result.images[0].size == (2 * 32, 2 * 32)
    for path, image in zip(samples, result.images[1:]):
        assert path.read_bytes() == png_of(image)
        assert "Seed: " + path.stem.split("-")[1] in Image.open(path).info["parameters"]


def test_seeds_prompts_and_info_json():
    result = process_images(
        txt2img(
            seed=5, batch_size=2, n_iter=2, prompt=["a", "b", "c", "d"], do_not_save_samples=True, do_not_save_grid=True
        )
    )
    assert result.all_seeds == [5, 6, 7, 8]
    assert result.all_prompts == ["a", "b", "c", "d"]
    assert result.all_subseeds[0] == result.subseed
    info = json.loads(result.js())
    assert info["all_seeds"] == [5, 6, 7, 8] and info["infotexts"] == result.infotexts
    assert result.info == result.infotexts[0] and result.info.startswith("a\n")
    assert {"load_model", "encode_prompt", "sample", "decode"} <= set(result.timings)


def test_random_seed_is_recorded_and_replays_to_the_same_bytes():
    result = process_images(txt2img(seed=-1, do_not_save_samples=True))
    assert 0 <= result.seed < 2**32
    assert f"Seed: {result.seed}," in result.infotexts[0]
    replayed = process_images(processing_from_infotext(result.infotexts[0])).images[0]
    assert png_of(replayed) == png_of(result.images[0])


def test_interrupt_returns_the_images_finished_so_far():
    p = txt2img(seed=1, n_iter=3, do_not_save_samples=True, do_not_save_grid=True)

    def interrupt_in_second_batch(state):
        if state.job_no == 1 and state.sampling_step == 2:
            state.interrupt()

    p.state.listeners.append(interrupt_in_second_batch)
    result = process_images(p)
    assert result.interrupted
    assert result.all_seeds == [1] and len(result.images) == 1
    assert not p.state.running


def test_skip_abandons_only_the_current_batch():
    p = txt2img(seed=1, n_iter=3, do_not_save_samples=True, do_not_save_grid=True)
    p.state.listeners.append(lambda state: state.skip() if state.job_no == 1 and state.sampling_step == 1 else None)
    result = process_images(p)
    assert result.all_seeds == [1, 3] and not result.interrupted


def test_a_result_reports_its_first_kept_image_after_a_skipped_batch():
    """Seed, variation seed, prompt and CFG all describe the first image shown: "Reuse last seed" reuses its seed."""
    p = txt2img(
        seed=1,
        subseed=50,
        subseed_strength=0.1,
        prompt=["a", "b", "c"],
        cfg_scale=[3.0, 5.0, 7.0],
        n_iter=3,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    p.state.listeners.append(lambda state: state.skip() if state.job_no == 0 and state.sampling_step == 1 else None)
    result = process_images(p)
    assert (result.all_seeds, result.all_subseeds, result.all_cfg_scales) == ([2, 3], [51, 52], [5.0, 7.0])
    assert (result.seed, result.subseed, result.prompt, result.cfg_scale) == (2, 51, "b", 5.0)
    assert f"Seed: {result.seed}," in result.info
    info = json.loads(result.js())
    assert (info["seed"], info["subseed"], info["prompt"]) == (2, 51, "b")
    assert "images" not in info and "paths" not in info


def test_sampler_aliases_and_legacy_names_are_written_under_the_webuis_names():
    alias = process_images(txt2img(seed=3, sampler_name="k_euler_a", do_not_save_samples=True))
    named = process_images(txt2img(seed=3, sampler_name="Euler a", do_not_save_samples=True))
    assert alias.sampler_name == "Euler a" and "Sampler: Euler a, CFG scale" in alias.info
    assert png_of(alias.images[0]) == png_of(named.images[0])
    legacy = process_images(txt2img(seed=3, sampler_name="DPM++ 2M Karras", do_not_save_samples=True))
    split = process_images(txt2img(seed=3, sampler_name="DPM++ 2M", scheduler="Karras", do_not_save_samples=True))
    assert (legacy.sampler_name, legacy.scheduler) == ("DPM++ 2M", "Karras")
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in legacy.info
    assert png_of(legacy.images[0]) == png_of(split.images[0])


def test_replay_reads_a_webui_legacy_sampler_name_as_sampler_and_schedule_type():
    p = processing_from_infotext("a cat\nSteps: 3, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 9, Size: 32x24")
    assert (p.sampler_name, p.scheduler, p.steps, p.cfg_scale, p.seed) == ("DPM++ 2M", "Karras", 3, 6.5, 9)
    assert (p.width, p.height, p.extra_generation_params) == (32, 24, {})


def test_replay_names_the_field_whose_infotext_value_cannot_be_read():
    with pytest.raises(ValueError, match="^steps: cannot read 'Steps' value 'many': "):
        processing_from_infotext("a cat\nSteps: many, Sampler: Euler, Seed: 9")


def test_noise_multiplier_scales_img2img_noise_and_replays():
    init = Image.new("RGB", (32, 32), (30, 120, 200))

    def img2img(**fields):
        values = dict(prompt="x", init_images=[init], seed=4, steps=6, denoising_strength=0.8, do_not_save_samples=True)
        return StableDiffusionProcessingImg2Img(**(values | fields))

    plain = process_images(img2img())
    quieter = process_images(img2img(initial_noise_multiplier=0.5))
    assert "Noise multiplier" not in plain.info and quieter.info.endswith(
        ", Denoising strength: 0.8, Noise multiplier: 0.5"
    )
    assert max_pixel_difference(plain.images[0], quieter.images[0]) > 0
    replay = processing_from_infotext(quieter.info, [init])
    assert replay.initial_noise_multiplier == 0.5
    assert png_of(process_images(replay).images[0]) == png_of(quieter.images[0])


def test_less_initial_noise_keeps_img2img_closer_to_its_init_image():
    """The webui's meaning of the noise multiplier: below 1, less of the init image is noised away (6 seeds)."""
    init = Image.new("RGB", (32, 32), (30, 120, 200))
    ImageDraw.Draw(init).ellipse((8, 8, 23, 23), fill=(220, 30, 30))
    reference = np.asarray(init, dtype=float)

    def distance_to_init(seed, multiplier):
        p = StableDiffusionProcessingImg2Img(
            prompt="a red circle on a blue background", init_images=[init], seed=seed, steps=6,
            denoising_strength=0.8, initial_noise_multiplier=multiplier, do_not_save_samples=True,
        )  # fmt: skip
        return np.abs(np.asarray(process_images(p).images[0], dtype=float) - reference).mean()

    closer = [distance_to_init(seed, 0.5) < distance_to_init(seed, 1.0) for seed in range(4, 10)]
    assert all(closer), closer


def test_progress_reaches_every_step_and_ends_complete():
    p = txt2img(seed=1, n_iter=2, steps=5, do_not_save_samples=True, do_not_save_grid=True)
    seen = []
    p.state.listeners.append(lambda state: seen.append((state.job_no, state.sampling_step, round(state.progress, 2))))
    process_images(p)
    assert seen == [(0, s, s / 10) for s in range(1, 6)] + [(1, s, (5 + s) / 10) for s in range(1, 6)]
    assert p.state.progress == 1.0 and p.state.eta_seconds is None


def test_override_settings_apply_webui_options():
    plain = process_images(txt2img(seed=3, do_not_save_samples=True))
    skipped = process_images(
        txt2img(seed=3, override_settings={"CLIP_stop_at_last_layers": 2}, do_not_save_samples=True)
    )
    assert "Clip skip: 2" in skipped.infotexts[0] and "Clip skip" not in plain.infotexts[0]
    assert max_pixel_difference(plain.images[0], skipped.images[0]) > 0


def test_override_settings_do_not_change_the_callers_object(isolated_workdir):
    p = txt2img(seed=3, override_settings={"samples_save": False})
    process_images(p)
    assert p.override_settings == {"samples_save": False} and p.do_not_save_samples is False
    assert not (isolated_workdir / "outputs").exists()


def test_styles_from_styles_csv_are_applied(isolated_workdir):
    (isolated_workdir / "styles.csv").write_text("name,prompt,negative_prompt\nbold,{prompt} large,blurry\n")
    result = process_images(txt2img(prompt="a circle", styles=["bold"], seed=1, do_not_save_samples=True))
    assert result.all_prompts == ["a circle large"] and result.all_negative_prompts == ["blurry"]
    assert result.infotexts[0].startswith("a circle large\nNegative prompt: blurry\n")


def test_variation_seed_and_seed_resize_and_eta_are_written_to_the_infotext():
    result = process_images(
        txt2img(
            seed=3,
            subseed=4,
            subseed_strength=0.25,
            seed_resize_from_w=32,
            seed_resize_from_h=32,
            width=48,
            height=48,
            sampler_name="DDIM",
            eta=0.5,
            do_not_save_samples=True,
        )
    )
    parsed = parse_infotext(result.infotexts[0])
    assert (parsed["Variation seed"], parsed["Variation seed strength"]) == ("4", "0.25")
    assert parsed["Seed resize from"] == "32x32" and parsed["Eta"] == "0.5"


def test_seed_resize_changes_the_image_only_outside_the_copied_noise():
    resized = process_images(
        txt2img(seed=3, seed_resize_from_w=32, seed_resize_from_h=32, width=48, height=48, do_not_save_samples=True)
    ).images[0]
    plain = process_images(txt2img(seed=3, width=48, height=48, do_not_save_samples=True)).images[0]
    assert max_pixel_difference(resized, plain) > 0


@pytest.mark.parametrize("resize_mode", [0, 1, 2, 3])
def test_img2img_resize_modes_produce_the_requested_size(resize_mode):
    init = Image.new("RGB", (50, 30), (200, 40, 40))
    result = process_images(
        StableDiffusionProcessingImg2Img(
            prompt="x",
            init_images=[init],
            resize_mode=resize_mode,
            width=32,
            height=24,
            seed=1,
            steps=4,
            do_not_save_samples=True,
        )
    )
    assert result.images[0].size == (32, 24)
    assert "Denoising strength: 0.75" in result.infotexts[0]


def test_img2img_with_zero_strength_runs_no_steps():
    p = StableDiffusionProcessingImg2Img(
        prompt="x",
        init_images=[Image.new("RGB", (32, 32), "blue")],
        denoising_strength=0.0,
        seed=1,
        steps=10,
        do_not_save_samples=True,
    )
    seen = []
    p.state.listeners.append(lambda state: seen.append(state.sampling_step))
    assert len(process_images(p).images) == 1
    assert seen == []


def test_img2img_batch_uses_one_init_image_per_position():
    inits = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]

    def img2img(images, seed, batch_size):
        return process_images(
            StableDiffusionProcessingImg2Img(
                prompt="x",
                init_images=images,
                batch_size=batch_size,
                seed=seed,
                steps=4,
                denoising_strength=0.3,
                exact=True,
                do_not_save_samples=True,
                do_not_save_grid=True,
            )
        ).images

    batch = img2img(inits, 1, 2)
    assert png_of(batch[0]) == png_of(img2img(inits[:1], 1, 1)[0])
    assert png_of(batch[1]) == png_of(img2img(inits[1:], 2, 1)[0])


def test_model_is_cached_and_a_switch_beyond_the_limit_frees_the_old_one(tmp_path, monkeypatch):
    """With one model kept (SERENA_CHECKPOINTS_LIMIT=1; the default keeps two) a switch frees the previous one."""
    import weakref

    monkeypatch.setenv("SERENA_CHECKPOINTS_LIMIT", "1")
    first = sd_models.load_model()
    assert sd_models.load_model() is first
    copy = tmp_path / "copy-model"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    unet_ref = weakref.ref(first.pipeline.unet)
    del first
    other = sd_models.load_model(str(copy))
    assert other.checkpoint.name == "copy-model"
    assert unet_ref() is None
    result = process_images(txt2img(seed=1, sd_model_checkpoint=str(copy), do_not_save_samples=True))
    assert "Model: copy-model" in result.infotexts[0]
    sd_models.load_model()


def test_per_image_seeds_and_cfg_scales_run_as_one_batch():
    """The sweep's batching: one job whose images differ in seed and CFG equals the single-image jobs."""
    batch = process_images(
        txt2img(seed=[5, 9], cfg_scale=[3.0, 7.5], batch_size=2, do_not_save_samples=True, do_not_save_grid=True)
    )
    assert batch.all_seeds == [5, 9]
    assert "CFG scale: 3, Seed: 5," in batch.infotexts[0] and "CFG scale: 7.5, Seed: 9," in batch.infotexts[1]
    for image, seed, cfg_scale in zip(batch.images, (5, 9), (3.0, 7.5)):
        alone = process_images(txt2img(seed=seed, cfg_scale=cfg_scale, do_not_save_samples=True)).images[0]
        assert max_pixel_difference(image, alone) <= 1
    exact = process_images(
        txt2img(
            seed=[5, 9], cfg_scale=[3.0, 7.5], batch_size=2, exact=True, do_not_save_samples=True, do_not_save_grid=True
        )
    )
    alone = process_images(txt2img(seed=9, cfg_scale=7.5, do_not_save_samples=True)).images[0]
    assert png_of(exact.images[1]) == png_of(alone)


def test_per_image_lists_must_match_the_image_count():
    with pytest.raises(ValueError, match=r"cfg_scale: a list must have one value per image \(2\), got 3"):
        txt2img(cfg_scale=[1.0, 2.0, 3.0], batch_size=2).validate()
    with pytest.raises(ValueError, match=r"seed\[1\]: -7 is out of range"):
        txt2img(seed=[1, -7], batch_size=2).validate()


def test_prompt_encodings_are_cached_per_model():
    model = sd_models.load_model()
    model.prompt_cache.clear()
    process_images(txt2img(prompt="cached prompt", seed=1, n_iter=2, do_not_save_samples=True))
    assert set(model.prompt_cache) == {("cached prompt", 1, "Original"), ("", 1, "Original")}


def test_eta_noise_seed_delta_changes_the_step_noise_of_ancestral_samplers_only():
    def pixels(sampler: str, delta: int) -> tuple[bytes, str]:
        overrides = {"eta_noise_seed_delta": delta}
        p = txt2img(seed=4, sampler_name=sampler, override_settings=overrides, do_not_save_samples=True)
        result = process_images(p)
        return result.images[0].tobytes(), result.info

    plain, plain_info = pixels("Euler a", 0)
    shifted, shifted_info = pixels("Euler a", 31337)
    assert shifted != plain and "ENSD: 31337" in shifted_info and "ENSD" not in plain_info
    assert pixels("Euler", 31337)[0] == pixels("Euler", 0)[0]  # no step noise: the same image
    assert processing_from_infotext(shifted_info).eta_noise_seed_delta == 31337
