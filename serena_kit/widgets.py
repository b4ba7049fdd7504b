"""An ipywidgets form for txt2img/img2img, and the function that turns widget values into an engine request.

The form only builds a processing object (`request_from_widgets`) and runs it through `process_images`.
The Generate button runs the job in a background thread, so the kernel stays free to take the Interrupt click
and to run other cells; `form.generate()` is the same job, synchronous, for notebooks run headless and tests.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import io
import threading
from collections.abc import Mapping

import ipywidgets as w
from PIL import Image

from modules import images, sd_samplers, validation
from modules.processing import (
    Processed,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
    process_images,
)
from modules.runtime.runner import ProcessingRequest
from modules.runtime.state import GenerationState
from serena_kit.grids import upscale_for_display

# The processing fields the form shows; every other field is fixed when the form is made.
FORM_FIELDS = (
    "prompt",
    "negative_prompt",
    "sampler_name",
    "scheduler",
    "steps",
    "cfg_scale",
    "width",
    "height",
    "seed",
    "batch_size",
    "n_iter",
    "denoising_strength",
)
INIT_IMAGE = "init_image"  # one image from the upload widget; present means img2img
NOT_FROM_WIDGETS = {"state", "init_images"}


def processing_field_names() -> list[str]:
    """Fields a widget state may set: img2img's fields (a superset of txt2img's) except the engine's own."""
    return [f.name for f in dataclasses.fields(StableDiffusionProcessingImg2Img) if f.name not in NOT_FROM_WIDGETS]


def init_image_from(value) -> Image.Image | None:
    """The init image from a PIL image, image-file bytes, or a FileUpload value (a tuple of file dicts)."""
    if value is None or (isinstance(value, (tuple, list)) and len(value) == 0):
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (tuple, list)) and isinstance(value[0], Mapping) and "content" in value[0]:
        value = value[0]["content"]
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            image = Image.open(io.BytesIO(bytes(value)))
            image.load()
        except OSError as error:
            raise ValueError(f"{INIT_IMAGE}: not a readable image ({error})") from None
        return image
    raise TypeError(
        f"{INIT_IMAGE}: expected a PIL image, image file bytes or a FileUpload value, got {type(value).__name__}"
    )


def request_from_widgets(state) -> ProcessingRequest:
    """A validated ProcessingRequest from widget values: a dict keyed by processing field names (plus
    `init_image`, which makes it img2img), or a GenerationForm.

    Width or height 0 means the model's native size; denoising_strength is ignored without an init image.
    Unknown names and invalid values raise the engine's ValueError/TypeError naming the field.
    """
    values = dict(state.widget_state() if isinstance(state, GenerationForm) else state)
    known = processing_field_names()
    unknown = sorted(set(values) - set(known) - {INIT_IMAGE})
    if unknown:
        raise ValueError(f"{unknown[0]}: not a generation parameter; valid: {', '.join([*known, INIT_IMAGE])}")
    init_image = init_image_from(values.pop(INIT_IMAGE, None))
    for name in ("width", "height"):
        if values.get(name) == 0:
            values[name] = None
    if init_image is None:
        values.pop("denoising_strength", None)
        txt2img_fields = {f.name for f in dataclasses.fields(StableDiffusionProcessingTxt2Img)}
        img2img_only = sorted(set(values) - txt2img_fields)
        if img2img_only:
            raise ValueError(f"{img2img_only[0]}: only used by img2img; give an {INIT_IMAGE} too")
        p = StableDiffusionProcessingTxt2Img(**values)
    else:
        p = StableDiffusionProcessingImg2Img(init_images=[init_image], **values)
    p.validate()
    return ProcessingRequest(p)


def check_starting_values(values: dict) -> None:
    """The engine's checks on a form's starting values: bounded widgets would clamp bad ones silently."""
    placeholder = Image.new("RGB", (8, 8))  # img2img's checks cover every field a form can hold
    request_from_widgets(values | {INIT_IMAGE: placeholder})


def upload_value_for(image: Image.Image) -> tuple:
    """A FileUpload value holding `image` as a PNG, as if the user had uploaded it."""
    data = images.png_bytes(image.convert("RGB"), None)
    uploaded = {
        "name": "init.png",
        "type": "image/png",
        "size": len(data),
        "content": memoryview(data),
        "last_modified": datetime.datetime.fromtimestamp(0, datetime.timezone.utc),
    }
    return (uploaded,)


class GenerationForm:
    """Prompt, sampler, steps, CFG, size, seed, batch and img2img inputs; Generate and Interrupt; progress; gallery.

    Keyword arguments set the form's starting values (for FORM_FIELDS) or fix other processing fields for every
    generation (e.g. `sd_model_checkpoint=...`, `do_not_save_samples=True`). `form.result` is the last Processed.
    """

    def __init__(self, display_size: int = 128, **fields):
        known = processing_field_names()
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a generation parameter; valid: {', '.join(known)}")
        start = {
            f.name: f.default for f in dataclasses.fields(StableDiffusionProcessingImg2Img) if f.name in FORM_FIELDS
        }
        start |= {name: value for name, value in fields.items() if name in FORM_FIELDS}
        self.fixed = {name: value for name, value in fields.items() if name not in FORM_FIELDS}
        check_starting_values(start | self.fixed)
        start["sampler_name"] = sd_samplers.find_sampler(start["sampler_name"]).name  # "k_euler" -> "Euler"
        self.display_size = display_size
        self.result: Processed | None = None
        self.error: Exception | None = None
        self._state: GenerationState | None = None  # the running job's
        self._interrupt_requested = False
        self._thread: threading.Thread | None = None
        self._build_widgets(start)

    def _build_widgets(self, start: dict) -> None:
        wide = w.Layout(width="100%")
        labels = {"description_width": "initial"}
        self.prompt = w.Textarea(start["prompt"], description="Prompt", rows=2, layout=wide, style=labels)
        self.negative_prompt = w.Textarea(
            start["negative_prompt"], description="Negative prompt", rows=1, layout=wide, style=labels
        )
        self.sampler_name = w.Dropdown(
            options=sd_samplers.SAMPLER_NAMES, value=start["sampler_name"], description="Sampler"
        )
        self.scheduler = w.Dropdown(
            options=sd_samplers.supported_schedule_types(start["sampler_name"]),
            value=start["scheduler"],
            description="Schedule type",
            style=labels,
        )
        self.sampler_name.observe(self._offer_schedules_of_sampler, names="value")
        self.steps = w.BoundedIntText(start["steps"], min=1, max=validation.MAX_STEPS, description="Steps")
        self.cfg_scale = w.FloatSlider(
            start["cfg_scale"],
            min=0.0,
            max=max(30.0, start["cfg_scale"]),
            step=0.5,
            description="CFG scale",
            style=labels,
        )
        native = {"min": 0, "max": validation.MAX_SIZE, "step": 8, "tooltip": "0: the model's native size"}
        self.width = w.BoundedIntText(start["width"] or 0, description="Width", **native)
        self.height = w.BoundedIntText(start["height"] or 0, description="Height", **native)
        self.seed = w.IntText(start["seed"], description="Seed")
        self.random_seed_button = w.Button(description="Random", icon="dice", tooltip="Seed -1: a new one each time")
        self.reuse_seed_button = w.Button(
            description="Reuse last", icon="recycle", tooltip="The seed of the last result", disabled=True
        )
        self.random_seed_button.on_click(lambda _: setattr(self.seed, "value", -1))
        self.reuse_seed_button.on_click(lambda _: self.reuse_last_seed())
        self.batch_size = w.BoundedIntText(
            start["batch_size"], min=1, max=validation.MAX_BATCH_SIZE, description="Batch size", style=labels
        )
        self.n_iter = w.BoundedIntText(
            start["n_iter"], min=1, max=validation.MAX_N_ITER, description="Batch count", style=labels
        )
        self.init_image = w.FileUpload(
            accept="image/*", multiple=False, description="Init image", tooltip="An image to start from: img2img"
        )
        self.clear_image_button = w.Button(description="Clear image", icon="times")
        self.clear_image_button.on_click(lambda _: self.set_init_image(None))
        self.denoising_strength = w.FloatSlider(
            start["denoising_strength"], min=0.0, max=1.0, step=0.05, description="Denoising strength", style=labels
        )
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="play")
        self.generate_button.add_class("serena-generate")
        self.generate_button.on_click(self.on_generate_clicked)
        self.interrupt_button = w.Button(description="Interrupt", button_style="warning", icon="stop", disabled=True)
        self.interrupt_button.add_class("serena-interrupt")
        self.interrupt_button.on_click(lambda _: self.interrupt())
        self.progress = w.IntProgress(0, min=0, max=100, description="Progress").add_class("serena-progress")
        self.progress_text = w.Label("").add_class("serena-progress-text")
        self.status = w.HTML("").add_class("serena-status")
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap")).add_class("serena-gallery")
        self.root = w.VBox(
            [
                self.prompt,
                self.negative_prompt,
                w.HBox([self.sampler_name, self.scheduler, self.steps, self.cfg_scale]),
                w.HBox([self.width, self.height, self.batch_size, self.n_iter]),
                w.HBox([self.seed, self.random_seed_button, self.reuse_seed_button]),
                w.HBox([self.init_image, self.clear_image_button, self.denoising_strength]),
                w.HBox([self.generate_button, self.interrupt_button, self.progress, self.progress_text]),
                self.status,
                self.gallery,
            ]
        ).add_class("serena-form")
        for name in FORM_FIELDS:  # CSS classes for browser tests and custom styling: serena-steps, serena-seed, ...
            getattr(self, name).add_class("serena-" + name.replace("_", "-"))

    def _offer_schedules_of_sampler(self, change) -> None:
        supported = sd_samplers.supported_schedule_types(change["new"])
        current = self.scheduler.value
        self.scheduler.options = supported
        self.scheduler.value = current if current in supported else "Automatic"

    # Values and requests

    def widget_state(self) -> dict:
        """The form's values by processing field name, the fixed fields, and `init_image` when one is uploaded."""
        values = {name: getattr(self, name).value for name in FORM_FIELDS}
        values = values | self.fixed
        image = init_image_from(self.init_image.value)
        if image is not None:
            values[INIT_IMAGE] = image
        return values

    def set_init_image(self, image: Image.Image | None) -> None:
        """Put an image in the upload widget (None clears it): img2img from code, as if uploaded."""
        self.init_image.value = upload_value_for(image) if image is not None else ()

    def reuse_last_seed(self) -> None:
        if self.result is not None:
            self.seed.value = self.result.seed

    # Running

    @property
    def running(self) -> bool:
        return self._state is not None

    def generate(self) -> Processed:
        """Generate with the form's values and show the result; blocks until done. Errors are shown and raised."""
        if self.running:
            raise RuntimeError("the form is already generating; wait for it, or press Interrupt")
        try:
            request = request_from_widgets(self)
        except (ValueError, TypeError) as error:
            self._show_error(error)
            raise
        self._start(request.state)
        try:
            result = process_images(request.processing)
        except Exception as error:
            self._show_error(error)
            raise
        finally:
            self._finish()
        self._show_result(result)
        return result

    def on_generate_clicked(self, _button=None) -> threading.Thread:
        """The Generate button: the same job in a background thread (returned), so Interrupt stays clickable."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._thread = threading.Thread(target=self._generate_keeping_errors, name="serena-generate", daemon=True)
        self._thread.start()
        return self._thread

    def _generate_keeping_errors(self) -> None:
        try:
            self.generate()
        except Exception as error:  # already shown in the form; a thread has nobody to raise to
            self.error = error

    def interrupt(self) -> None:
        """Stop the running job after its current step; the images finished so far are kept."""
        self._interrupt_requested = True
        if self._state is not None:
            self._state.interrupt()

    # Showing

    def _start(self, state: GenerationState) -> None:
        self.error = None
        self._interrupt_requested = False
        state.listeners.append(self._show_progress)
        self._state = state
        self.progress.value = 0
        self.progress_text.value = "starting"
        self.status.value = "Generating…"
        self.generate_button.disabled = True
        self.interrupt_button.disabled = False

    def _finish(self) -> None:
        self._state = None
        self.generate_button.disabled = False
        self.interrupt_button.disabled = True

    def _show_progress(self, state: GenerationState) -> None:
        if self._interrupt_requested:  # clicked before the job began: begin() clears the state's own flag
            state.interrupt()
        percent = int(state.progress * 100)
        self.progress.value = percent
        batch = f" · batch {state.job_no + 1}/{state.job_count}" if state.job_count > 1 else ""
        self.progress_text.value = f"{percent}% · step {state.sampling_step}/{state.sampling_steps}{batch}"

    def _show_result(self, result: Processed) -> None:
        self.result = result
        self.reuse_seed_button.disabled = False
        samples = result.images[result.index_of_first_image :]
        infotexts = result.infotexts[result.index_of_first_image :]
        self.gallery.children = [self._gallery_card(image, text) for image, text in zip(samples, infotexts)]
        count = f"{len(samples)} image{'s' if len(samples) != 1 else ''}"
        if result.interrupted:
            self.status.value = f"Interrupted: {count} finished. Seed {result.seed}."
        else:
            self.progress.value = 100
            self.progress_text.value = "100% · done"
            self.status.value = f"Done: {count}. Seed {result.seed}."

    def _gallery_card(self, image: Image.Image, infotext: str) -> w.VBox:
        shown = upscale_for_display(image, self.display_size)
        picture = w.Image(value=images.png_bytes(shown, None), format="png").add_class("serena-image")
        caption = w.HTML(
            f'<pre style="white-space: pre-wrap; font-size: 10px; line-height: 1.3; margin: 0">'
            f"{html.escape(infotext)}</pre>"
        ).add_class("serena-infotext")
        return w.VBox([picture, caption], layout=w.Layout(width=f"{max(shown.width, 180)}px", margin="4px"))

    def _show_error(self, error: Exception) -> None:
        self.status.value = f'<span style="color: #b00020">{html.escape(str(error))}</span>'

    # Display

    def __repr__(self) -> str:
        return (
            f"GenerationForm(prompt={self.prompt.value!r}, sampler_name={self.sampler_name.value!r}, "
            f"steps={self.steps.value}, cfg_scale={self.cfg_scale.value}, seed={self.seed.value})"
        )

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.root._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle
