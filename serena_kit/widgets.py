"""An ipywidgets form for txt2img/img2img, and the function that turns widget values into an engine request.

The form only builds a processing object (`request_from_widgets`) and runs it through `process_images`; its live
preview shows what modules.previews makes from the latents the job's state reports.
The Generate button runs the job in a background thread, so the kernel stays free to take the Interrupt click
and to run other cells; `form.generate()` is the same job, synchronous, for notebooks run headless and tests.
"""

from __future__ import annotations

import datetime
import html
import threading
from collections.abc import Mapping

from PIL import Image

from modules import controlnet, generation_fields, images, previews, sd_models, sd_samplers, upscalers
from modules.control_units import CONTROL_MODES, NO_MODEL, RUNNABLE_PREPROCESSORS, ControlNetUnit
from modules.field_types import Choice, OneOf, SamplerName, ScheduleType, UpscalerName
from modules.grids import upscale_for_display
from modules.processing import (
    Processed,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
    process_images,
)
from modules.runtime.runner import ProcessingRequest
from modules.runtime.state import GenerationState
from serena_kit.attention import attention_overlay
from serena_kit.extras import require

w = require("ipywidgets", "The widget form (GenerationForm)")

INIT_IMAGE = "init_image"  # one image from the upload widget; present means img2img
MASK = "mask"  # img2img's inpainting mask, also from an upload widget
CONTROL_IMAGE = "control_image"  # the form's ControlNet unit's image
CAPTION_STYLE = (
    "white-space: pre-wrap; word-break: normal; overflow-wrap: break-word; font-size: 10px; line-height: 1.3; margin: 0"
)
IMAGE_ITSELF = "(the image)"  # the attention menu's entry that shows the images themselves
MAX_PREVIEW_EVERY = 1000  # the steps field's own bound


def form_fields() -> list[generation_fields.GenerationField]:
    """The fields the form shows: those declared with a widget (txt2img's and img2img's); every other field is fixed
    when the form is made."""
    return [declaration for declaration in mode_fields() if declaration.widget]


def mode_fields() -> list[generation_fields.GenerationField]:
    """The fields of txt2img or img2img, in declaration order."""
    names = {declaration.name for mode in generation_fields.MODES for declaration in generation_fields.fields_for(mode)}
    return [declaration for declaration in generation_fields.FIELDS if declaration.name in names]


def processing_field_names() -> list[str]:
    """Fields a widget state may set: txt2img's and img2img's, init images coming as `init_image`."""
    return [declaration.name for declaration in mode_fields() if declaration.name != "init_images"]


def image_from(value, field: str = INIT_IMAGE) -> Image.Image | None:
    """The image of a FileUpload value (a tuple of file dicts), or of anything modules.images.open_image takes
    (a PIL image, image-file bytes, a path); None for an empty upload."""
    if value is None or (isinstance(value, (tuple, list)) and len(value) == 0):
        return None
    if isinstance(value, (tuple, list)) and isinstance(value[0], Mapping) and "content" in value[0]:
        value = value[0]["content"]
    return images.open_image(value, field)


def request_from_widgets(state) -> ProcessingRequest:
    """A validated ProcessingRequest from widget values: a dict keyed by processing field names (plus
    `init_image`, which makes it img2img), or a GenerationForm.

    A control's stand-in for None (width 0: the model's native size) means None; the form's img2img controls
    (denoising strength, noise multiplier) are ignored without an init image. Unknown names and invalid values raise
    the engine's ValueError/TypeError naming the field.
    """
    values = dict(state.widget_state() if isinstance(state, GenerationForm) else state)
    known = processing_field_names()
    unknown = sorted(set(values) - set(known) - {INIT_IMAGE})
    if unknown:
        raise ValueError(f"{unknown[0]}: not a generation parameter; valid: {', '.join([*known, INIT_IMAGE])}")
    init_image = image_from(values.pop(INIT_IMAGE, None))
    if MASK in values:
        values[MASK] = image_from(values[MASK], MASK)
    for declaration in form_fields():
        if declaration.widget.none_as is not None and values.get(declaration.name) == declaration.widget.none_as:
            values[declaration.name] = None
    mode = "txt2img" if init_image is None else "img2img"
    mode_names = {declaration.name for declaration in generation_fields.fields_for(mode)}
    for declaration in form_fields():  # the other mode's controls are left out
        if declaration.name not in mode_names:
            values.pop(declaration.name, None)
    other_mode_only = sorted(name for name in set(values) - mode_names if values[name] is not None)
    if other_mode_only:
        need = f"give an {INIT_IMAGE} too" if mode == "txt2img" else f"leave out the {INIT_IMAGE}"
        raise ValueError(f"{other_mode_only[0]}: only used by {'img2img' if mode == 'txt2img' else 'txt2img'}; {need}")
    values = {name: value for name, value in values.items() if name in mode_names}
    if init_image is None:
        p = StableDiffusionProcessingTxt2Img(**values)
    else:
        p = StableDiffusionProcessingImg2Img(init_images=[init_image], **values)
    p.validate()
    return ProcessingRequest(p)


def check_starting_values(values: dict) -> None:
    """The engine's checks on a form's starting values: bounded widgets would clamp bad ones silently."""
    placeholder = Image.new("RGB", (8, 8))
    for mode, extra in (("txt2img", {}), ("img2img", {INIT_IMAGE: placeholder})):
        names = {declaration.name for declaration in generation_fields.fields_for(mode)}
        request_from_widgets({name: value for name, value in values.items() if name in names} | extra)


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
    """Prompt, sampler, steps, CFG, size, seed, batch and img2img inputs; Generate and Interrupt; progress; a live
    preview; gallery.

    Keyword arguments set the form's starting values (for `form_fields()`) or fix other processing fields for every
    generation (e.g. `sd_model_checkpoint=...`, `do_not_save_samples=True`). `form.result` is the last Processed.
    `preview_every`: show the image being sampled every that many steps (0: no preview; a control in the form),
    at the gallery's size, until the result replaces it; small latents (the project's models) are VAE-decoded for
    it, larger ones go through `preview_map` (a fitted latent-to-RGB map), else the model's committed map, else a
    decode.
    """

    def __init__(
        self,
        display_size: int = 128,
        preview_every: int = 5,
        preview_map: previews.LatentRGBMap | None = None,
        **fields,
    ):
        if not isinstance(preview_every, int) or not 0 <= preview_every <= MAX_PREVIEW_EVERY:
            raise ValueError(
                f"preview_every: {preview_every!r} is not allowed; allowed 0..{MAX_PREVIEW_EVERY} (0: off)"
            )
        known = processing_field_names()
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a generation parameter; valid: {', '.join(known)}")
        shown = [declaration.name for declaration in form_fields()]
        start = {declaration.name: declaration.default for declaration in form_fields()}
        start |= {name: value for name, value in fields.items() if name in shown}
        self.fixed = {name: value for name, value in fields.items() if name not in shown}
        check_starting_values(start | self.fixed)
        start["sampler_name"], start["scheduler"] = sd_samplers.canonical_names(
            start["sampler_name"], start["scheduler"]
        )
        self.display_size = display_size
        self.preview_map = preview_map
        self.result: Processed | None = None
        self.error: Exception | None = None
        self._state: GenerationState | None = None  # the running job's
        self._interrupt_requested = False
        self._thread: threading.Thread | None = None
        self._build_widgets(start)
        self.preview_every.value = preview_every

    def _field_control(self, declaration: generation_fields.GenerationField, start: dict) -> w.DOMWidget:
        """The control a field's declaration asks for, starting at `start`'s value for it."""
        spec, kind = declaration.widget, declaration.kind
        value = spec.none_as if start[declaration.name] is None else start[declaration.name]
        options = {"description": self._label(declaration, start), "style": {"description_width": "initial"}}
        options |= dict(spec.options)
        if spec.control == "text area":
            return w.Textarea(value, layout=w.Layout(width="100%"), **options)
        if spec.control == "dropdown":
            return w.Dropdown(options=self._choices(kind, start), value=value, **options)
        if spec.control == "int":
            return w.IntText(value, **options)
        if spec.control == "checkbox":
            return w.Checkbox(bool(value), indent=False, **options)
        if spec.control == "bounded int":
            # Not a BoundedIntText: it silently clamps what is typed (Steps 0 became 1). Out-of-range values reach
            # the engine's check, whose error the form shows, as code gets it.
            return w.IntText(value, **{name: option for name, option in options.items() if name not in ("min", "max")})
        low, high = kind.bounds()
        options = {"min": low, "max": high} | options
        options["max"] = max(options["max"], value)  # a starting value above the slider's usual range stays as given
        return w.FloatSlider(value, **options)

    def _label(self, declaration: generation_fields.GenerationField, start: dict) -> str:
        """The field's label; a size whose 0 means the model's native size says what that is."""
        if declaration.name not in ("width", "height"):
            return declaration.label
        try:
            checkpoint = (start | self.fixed).get("sd_model_checkpoint")
            native = sd_models.configured_native_size(sd_models.resolve_checkpoint(checkpoint))
        except ValueError:  # a checkpoint the engine will name in its error when the form generates
            native = None
        return f"{declaration.label} (0: native{f' {native}' if native else ''})"

    @staticmethod
    def _choices(kind, start: dict):
        """A dropdown's options for a field of this kind (schedule types: those the starting sampler supports)."""
        if isinstance(kind, SamplerName):
            return sd_samplers.SAMPLER_NAMES
        if isinstance(kind, ScheduleType):
            return sd_samplers.supported_schedule_types(start["sampler_name"])
        if isinstance(kind, Choice):
            return [(name, code) for code, name in kind.options]
        if isinstance(kind, UpscalerName):
            return upscalers.names()
        if isinstance(kind, OneOf):
            return list(kind.names)
        raise TypeError(f"{type(kind).__name__} fields have no dropdown")

    def _build_widgets(self, start: dict) -> None:
        rows: dict[int, list] = {}
        for declaration in form_fields():
            control = self._field_control(declaration, start)
            control.add_class("serena-" + declaration.name.replace("_", "-"))  # for browser tests and custom styling
            setattr(self, declaration.name, control)
            rows.setdefault(declaration.widget.row, []).append(control)
        self.sampler_name.observe(self._offer_schedules_of_sampler, names="value")
        self.random_seed_button = w.Button(description="Random", icon="dice", tooltip="Seed -1: a new one each time")
        self.reuse_seed_button = w.Button(
            description="Reuse last", icon="recycle", tooltip="The seed of the last result", disabled=True
        )
        self.random_seed_button.on_click(lambda _: setattr(self.seed, "value", -1))
        self.reuse_seed_button.on_click(lambda _: self.reuse_last_seed())
        rows[generation_fields.declaration_of("seed").widget.row] += [self.random_seed_button, self.reuse_seed_button]
        self.init_image = w.FileUpload(
            accept="image/*", multiple=False, description="Init image", tooltip="An image to start from: img2img"
        )
        self.clear_image_button = w.Button(description="Clear image", icon="times")
        self.clear_image_button.on_click(lambda _: self.set_init_image(None))
        self.mask_image = w.FileUpload(
            accept="image/*", multiple=False, description="Mask", tooltip="White: repaint, black: keep (inpainting)"
        )
        self.clear_mask_button = w.Button(description="Clear mask", icon="times")
        self.clear_mask_button.on_click(lambda _: self.set_mask(None))
        img2img_row = rows[generation_fields.declaration_of("denoising_strength").widget.row]
        img2img_row[:0] = [self.init_image, self.clear_image_button, self.mask_image, self.clear_mask_button]
        control_row = self._build_control_widgets()
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="play")
        self.generate_button.add_class("serena-generate")
        self.generate_button.on_click(self.on_generate_clicked)
        self.interrupt_button = w.Button(description="Interrupt", button_style="warning", icon="stop", disabled=True)
        self.interrupt_button.add_class("serena-interrupt")
        self.interrupt_button.on_click(lambda _: self.interrupt())
        self.progress = w.IntProgress(0, min=0, max=100, description="Progress").add_class("serena-progress")
        self.progress_text = w.Label("").add_class("serena-progress-text")
        self.status = w.HTML("").add_class("serena-status")
        self.preview_every = w.BoundedIntText(
            0,
            min=0,
            max=MAX_PREVIEW_EVERY,
            description="Preview every",
            style={"description_width": "initial"},  # the default width cut it to "Preview e..."
            tooltip="Show the image being sampled every N steps; 0: off",
        ).add_class("serena-preview-every")
        self.attention_maps = w.Checkbox(
            False,
            description="Attention maps",
            indent=False,
            tooltip="Capture each word's cross-attention map (the images do not change); pick a word to see it",
        ).add_class("serena-attention-maps")
        self.attention_word = w.Dropdown(
            options=[(IMAGE_ITSELF, -1)], value=-1, description="Show", disabled=True
        ).add_class("serena-attention-word")
        self.attention_word.observe(self._show_attention_word, names="value")
        self._shown_samples: list[Image.Image] = []
        self._pictures: list[w.Image] = []
        self.preview = w.Image(format="png", layout=w.Layout(display="none")).add_class("serena-preview")
        self.preview_caption = w.Label("").add_class("serena-preview-caption")
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap")).add_class("serena-gallery")
        self.root = w.VBox(
            [w.HBox(row) if len(row) > 1 else row[0] for _, row in sorted(rows.items())]
            + [
                control_row,
                w.HBox([self.generate_button, self.interrupt_button, self.progress, self.progress_text]),
                w.HBox([self.preview_every, self.attention_maps, self.attention_word]),
                self.status,
                w.VBox([self.preview, self.preview_caption]),
                self.gallery,
            ]
        ).add_class("serena-form")

    def _build_control_widgets(self) -> w.HBox:
        """One ControlNet unit: its image, model, preprocessor, weight, start/end and control mode (a unit acts when
        it has an image and a model; more units: pass `controlnet_units` to the form)."""
        style = {"description_width": "initial"}
        self.control_image = w.FileUpload(
            accept="image/*", multiple=False, description="Control image", tooltip="The ControlNet unit's image"
        ).add_class("serena-control-image")
        self.control_model = w.Dropdown(
            options=[NO_MODEL, *controlnet.list_controlnets()], value=NO_MODEL, description="ControlNet", style=style
        ).add_class("serena-control-model")
        self.control_module = w.Dropdown(
            options=RUNNABLE_PREPROCESSORS, value="none", description="Preprocessor", style=style
        ).add_class("serena-control-module")
        self.control_weight = w.FloatSlider(1.0, min=0.0, max=2.0, step=0.05, description="Control weight", style=style)
        self.control_steps = w.FloatRangeSlider(
            value=(0.0, 1.0), min=0.0, max=1.0, step=0.05, description="Start / end", style=style
        )
        self.control_mode = w.Dropdown(options=CONTROL_MODES, value=CONTROL_MODES[0], description="Mode", style=style)
        controls = [self.control_image, self.control_model, self.control_module, self.control_weight]
        return w.HBox([*controls, self.control_steps, self.control_mode]).add_class("serena-controlnet")

    def control_unit(self) -> ControlNetUnit | None:
        """The form's ControlNet unit, or None while it has no image or no model."""
        image = image_from(self.control_image.value, CONTROL_IMAGE)
        if image is None or self.control_model.value == NO_MODEL:
            return None
        start, end = self.control_steps.value
        return ControlNetUnit(
            model=self.control_model.value,
            image=image,
            module=self.control_module.value,
            weight=self.control_weight.value,
            guidance_start=start,
            guidance_end=end,
            control_mode=self.control_mode.value,
        )

    def set_control_image(self, image: Image.Image | None) -> None:
        """Put the ControlNet unit's image in its upload widget (None clears it), as if uploaded."""
        self.control_image.value = upload_value_for(image) if image is not None else ()

    def _offer_schedules_of_sampler(self, change) -> None:
        supported = sd_samplers.supported_schedule_types(change["new"])
        current = self.scheduler.value
        self.scheduler.options = supported
        self.scheduler.value = current if current in supported else "Automatic"

    # Values and requests

    def widget_state(self) -> dict:
        """The form's values by processing field name, the fixed fields, and `init_image` when one is uploaded."""
        values = {declaration.name: getattr(self, declaration.name).value for declaration in form_fields()}
        values = values | self.fixed
        image = image_from(self.init_image.value)
        if image is not None:
            values[INIT_IMAGE] = image
        mask = image_from(self.mask_image.value, MASK)
        if mask is not None:
            values[MASK] = mask
        if (unit := self.control_unit()) is not None:
            values["controlnet_units"] = [*values.get("controlnet_units", []), unit]
        return values

    def set_init_image(self, image: Image.Image | None) -> None:
        """Put an image in the upload widget (None clears it): img2img from code, as if uploaded."""
        self.init_image.value = upload_value_for(image) if image is not None else ()

    def set_mask(self, mask: Image.Image | None) -> None:
        """Put an inpainting mask in its upload widget (None clears it), as if uploaded."""
        self.mask_image.value = upload_value_for(mask) if mask is not None else ()

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
        if self.attention_maps.value:
            request.processing.attention = True
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
        self._hide_preview()  # until its first frame: an empty image widget draws a broken-image icon
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
        every = self.preview_every.value
        if every and state.sampling_step % every == 0 and state.current_latent is not None:
            self._show_preview(state, batch)

    def _show_preview(self, state: GenerationState, batch: str) -> None:
        model, latents = state.current_model, state.current_latent
        image = previews.live_preview(model, latents, self.preview_map)
        # At the gallery's size, smoothed: a latent-sized map preview is a mosaic when blown up by whole pixels.
        scale = self.display_size / max(image.size)
        shown = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        self.preview.layout.width, self.preview.layout.display = f"{shown.width}px", None
        self.preview.value = images.png_bytes(shown, None, compress_level=1)
        self.preview_caption.value = f"Preview · step {state.sampling_step}/{state.sampling_steps}{batch}"

    def _hide_preview(self) -> None:
        self.preview.value, self.preview_caption.value = b"", ""
        self.preview.layout.display = "none"

    def _show_result(self, result: Processed) -> None:
        self._hide_preview()  # the result replaces it
        self.result = result
        self.reuse_seed_button.disabled = False
        samples = result.images[result.index_of_first_image :]
        infotexts = result.infotexts[result.index_of_first_image :]
        self._shown_samples, self._pictures = list(samples), []
        self.gallery.children = [self._gallery_card(image, text) for image, text in zip(samples, infotexts)]
        self._offer_attention_words(result)
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
        self._pictures.append(picture)
        # Lines break between words (JupyterLab's output <pre> breaks anywhere: "Model: sere|na-default").
        caption = w.HTML(f'<pre style="{CAPTION_STYLE}">{html.escape(infotext)}</pre>').add_class("serena-infotext")
        return w.VBox([picture, caption], layout=w.Layout(width=f"{max(shown.width, 180)}px", margin="4px"))

    def _offer_attention_words(self, result: Processed) -> None:
        """The words of the first image's prompt in the "Show" menu (each image shows its own word at that place)."""
        words = (
            [(word, index) for index, (word, _) in enumerate(result.attention_maps[0].words)]
            if (result.attention_maps)
            else []
        )
        self.attention_word.unobserve(self._show_attention_word, names="value")
        self.attention_word.options = [(IMAGE_ITSELF, -1), *words]
        self.attention_word.value = -1
        self.attention_word.observe(self._show_attention_word, names="value")
        self.attention_word.disabled = not words

    def _show_attention_word(self, change=None) -> None:
        """Each gallery image, or the chosen word's attention map over it."""
        word = self.attention_word.value
        maps = self.result.attention_maps if self.result is not None else []
        for position, (picture, image) in enumerate(zip(self._pictures, self._shown_samples)):
            if word >= 0 and position < len(maps) and word < len(maps[position].words):
                shown = attention_overlay(image, maps[position].word_map(word), min_side=None)
            else:
                shown = image
            picture.value = images.png_bytes(upscale_for_display(shown, self.display_size), None)

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
