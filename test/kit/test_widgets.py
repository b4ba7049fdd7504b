"""The widget form and request_from_widgets: widget values -> a validated engine request -> images in a gallery."""

import dataclasses
import threading
import time

import pytest
from helpers import load_png, png_of
from PIL import Image

import serena_kit as sk
from modules import images, previews, sd_models, sd_samplers
from modules.runtime.runner import ProcessingRequest

WIDGET_STATE = {
    "prompt": "a red circle",
    "negative_prompt": "blurry",
    "sampler_name": "DPM++ 2M",
    "scheduler": "Karras",
    "steps": 6,
    "cfg_scale": 6.5,
    "width": 0,
    "height": 48,
    "seed": 77,
    "batch_size": 2,
    "n_iter": 1,
    "denoising_strength": 0.6,
}


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_widget_state_becomes_a_txt2img_request_with_those_values():
    request = sk.request_from_widgets(WIDGET_STATE)
    p = request.processing
    assert isinstance(request, ProcessingRequest) and isinstance(p, sk.StableDiffusionProcessingTxt2Img)
    assert (p.prompt, p.negative_prompt, p.sampler_name, p.scheduler) == (
        "a red circle",
        "blurry",
        "DPM++ 2M",
        "Karras",
    )
    assert (p.steps, p.cfg_scale, p.seed, p.batch_size, p.n_iter) == (6, 6.5, 77, 2, 1)
    assert (p.width, p.height) == (None, 48)  # 0: the model's native size


@pytest.mark.parametrize("as_", ["pil", "bytes", "file_upload"])
def test_an_init_image_makes_it_img2img(as_):
    image = Image.new("RGB", (40, 40), "navy")
    data = images.png_bytes(image, None)
    value = {
        "pil": image,
        "bytes": data,
        "file_upload": ({"name": "a.png", "type": "image/png", "size": len(data), "content": memoryview(data)},),
    }[as_]
    p = sk.request_from_widgets(WIDGET_STATE | {"init_image": value}).processing
    assert isinstance(p, sk.StableDiffusionProcessingImg2Img)
    assert p.denoising_strength == 0.6 and p.init_images[0].tobytes() == image.tobytes()


def test_an_empty_upload_means_txt2img():
    assert isinstance(
        sk.request_from_widgets(WIDGET_STATE | {"init_image": ()}).processing, sk.StableDiffusionProcessingTxt2Img
    )


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"stepz": 4}, ValueError, "^stepz: not a generation parameter; valid: prompt, "),
        ({"steps": 0}, ValueError, "^steps: 0 is out of range; allowed 1..1000"),
        ({"sampler_name": "Nope"}, ValueError, "^sampler_name: unknown sampler 'Nope'; valid samplers: Euler, "),
        ({"sampler_name": "DDIM"}, ValueError, "^scheduler: 'Karras' is not available with sampler 'DDIM'"),
        ({"width": 30}, ValueError, "^width: 30 is not allowed; allowed multiples of 8"),
        ({"cfg_scale": "7"}, TypeError, "^cfg_scale: expected a number, got str '7'"),
        ({"init_image": b"not an image"}, ValueError, "^init_image: not a readable image"),
        ({"init_image": 3}, TypeError, "^init_image: expected a PIL image, image file bytes or a path, got int$"),
        ({"resize_mode": 1}, ValueError, "^resize_mode: only used by img2img; give an init_image too"),
    ],
)
def test_unknown_or_invalid_values_raise_the_engines_errors(change, error, message):
    with pytest.raises(error, match=message):
        sk.request_from_widgets(WIDGET_STATE | change)


def test_the_form_offers_the_engines_samplers_and_each_samplers_schedule_types():
    form = sk.GenerationForm()
    assert form.sampler_name.options == sd_samplers.SAMPLER_NAMES
    form.sampler_name.value = "Euler"
    form.scheduler.value = "Karras"
    form.sampler_name.value = "DDIM"
    assert form.scheduler.options == tuple(sd_samplers.supported_schedule_types("DDIM"))
    assert form.scheduler.value == "Automatic"


def test_the_form_starts_from_its_arguments_and_fixes_the_other_fields(tmp_path):
    form = sk.GenerationForm(**WIDGET_STATE, sd_model_checkpoint="default", outpath_samples=str(tmp_path))
    p = sk.request_from_widgets(form).processing
    assert (p.prompt, p.sampler_name, p.scheduler, p.steps, p.cfg_scale, p.seed) == (
        "a red circle",
        "DPM++ 2M",
        "Karras",
        6,
        6.5,
        77,
    )
    assert p.sd_model_checkpoint == "default" and p.outpath_samples == str(tmp_path)
    with pytest.raises(ValueError, match="^stepz: not a generation parameter"):
        sk.GenerationForm(stepz=3)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"steps": 5000}, "^steps: 5000 is out of range"),
        ({"sampler_name": "Euler a", "scheduler": "Karras"}, "^scheduler: 'Karras' is not available"),
        ({"denoising_strength": 1.5}, "^denoising_strength: 1.5 is out of range"),
    ],
)
def test_bad_starting_values_raise_instead_of_being_clamped(fields, message):
    with pytest.raises(ValueError, match=message):
        sk.GenerationForm(**fields)


def test_webui_sampler_aliases_start_the_form_on_the_sampler_they_name():
    assert sk.GenerationForm(sampler_name="k_dpmpp_2m").sampler_name.value == "DPM++ 2M"


def test_generate_shows_the_images_with_their_infotext_and_keeps_the_result():
    form = sk.GenerationForm(prompt="a green square", steps=5, seed=31, batch_size=2, do_not_save_samples=True)
    result = form.generate()
    single = sk.txt2img("a green square", steps=5, seed=31, batch_size=2, do_not_save_samples=True)
    assert form.result is result
    assert [png_of(image) for image in result.images] == [png_of(image) for image in single.images]
    cards = form.gallery.children
    assert len(cards) == 2  # the samples, not the batch grid
    picture, caption = cards[1].children
    shown = load_png(bytes(picture.value))
    assert shown.size == (128, 128)
    assert shown.resize((32, 32), Image.NEAREST).tobytes() == result.images[2].tobytes()
    assert "Seed: 32," in caption.value
    assert "word-break: normal" in caption.value  # lines break between words, not inside them
    assert form.progress.value == 100 and "Done: 2 images. Seed 31." in form.status.value
    assert not form.generate_button.disabled and form.interrupt_button.disabled


def test_the_progress_bar_follows_every_step():
    form = sk.GenerationForm(prompt="a dot", steps=5, n_iter=2, seed=1, do_not_save_samples=True)
    seen = []
    form.progress.observe(lambda change: seen.append(change["new"]), names="value")
    form.generate()
    assert seen == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert form.progress_text.value == "100% · done"


def test_random_and_reuse_last_seed_buttons():
    form = sk.GenerationForm(prompt="a dot", steps=2, seed=5, do_not_save_samples=True)
    assert form.reuse_seed_button.disabled
    form.random_seed_button.click()
    assert form.seed.value == -1
    result = form.generate()
    assert result.seed != -1 and not form.reuse_seed_button.disabled
    form.reuse_seed_button.click()
    assert form.seed.value == result.seed
    assert png_of(form.generate().images[0]) == png_of(result.images[0])


def test_an_uploaded_image_generates_img2img():
    form = sk.GenerationForm(prompt="a circle", steps=4, seed=3, denoising_strength=0.5, do_not_save_samples=True)
    form.set_init_image(Image.new("RGB", (32, 32), "gold"))
    result = form.generate()
    assert "Denoising strength: 0.5" in result.info
    form.clear_image_button.click()
    assert "Denoising strength" not in form.generate().info


def test_generate_button_runs_in_the_background_and_interrupt_stops_it():
    form = sk.GenerationForm(prompt="a long job", steps=1000, seed=2, do_not_save_samples=True)
    sk.load_model()  # so the job below starts sampling at once
    thread = form.on_generate_clicked(form.generate_button)
    assert thread.is_alive() and thread is not threading.current_thread()  # the caller (the kernel) is free
    wait_until(lambda: form.progress_text.value.startswith("0% · step") or form.progress.value > 0)
    assert form.running and form.generate_button.disabled
    state, steps_done = form._state, []
    state.listeners.append(lambda state: steps_done.append(state.sampling_step))
    steps_before_click = state.sampling_step
    form.interrupt_button.click()
    thread.join(timeout=120)  # a hang guard only: a busy machine may take long, the step count below is the check
    # The loop checks for an interrupt before every step: at most the step in flight and one more finish.
    assert not thread.is_alive() and max(steps_done, default=steps_before_click) <= steps_before_click + 2 < 1000
    assert form.result.interrupted and form.result.images == []
    assert form.progress.value < 100 and form.status.value.startswith("Interrupted: 0 images finished.")
    assert not form.running and not form.generate_button.disabled and form.interrupt_button.disabled


def test_interrupt_clicked_while_the_model_loads_still_stops_the_job(monkeypatch):
    loading, release = threading.Event(), threading.Event()
    real_get = sd_models.model_cache.get

    def slow_get(*args, **kwargs):
        loading.set()
        release.wait(10)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(sd_models.model_cache, "get", slow_get)
    form = sk.GenerationForm(prompt="a dot", steps=50, seed=2, do_not_save_samples=True)
    steps_seen = []
    thread = form.on_generate_clicked()
    assert loading.wait(10)
    form.interrupt()  # before the engine begins the job, which clears the state's own interrupt flag
    form._state.listeners.append(lambda state: steps_seen.append(state.sampling_step))
    release.set()
    thread.join(timeout=30)
    assert form.result.interrupted and steps_seen == [1]


def test_errors_from_a_click_are_shown_in_the_form():
    form = sk.GenerationForm(prompt="a dot")
    form.width.value = 36  # the number box takes any integer; the engine wants multiples of 8
    form.on_generate_clicked().join(timeout=30)
    assert isinstance(form.error, ValueError) and "width: 36 is not allowed" in form.status.value
    assert form.result is None and not form.generate_button.disabled


def test_the_form_reads_well_as_text():
    form = sk.GenerationForm(prompt="a cat", steps=7, seed=4)
    assert repr(form) == "GenerationForm(prompt='a cat', sampler_name='Euler a', steps=7, cfg_scale=7.0, seed=4)"
    bundle = form._repr_mimebundle_()
    assert bundle["text/plain"] == repr(form) and "application/vnd.jupyter.widget-view+json" in bundle


def test_a_field_declared_with_a_widget_appears_in_the_form(monkeypatch):
    """The form shows the fields declared with a widget: here resize_mode, given a dropdown of its webui names."""
    from modules import generation_fields

    fields = tuple(
        dataclasses.replace(declaration, widget=generation_fields.Widget("dropdown", 5))
        if declaration.name == "resize_mode"
        else declaration
        for declaration in generation_fields.FIELDS
    )
    monkeypatch.setattr(generation_fields, "FIELDS", fields)
    form = sk.GenerationForm(resize_mode=2)
    assert form.resize_mode.options[2] == ("Resize and fill", 2) and form.resize_mode.value == 2
    assert "resize_mode" in form.widget_state()
    form.set_init_image(Image.new("RGB", (40, 24), "teal"))
    assert sk.request_from_widgets(form).processing.resize_mode == 2
    form.set_init_image(None)  # txt2img: the form's img2img controls are left out
    assert isinstance(sk.request_from_widgets(form).processing, sk.StableDiffusionProcessingTxt2Img)


def test_the_hires_controls_make_a_hires_txt2img_job():
    from modules import upscalers

    form = sk.GenerationForm(prompt="a red circle on a blue background", steps=3, seed=5, width=32, height=32)
    form.fixed["do_not_save_samples"] = True
    assert list(form.hr_upscaler.options) == upscalers.names() and form.enable_hr.value is False
    form.enable_hr.value, form.hr_scale.value, form.hr_upscaler.value = True, 2.0, "Lanczos"
    result = form.generate()
    assert result.images[0].size == (64, 64)
    assert "Hires upscale: 2" in result.info and "Hires upscaler: Lanczos" in result.info
    form.set_init_image(Image.new("RGB", (32, 32), "gold"))  # img2img: the hires controls are left out
    p = sk.request_from_widgets(form).processing
    assert isinstance(p, sk.StableDiffusionProcessingImg2Img) and not hasattr(p, "enable_hr")


def test_an_uploaded_mask_makes_an_inpainting_job_and_needs_an_init_image():
    form = sk.GenerationForm(
        prompt="a yellow circle on a blue background", steps=3, seed=5, denoising_strength=0.9, mask_blur=0
    )
    form.fixed["do_not_save_samples"] = True
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    form.set_mask(mask)
    with pytest.raises(ValueError, match="^mask: only used by img2img; give an init_image too"):
        sk.request_from_widgets(form)
    init = Image.new("RGB", (32, 32), (30, 70, 230))
    form.set_init_image(init)
    p = sk.request_from_widgets(form).processing
    assert isinstance(p, sk.StableDiffusionProcessingImg2Img) and p.mask.convert("L").tobytes() == mask.tobytes()
    image = form.generate().images[0]
    assert image.getpixel((0, 0)) == init.getpixel((0, 0))  # outside the (unblurred) mask: the init image's pixels
    form.clear_mask_button.click()
    assert sk.request_from_widgets(form).processing.mask is None


@pytest.mark.parametrize("every, steps", [(2, 6), (3, 7)])
def test_the_form_shows_a_preview_every_n_steps(every, steps):
    form = sk.GenerationForm(prompt="a blue circle", steps=steps, seed=8, preview_every=every, do_not_save_samples=True)
    captions, pictures = [], []
    form.preview_caption.observe(lambda change: change["new"] and captions.append(change["new"]), names="value")
    form.preview.observe(lambda change: change["new"] and pictures.append(bytes(change["new"])), names="value")
    form.generate()
    assert captions == [f"Preview · step {step}/{steps}" for step in range(every, steps + 1, every)]
    assert len(captions) == steps // every
    assert 1 <= len(pictures) <= len(captions)  # an image equal to the one before changes nothing
    assert load_png(pictures[-1]).size == (form.display_size, form.display_size)


def test_the_last_preview_is_the_final_image_decoded_at_the_gallerys_size_then_the_result_replaces_it():
    form = sk.GenerationForm(prompt="a green square", steps=4, seed=2, preview_every=1, do_not_save_samples=True)
    assert form.preview.layout.display == "none"  # no empty image (a broken-image icon) before the first frame
    shown = []
    form.preview.observe(lambda change: change["new"] and shown.append(form.preview.layout.display), names="value")
    frames = []
    form.preview.observe(lambda change: change["new"] and frames.append(bytes(change["new"])), names="value")
    result = form.generate()
    # Decoded (true colours, the model is small), smoothed to the gallery's 128 px, not a mosaic of latent pixels.
    expected = result.images[0].resize((128, 128), Image.Resampling.BILINEAR)
    assert load_png(frames[-1]).tobytes() == expected.tobytes()
    assert shown and all(display is None for display in shown)
    assert form.preview.layout.display == "none" and form.preview.value == b"" and form.preview_caption.value == ""


def test_a_given_preview_map_is_used_and_smoothed_to_the_gallerys_size():
    form = sk.GenerationForm(prompt="a green square", steps=2, seed=2, preview_every=1, do_not_save_samples=True)
    job = sk.request_from_widgets(form).processing
    final = {}
    job.state.listeners.append(lambda state: final.update(model=state.current_model, latents=state.current_latent))
    sk.process_images(job)
    frames = []
    form.preview.observe(lambda change: change["new"] and frames.append(bytes(change["new"])), names="value")
    form.preview_map = previews.fitted_map(final["model"])  # given: used whatever the size
    form.generate()
    expected = previews.preview_image(final["model"], final["latents"], form.preview_map)
    assert load_png(frames[-1]).tobytes() == expected.resize((128, 128), Image.Resampling.BILINEAR).tobytes()


def test_preview_off_shows_none():
    form = sk.GenerationForm(prompt="a blue circle", steps=6, seed=8, preview_every=0, do_not_save_samples=True)
    updates = []
    form.preview.observe(updates.append, names="value")
    form.preview_caption.observe(updates.append, names="value")
    form.generate()
    assert updates == [] and form.preview.value == b"" and form.result.images


def test_the_preview_control_switches_previews_on_between_runs():
    form = sk.GenerationForm(prompt="a blue circle", steps=4, seed=8, preview_every=0, do_not_save_samples=True)
    form.preview_every.value = 4
    captions = []
    form.preview_caption.observe(lambda change: change["new"] and captions.append(change["new"]), names="value")
    form.generate()
    assert captions == ["Preview · step 4/4"]
    with pytest.raises(ValueError, match="^preview_every: -1 is not allowed"):
        sk.GenerationForm(preview_every=-1)


def test_the_form_shows_a_chosen_words_attention_map_over_each_image():
    form = sk.GenerationForm(prompt="a red circle on a blue background", steps=4, seed=8, do_not_save_samples=True)
    assert form.attention_word.disabled
    form.attention_maps.value = True
    result = form.generate()
    assert [label for label, _ in form.attention_word.options] == [
        "(the image)",
        "a",
        "red",
        "circle",
        "on",
        "a",
        "blue",
        "background",
    ]
    (picture, _), image = form.gallery.children[0].children, result.images[0]
    plain = bytes(picture.value)
    form.attention_word.value = 2  # "circle"
    circle = load_png(bytes(picture.value))
    expected = sk.attention_overlay(image, result.attention_maps[0].word_map("circle"), min_side=None)
    assert circle.size == (128, 128) and circle.resize((32, 32), Image.NEAREST).tobytes() == expected.tobytes()
    form.attention_word.value = -1
    assert bytes(picture.value) == plain
    form.attention_maps.value = False
    form.generate()
    assert form.attention_word.disabled and form.result.attention_maps == []


def test_a_value_out_of_range_typed_in_the_form_shows_the_engines_error_instead_of_being_clamped():
    form = sk.GenerationForm(prompt="a dot", steps=4, seed=1, do_not_save_samples=True)
    form.steps.value = 0
    assert form.steps.value == 0  # kept as typed
    with pytest.raises(ValueError, match="^steps: 0 is out of range; allowed 1..1000"):
        form.generate()
    assert "steps: 0 is out of range; allowed 1..1000" in form.status.value


def test_width_and_height_say_what_0_means_for_the_forms_model():
    assert sk.GenerationForm().width.description == "Width (0: native 32)"
    assert sk.GenerationForm(sd_model_checkpoint="serena-scenes").height.description == "Height (0: native 64)"
