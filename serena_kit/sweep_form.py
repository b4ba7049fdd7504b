"""The sweep widget: up to three axes typed in the webui's X/Y/Z syntax, a grid that fills in as cells finish, and
the equivalent `sk.sweep(...)` call as code.

    form = sk.SweepForm({"prompt": "a red circle on a blue background", "steps": 20})
    form                      # choose axes, type values, press Run (or form.set_axis("x", "cfg_scale", "3-12 [4]"))
    form.run()                # the same, synchronous (headless notebooks, tests)
    form.result               # the SweepResult
    print(form.code())        # the sweep as code, random seeds resolved, so it makes the same images

The form only parses and shows: the sweep is `serena_kit.sweeps.sweep`, on the local executor or on Ray
(`SweepForm(base, executor="ray", workers=2, gpus_per_worker=0)`).
"""

from __future__ import annotations

import dataclasses
import html
import threading
import time

from PIL import Image

from modules import generation_fields, images
from modules.grids import upscale_for_display
from modules.processing import StableDiffusionProcessing, StableDiffusionProcessingImg2Img, process_images
from modules.sweeps import axes as sweep_axes
from modules.sweeps import run as sweep_run
from serena_kit import sweeps
from serena_kit.extras import require
from serena_kit.sweep_values import parse_values, typable_axes

w = require("ipywidgets", "The sweep widget (SweepForm)")

POSITIONS = ("x", "y", "z")
NO_AXIS = "(none)"
PLACEHOLDER_GREY = (200, 200, 200)
MIN_Y_LABEL_WIDTH = 120  # px: the grid's first column (the y axis's labels, and an empty cell above them)
LABEL_CHAR_PX = 8  # room per character of a label in JupyterLab's 13 px UI font, with some to spare
RAY_OPTIONS = ("ray_address", "workers", "gpus_per_worker")  # sweep()'s, passed through


class SweepInterrupted(Exception):
    """Raised from the sweep's cell callback to stop it after the cell that just finished."""


@dataclasses.dataclass(frozen=True)
class Speed:
    """This model's measured speed at the base's size: seconds per sampling step and per image besides steps."""

    seconds_per_step: float
    seconds_per_image: float
    width: int
    height: int

    def seconds_for(self, cells: list[StableDiffusionProcessing]) -> float:
        """One cell at a time; batched cells run faster, so this is an upper estimate."""
        total = 0.0
        for p in cells:
            pixels = ((p.width or self.width) * (p.height or self.height)) / (self.width * self.height)
            total += (self.seconds_per_image + p.steps * self.seconds_per_step) * pixels
        return total


def measure_speed(base: StableDiffusionProcessing, steps: tuple[int, int] = (1, 3)) -> Speed:
    """Time two one-image generations of `base` (steps[0] and steps[1] steps) after a warm-up that loads the model:
    their difference is the cost of the extra steps, the rest the cost of an image."""
    probe = dataclasses.replace(base, batch_size=1, n_iter=1, do_not_save_samples=True, do_not_save_grid=True)
    probe = dataclasses.replace(probe, seed=0 if probe.seed == -1 else probe.seed, subseed=0)
    process_images(dataclasses.replace(probe, steps=steps[0]))  # loads the model
    seconds = []
    for count in steps:
        start = time.perf_counter()
        result = process_images(dataclasses.replace(probe, steps=count))
        seconds.append(time.perf_counter() - start)
    per_step = max((seconds[1] - seconds[0]) / (steps[1] - steps[0]), 0.0)
    first = result.images[result.index_of_first_image]
    return Speed(per_step, max(seconds[0] - steps[0] * per_step, 0.0), first.width, first.height)


def base_literal(base: StableDiffusionProcessing) -> str:
    """`base` as the dict of its image-affecting fields that differ from their defaults."""
    mode = "img2img" if isinstance(base, StableDiffusionProcessingImg2Img) else "txt2img"
    changed = {
        declaration.name: getattr(base, declaration.name)
        for declaration in generation_fields.fields_for(mode)
        if declaration.affects_image
        and declaration.name != "init_images"
        and getattr(base, declaration.name) != declaration.default_for(mode)
    }
    lines = "".join(f"        {name!r}: {value!r},\n" for name, value in changed.items())
    return "{\n" + lines + "    }"


class SweepForm:
    """Three axes (a field from a dropdown, values typed as in the webui's X/Y/Z plot) over `base` (a processing
    object or a dict of txt2img fields); cell count and time estimate; Run, Interrupt, Show code; a progress bar
    over cells; the labelled grid, filled as cells finish; a cell's button shows it large with its infotext.

    `executor`, `workers`, `gpus_per_worker`, `ray_address`: as for `sweep()`. `measure=False` skips timing the
    model when the form is made (no time estimate then).
    """

    def __init__(
        self,
        base,
        *,
        executor: str = "local",
        display_size: int = 96,
        measure: bool = True,
        **ray_options,
    ):
        self.base = sweep_axes.base_processing(base)
        self.base.validate()
        if executor not in ("local", "ray"):
            raise ValueError(f"executor: expected 'local' or 'ray', got {executor!r}")
        unknown = sorted(set(ray_options) - set(RAY_OPTIONS))
        if unknown:
            raise ValueError(f"{unknown[0]}: not an option of the form; valid: {', '.join(RAY_OPTIONS)}")
        self.executor = executor
        self.ray_options = ray_options
        self.display_size = display_size
        self.axes_offered = typable_axes(self.base)
        self.speed = measure_speed(self.base) if measure else None
        self.result: sweeps.SweepResult | None = None
        self.error: Exception | None = None
        self.completed = 0
        self._plan: tuple | None = None  # (resolved base, {position: (name, values)}) of the last run
        self._interrupt_requested = False
        self._thread: threading.Thread | None = None
        self._build_widgets()
        self.refresh()

    # Axes

    def set_axis(self, position: str, name: str | None, values: str = "") -> None:
        """Choose an axis and type its values, as a user would (None: no axis there)."""
        if position not in POSITIONS:
            raise ValueError(f"position: expected one of {', '.join(POSITIONS)}, got {position!r}")
        if name is not None and name not in self.axes_offered:
            raise ValueError(f"{position}: {name!r} cannot be swept here; valid: {', '.join(self.axes_offered)}")
        self.axis_name[position].value = name or NO_AXIS
        self.axis_values[position].value = values

    def parsed_axes(self) -> dict[str, tuple[str, list] | Exception | None]:
        """Per position: (name, values), the error its text gives, or None for no axis."""
        parsed = {}
        for position in POSITIONS:
            name = self.axis_name[position].value
            if name == NO_AXIS:
                parsed[position] = None
                continue
            try:
                values = parse_values(name, self.axis_values[position].value, self.base)
                sweep_axes.parse_axis(position, (name, values), self.base, draw=lambda key: -1)  # Prompt S/R's checks
                parsed[position] = (name, values)
            except (ValueError, TypeError) as error:
                parsed[position] = error
        return parsed

    def axes_or_error(self) -> dict[str, tuple[str, list]]:
        """The axes to sweep; ValueError naming the first axis in error."""
        parsed = self.parsed_axes()
        for position, value in parsed.items():
            if isinstance(value, Exception):
                raise ValueError(f"{position}: {value}") from value
        axes = {position: value for position, value in parsed.items() if value is not None}
        names = [name for name, _ in axes.values() if name != sweep_axes.PROMPT_SR]
        if len(set(names)) != len(names):
            raise ValueError(f"sweep: a parameter appears on two axes ({', '.join(names)})")
        return axes

    def cell_count(self) -> int:
        count = 1
        for value in self.parsed_axes().values():
            if isinstance(value, tuple):
                count *= len(value[1])
        return count

    def estimate_seconds(self) -> float | None:
        """Seconds the distinct cells take one at a time at the measured speed (None without a measurement)."""
        if self.speed is None:
            return None
        axes = self.axes_or_error()
        parsed = [
            sweep_axes.parse_axis(position, axes.get(position), self.base, draw=lambda key: 0) for position in POSITIONS
        ]
        _, distinct = sweep_run.plan_cells(self.base, parsed)
        return self.speed.seconds_for(distinct)

    # Running

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def resolved_call(self) -> tuple[StableDiffusionProcessing, dict[str, tuple[str, list]]]:
        """The base and axes with every random (-1) seed drawn, so the call (and its code) repeats exactly."""
        axes = self.axes_or_error()
        parsed = {position: sweep_axes.parse_axis(position, spec, self.base) for position, spec in axes.items()}
        base = sweep_axes.with_fixed_seeds(self.base, list(parsed.values()))
        if base.subseed_strength == 0:  # an unused variation seed stays as given: no noise in the code
            base = dataclasses.replace(base, subseed=self.base.subseed)
        return base, {position: (axes[position][0], list(parsed[position].values)) for position in axes}

    def run(self) -> sweeps.SweepResult | None:
        """Run the sweep the form describes and fill the grid; blocks. Returns the result (None if interrupted).
        Errors are shown in the form and raised."""
        try:
            base, axes = self.resolved_call()
        except (ValueError, TypeError) as error:
            self._show_error(error)
            raise
        self._plan = (base, axes)
        self._start(axes)
        try:
            self.result = sweeps.sweep(
                base, **axes, executor=self.executor, on_cell=self._cell_finished, **self.ray_options
            )
        except SweepInterrupted:
            self.status.value = f"Interrupted: {self.completed} of {self.progress.max} cells finished."
            return None
        except Exception as error:
            self._show_error(error)
            raise
        finally:
            self._finish()
        self.status.value = f"Done: {len(self.result.cells)} cells, {self.result.generated_count} generated."
        return self.result

    def on_run_clicked(self, _button=None) -> threading.Thread:
        """The Run button: the sweep in a background thread (returned), so Interrupt stays clickable."""
        if self.running:
            return self._thread
        self._thread = threading.Thread(target=self._run_keeping_errors, name="serena-sweep", daemon=True)
        self._thread.start()
        return self._thread

    def _run_keeping_errors(self) -> None:
        try:
            self.run()
        except Exception as error:  # already shown in the form; a thread has nobody to raise to
            self.error = error

    def interrupt(self) -> None:
        """Stop after the cells (the batch) now being generated; the grid keeps what finished."""
        self._interrupt_requested = True

    def _cell_finished(self, cell: sweep_run.SweepCell) -> None:
        slot = self._slots.get((cell.x, cell.y, cell.z))
        if slot is not None:
            shown = upscale_for_display(cell.image, self.display_size)
            slot["image"].value = images.png_bytes(shown, None)
            slot["button"].disabled = False
            slot["cell"] = cell
        self.completed += 1
        self.progress.value = self.completed
        self.progress_text.value = f"{self.completed}/{self.progress.max} cells"
        if self._interrupt_requested:
            raise SweepInterrupted

    # Code

    def code(self) -> str:
        """The sweep as an `sk.sweep(...)` call: the last run's (random seeds resolved), else the form's now."""
        if self._plan is not None:
            base, axes = self._plan
        else:
            base, axes = self.base, self.axes_or_error()
        if isinstance(base, StableDiffusionProcessingImg2Img):  # its init images have no literal
            arguments = ["    base,  # the img2img job the form was made with"]
        else:
            arguments = [f"    {base_literal(base)},"]
        arguments += [f"    {position}=({name!r}, {values!r})," for position, (name, values) in axes.items()]
        if self.executor != "local":
            arguments.append(f"    executor={self.executor!r},")
        arguments += [f"    {name}={value!r}," for name, value in self.ray_options.items()]
        return "import serena_kit as sk\n\nresult = sk.sweep(\n" + "\n".join(arguments) + "\n)\n"

    # Widgets

    def _build_widgets(self) -> None:
        options = [(NO_AXIS, NO_AXIS)] + [(f"{label} ({name})", name) for name, label in self.axes_offered.items()]
        self.axis_name, self.axis_values, self.axis_preview = {}, {}, {}
        rows = []
        for position in POSITIONS:
            name = w.Dropdown(options=options, value=NO_AXIS, description=f"{position.upper()} axis")
            values = w.Text("", placeholder="1-5, 1-5 (+2), 10-30 [5], a, b", description="values")
            preview = w.HTML("")
            for widget, role in ((name, "name"), (values, "values"), (preview, "preview")):
                widget.add_class(f"serena-axis-{position}-{role}")
            name.observe(lambda change, values=values: self._axis_chosen(change, values), names="value")
            values.observe(lambda _change: self._axes_changed(), names="value")
            self.axis_name[position], self.axis_values[position], self.axis_preview[position] = name, values, preview
            rows.append(w.HBox([name, values, preview]))
        self.summary = w.HTML("").add_class("serena-sweep-summary")
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.run_button.add_class("serena-sweep-run")
        self.run_button.on_click(self.on_run_clicked)
        self.interrupt_button = w.Button(description="Interrupt", button_style="warning", icon="stop", disabled=True)
        self.interrupt_button.add_class("serena-sweep-interrupt")
        self.interrupt_button.on_click(lambda _: self.interrupt())
        self.code_button = w.Button(description="Show code", icon="code").add_class("serena-sweep-show-code")
        self.code_button.on_click(lambda _: self.show_code())
        self.progress = w.IntProgress(0, min=0, max=1, description="Cells").add_class("serena-sweep-progress")
        self.progress_text = w.Label("").add_class("serena-sweep-progress-text")
        self.status = w.HTML("").add_class("serena-sweep-status")
        self.code_view = w.HTML("").add_class("serena-sweep-code")
        self.grid = w.HBox(layout=w.Layout(flex_flow="row wrap")).add_class("serena-sweep-grid")
        self.detail_image = w.Image(format="png").add_class("serena-sweep-detail-image")
        self.detail_text = w.HTML("").add_class("serena-sweep-detail-text")
        # Hidden until a cell is shown: an image widget without a value is drawn as a broken image.
        self.detail = w.HBox([self.detail_image, self.detail_text], layout=w.Layout(display="none"))
        self.detail.add_class("serena-sweep-detail")
        self._slots: dict[tuple, dict] = {}
        self.root = w.VBox(
            rows
            + [
                self.summary,
                w.HBox([self.run_button, self.interrupt_button, self.code_button, self.progress, self.progress_text]),
                self.status,
                self.code_view,
                self.grid,
                self.detail,
            ]
        ).add_class("serena-sweep-form")

    def _axis_chosen(self, change, values: w.Text) -> None:
        if change["new"] == NO_AXIS:
            values.value = ""  # an axis turned off keeps no values that would come back with the next choice
        self._axes_changed()

    def _axes_changed(self) -> None:
        """The last run's code (its seeds resolved) no longer describes the form once an axis changes."""
        if not self.running:
            self._plan = None
            self.code_view.value = ""
        self.refresh()

    def refresh(self) -> None:
        """Show each axis's parsed values (or its error) and the cell count and time estimate."""
        parsed = self.parsed_axes()
        for position, value in parsed.items():
            preview = self.axis_preview[position]
            if value is None:
                preview.value = ""
            elif isinstance(value, Exception):
                preview.value = f'<span style="color: #b00020">{html.escape(str(value))}</span>'
            else:
                preview.value = html.escape(", ".join(map(str, value[1])))
        errors = [position for position, value in parsed.items() if isinstance(value, Exception)]
        if errors:
            self.summary.value = f"Fix the values of the {', '.join(errors)} axis before running."
            self.run_button.disabled = True
            return
        self.run_button.disabled = self.running
        cells = self.cell_count()
        try:
            seconds = self.estimate_seconds()
        except (ValueError, TypeError) as error:
            self.summary.value = f'<span style="color: #b00020">{html.escape(str(error))}</span>'
            self.run_button.disabled = True
            return
        estimate = f" · about {seconds:.1f} s at this model's measured speed" if seconds is not None else ""
        self.summary.value = f"{cells} cell{'s' if cells != 1 else ''}{estimate}"

    def show_code(self) -> None:
        try:
            self.code_view.value = f"<pre>{html.escape(self.code())}</pre>"
        except ValueError as error:
            self._show_error(error)

    def _start(self, axes: dict[str, tuple[str, list]]) -> None:
        self.error = None
        self._interrupt_requested = False
        self.completed = 0
        self.result = None
        cells = 1
        for _, values in axes.values():
            cells *= len(values)
        self.progress.max, self.progress.value = cells, 0
        self.progress_text.value = f"0/{cells} cells"
        self.status.value = "Running…"
        self.run_button.disabled, self.interrupt_button.disabled = True, False
        self.detail.layout.display = "none"  # a cell of the previous run is not one of this grid's
        self._lay_out_grid(axes)

    def _finish(self) -> None:
        self.run_button.disabled, self.interrupt_button.disabled = False, True

    def _lay_out_grid(self, axes: dict[str, tuple[str, list]]) -> None:
        """One labelled grid per z value (x across, y down) of grey placeholders; cells replace them as they come."""
        parsed = {
            position: sweep_axes.parse_axis(position, axes.get(position), self.base, draw=lambda key: -1)
            for position in POSITIONS
        }
        xs, ys, zs = (sweep_axes.axis_values(parsed[position]) for position in POSITIONS)
        placeholder = images.png_bytes(Image.new("RGB", (self.display_size,) * 2, PLACEHOLDER_GREY), None)
        width = f"{self.display_size + 8}px"
        self._slots = {}
        grids = []
        # The y labels' column is as wide as its longest label (a fixed width cut "Sampler: DPM++ 2M").
        y_label_width = (
            f"{max([MIN_Y_LABEL_WIDTH, *(LABEL_CHAR_PX * len(parsed['y'].label(y)) for y in ys if parsed['y'])])}px"
        )
        for z in zs:
            header = [w.Label("", layout=w.Layout(width=y_label_width))] + [  # the y labels' column
                w.Label(parsed["x"].label(x) if parsed["x"] else "", layout=w.Layout(width=width)) for x in xs
            ]
            rows = [w.HBox(header)]
            for y in ys:
                row = [w.Label(parsed["y"].label(y) if parsed["y"] else "", layout=w.Layout(width=y_label_width))]
                for x in xs:
                    image = w.Image(value=placeholder, format="png").add_class("serena-sweep-cell-image")
                    button = w.Button(description="show", disabled=True, layout=w.Layout(width=width))
                    button.add_class("serena-sweep-cell-button")
                    slot = {"image": image, "button": button, "cell": None}
                    button.on_click(lambda _button, slot=slot: self.show_cell(slot["cell"]))
                    self._slots[(x, y, z)] = slot
                    row.append(w.VBox([image, button]).add_class("serena-sweep-cell"))
                rows.append(w.HBox(row))
            title = w.HTML(f"<b>{html.escape(parsed['z'].label(z))}</b>" if parsed["z"] else "")
            grids.append(w.VBox([title, *rows], layout=w.Layout(margin="0 16px 0 0")))
        self.grid.children = grids

    def show_cell(self, cell: sweep_run.SweepCell | None) -> None:
        """Show a finished cell large, with its infotext."""
        if cell is None:
            return
        shown = upscale_for_display(cell.image, 256)
        self.detail_image.value = images.png_bytes(shown, None)
        self.detail_text.value = (
            f'<pre style="white-space: pre-wrap; font-size: 11px">{html.escape(cell.processed.info)}</pre>'
        )
        self.detail.layout.display = None

    def _show_error(self, error: Exception) -> None:
        self.status.value = f'<span style="color: #b00020">{html.escape(str(error))}</span>'

    # Display

    def __repr__(self) -> str:
        axes = ", ".join(
            f"{position}={self.axis_name[position].value}: {self.axis_values[position].value!r}"
            for position in POSITIONS
            if self.axis_name[position].value != NO_AXIS
        )
        return f"SweepForm({axes or 'no axes'}; {self.cell_count()} cells)"

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.root._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle
