"""`serena`, the command-line face. Generating commands build a processing object and call `process_images`.

stdout carries only results (the written file paths, one per line, or the listing asked for), so it pipes; the
progress bar and messages go to stderr. Exit codes: 0 success, 1 runtime failure, 2 bad input (one line naming the
option), 130 interrupted by Ctrl-C (the images finished before it are saved and printed first; a second Ctrl-C
aborts at once).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import modules  # noqa: F401  (portable CPU kernels: set before any command imports torch)
from modules import generation_fields
from modules.field_types import Flag
from serena_kit.extras import require

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_FIELD_MESSAGE = re.compile(r"^(\w+)(\[\d+\])?: (.*)$", re.DOTALL)


class UsageError(Exception):
    """Bad input: reported as one line naming the option, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def option_error(error: Exception) -> UsageError:
    """An engine validation error ("steps: ...") as a usage error naming the CLI option ("--steps: ...")."""
    match = _FIELD_MESSAGE.match(str(error))
    if match is None:
        return UsageError(str(error))
    field, index, detail = match.groups()
    declaration = generation_fields.by_name().get(field)
    option = declaration.cli_flag if declaration and declaration.cli else "--" + field.replace("_", "-")
    return UsageError(f"{option}{index or ''}: {detail}")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# Generation ---------------------------------------------------------------------------------------------------------


@contextmanager
def progress_bar(state, enabled: bool):
    """A tqdm bar on stderr over all steps of the job, fed by the job's step listener from its first step on."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    bars = []

    def update(state):
        total = state.job_count * state.sampling_steps
        if not bars:
            bars.append(tqdm(total=total, file=sys.stderr, unit="step", dynamic_ncols=True))
        bars[0].total = total
        bars[0].update(state.job_no * state.sampling_steps + state.sampling_step - bars[0].n)

    state.listeners.append(update)
    try:
        yield
    finally:
        state.listeners.remove(update)
        for bar in bars:
            bar.close()


@contextmanager
def interrupt_on_ctrl_c(state):
    """Ctrl-C while sampling interrupts the job (the engine keeps the finished images); before sampling starts, or a
    second time, it aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        if not state.running or state.interrupted:
            raise KeyboardInterrupt
        print("\nserena: interrupted; keeping the finished images (Ctrl-C again to abort)", file=sys.stderr)
        state.interrupt()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def generate(p, args):
    """Validate (usage errors name the option), run with a progress bar and Ctrl-C handling, print the paths."""
    from modules import attention_maps, trajectory
    from modules.processing import process_images

    try:
        p.validate()
    except (TypeError, ValueError) as error:
        raise option_error(error) from None
    if getattr(args, "attention_maps", False):
        p.attention = True
    if getattr(args, "trajectory", False):
        p.trajectory = True
    with progress_bar(p.state, not args.quiet), interrupt_on_ctrl_c(p.state):
        result = process_images(p)
    saved = attention_maps.save_beside_images(result.paths, result.attention_maps)
    saved += trajectory.save_beside_images(result.paths, result.trajectories)
    for path in result.paths + saved:
        print(path, flush=True)
    return result


def exit_status(p, result) -> int:
    if result.interrupted:
        count = len(result.all_seeds)
        print(f"serena: interrupted after {count} of {p.batch_size * p.n_iter} images", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def output_folders(outdir: str, kind: str) -> dict:
    return {
        "outpath_samples": str(Path(outdir) / f"{kind}-images"),
        "outpath_grids": str(Path(outdir) / f"{kind}-grids"),
    }


def processing_fields(args, kind: str) -> dict:
    """The processing fields the generation options give (an option not given leaves the field's default)."""
    fields = {}
    try:
        for declaration in generation_fields.fields_for(kind):
            if declaration.cli is not None and hasattr(args, declaration.name):
                value = getattr(args, declaration.name)
                fields[declaration.name] = declaration.kind.from_cli(value, declaration.cli_flag)
    except (TypeError, ValueError) as error:  # an init image that cannot be read
        raise UsageError(one_line(error)) from None
    return fields | output_folders(args.outdir, kind)


def read_infotext(path: str) -> str:
    from modules import images

    try:
        return images.read_infotext(path, field=path)
    except (TypeError, ValueError) as error:
        raise UsageError(one_line(error)) from None


def txt2img_command(args) -> int:
    from modules.processing import StableDiffusionProcessingTxt2Img

    p = StableDiffusionProcessingTxt2Img(**processing_fields(args, "txt2img"))
    return exit_status(p, generate(p, args))


def img2img_command(args) -> int:
    from modules.processing import StableDiffusionProcessingImg2Img

    p = StableDiffusionProcessingImg2Img(**processing_fields(args, "img2img"))
    return exit_status(p, generate(p, args))


def replay_command(args) -> int:
    from modules import images
    from modules.replay import ReplayWarning, processing_from_infotext

    text = read_infotext(args.file)
    try:
        init_images = [images.open_image(path, "--init-image") for path in args.init_image or ()] or None
        mask = {"mask": images.open_image(args.mask, "--mask")} if args.mask else {}
        control_images = [images.open_image(path, "--control-image") for path in args.control_image or ()] or None
    except (TypeError, ValueError) as error:
        raise UsageError(one_line(error)) from None
    if mask and not init_images:
        raise UsageError("--mask: an inpainting mask needs the --init-image it applies to")
    kind = "img2img" if init_images else "txt2img"
    save = args.save or not args.verify  # a check leaves no files behind unless asked to
    model = {"sd_model_checkpoint": args.model} if args.model else {}  # wins over the infotext's "Model"
    try:
        with warnings.catch_warnings(record=True) as caveats:
            warnings.simplefilter("always", ReplayWarning)
            p = processing_from_infotext(
                text,
                init_images,
                strict=args.strict,
                control_images=control_images,
                do_not_save_samples=not save,
                exact=args.exact,
                **output_folders(args.outdir, kind),
                **mask,
                **model,
            )
        p.validate()  # a bad value comes from the file, not from an option
    except (TypeError, ValueError) as error:
        raise UsageError(f"{args.file}: {one_line(error)}") from None
    for caveat in caveats:
        print(f"serena: warning: {one_line(caveat.message)}", file=sys.stderr)
    result = generate(p, args)
    status = exit_status(p, result)
    if args.verify and status == EXIT_OK:
        image = result.images[result.index_of_first_image]
        same = Path(args.file).read_bytes() == images.png_bytes(
            image, image.info["parameters"]
        )  # the bytes a save writes
        print(f"serena: replay {'is byte-identical to' if same else 'differs from'} {args.file}", file=sys.stderr)
        return EXIT_OK if same else EXIT_FAILURE
    return status


def png_info_command(args) -> int:
    text = read_infotext(args.file)
    if args.json:
        from modules.infotext import parse_infotext

        print(json.dumps(parse_infotext(text), ensure_ascii=False, indent=2))
    else:
        print(text)
    return EXIT_OK


def upscale_command(args) -> int:
    """Upscale image files (an upscaler's own scale, then fitted to --scale or --width/--height); prints each file."""
    from modules import images, upscalers

    try:
        upscalers.check_name("--upscaler", args.upscaler)
        if upscalers.is_latent(args.upscaler):
            raise ValueError(f"--upscaler: {args.upscaler} is a latent mode (hires fix only); give an image upscaler")
        if args.scale <= 0:
            raise ValueError(f"--scale: {args.scale} is not allowed; allowed above 0")
        if args.tile_overlap < 0 or (args.tile != 0 and args.tile <= args.tile_overlap):
            raise ValueError("--tile: 0 (no tiles) or more than --tile-overlap, which is 0 or more")
        sources = [images.open_image(path, path) for path in args.files]
    except (TypeError, ValueError) as error:
        raise UsageError(one_line(error)) from None
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for path, image in zip(args.files, sources):
        width = args.width or round(image.width * args.scale)
        height = args.height or round(image.height * args.scale)
        model = upscalers.model_files().get(args.upscaler)
        if model is not None:
            image = upscalers.upscale_with_model(image, model, args.tile, args.tile_overlap)
        upscaled = upscalers.upscale_image(image, width, height, "Lanczos" if model is not None else args.upscaler)
        target = outdir / f"{Path(path).stem}-{args.upscaler}.png"
        images.replace_file(target, images.png_bytes(upscaled, None))
        print(target, flush=True)
    return EXIT_OK


def upscalers_command(args) -> int:
    from modules import upscalers

    for info in upscalers.image_upscalers():
        print(f"{info.name}\t{info.scale:g}\t{info.model_path or ''}")
    return EXIT_OK


def samplers_command(args) -> int:
    from modules import sd_samplers

    for spec in sd_samplers.SAMPLERS:
        print(f"{spec.name}\t{', '.join(sd_samplers.supported_schedule_types(spec.name))}")
    return EXIT_OK


def models_command(args) -> int:
    from modules import sd_models

    folder = Path(args.models_dir) if args.models_dir else None
    for info in sd_models.list_checkpoints(folder):
        print(f"{info.title}\t{info.architecture}\t{info.path}")
    return EXIT_OK


def loras_command(args) -> int:
    from modules import extra_networks

    for name, network in extra_networks.list_loras().items():
        print(f"{name}\t{network.shorthash}\t{network.path}")
    return EXIT_OK


def embeddings_command(args) -> int:
    from modules import extra_networks, sd_models, textual_inversion

    listing = textual_inversion.list_for_model(sd_models.text_encoder_width())
    files = extra_networks.list_embeddings()
    for status, items in listing.items():
        for name, item in items.items():
            print(f"{name}\t{item['vectors']} vectors\t{status}\t{files[name].shorthash}\t{files[name].path}")
    return EXIT_OK


def serve_command(args) -> int:
    for module in ("fastapi", "uvicorn", "psutil"):
        require(module, "serena serve")
    from modules.api.app import create_app
    from modules.api.requests import ApiLimits
    from modules.api.security import parse_api_auth
    from modules.api.server import serve

    try:
        auth = parse_api_auth(args.api_auth) if args.api_auth else None
    except ValueError as error:
        raise UsageError(str(error)) from None
    limits = ApiLimits(
        max_width=args.max_size,
        max_height=args.max_size,
        max_images=args.max_images,
        max_steps=args.max_steps,
        max_request_bytes=args.max_request_mb * 2**20,
        **({"max_pixel_steps": args.max_pixel_steps} if args.max_pixel_steps else {}),
    )
    listening = args.host not in ("127.0.0.1", "localhost")
    server_flags = {"listen": listening, "port": args.port, "ckpt_dir": args.models_dir}
    app = create_app(
        outdir=args.outdir,
        models_dir=args.models_dir,
        auth=auth,
        limits=limits,
        server_flags={key: value for key, value in server_flags.items() if value is not None},
        allow_server_stop=args.api_server_stop,
    )
    try:
        serve(app, host=args.host, port=args.port, log_level=args.log_level)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: stopping a server is success
        pass
    if app.state.restart:  # POST /sdapi/v1/server-restart: the same command again, in this process's place
        os.execv(sys.executable, [sys.executable, "-m", "serena_kit", *sys.argv[1:]])
    return EXIT_OK


def sweep_command(args) -> int:
    """Run or resume a sweep spec: prints each cell's file, one per line, then the grid's; a summary goes to stderr."""
    import yaml

    from serena_kit.sweep_spec import load_spec, run_spec

    try:
        spec = load_spec(args.spec)
    except (OSError, ValueError, TypeError, yaml.YAMLError) as error:
        raise UsageError(f"{args.spec}: {one_line(error)}") from None
    try:
        result = run_spec(
            spec,
            ray_address=args.ray,
            workers=args.workers,
            gpus_per_worker=args.gpus_per_worker,
            outdir=args.outdir,
            progress=not args.quiet,
        )
    except (ValueError, TypeError) as error:  # every cell is checked before anything runs
        raise UsageError(f"{args.spec}: {one_line(error)}") from None
    files = dict.fromkeys(cell.processed.paths[0] for cell in result.cells)
    for path in files:
        print(path, flush=True)
    outdir = Path(args.outdir) if args.outdir else spec.outdir
    if spec.grid:
        print(outdir / spec.grid, flush=True)
    fresh = result.generated_count - result.resumed_count
    print(
        f"serena: {len(result.cells)} cells, {fresh} generated, {result.resumed_count} already in {outdir}",
        file=sys.stderr,
    )
    return EXIT_OK


def setting_values(option: str, text: str, base) -> tuple[str, list]:
    """`NAME=VALUES` of --set / --vary: the values read as a sweep axis typed in the webui's syntax reads them."""
    from modules.sweeps.axes import LORA_PREFIX
    from serena_kit.sweep_values import parse_values, split_entries

    name, equals, values = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise UsageError(f"{option}: expected NAME=VALUE[,VALUE...], got {text!r}")
    try:
        if name.startswith(LORA_PREFIX):
            return name, [float(entry) for entry in split_entries(values)]
        return name, parse_values(name, values, base)
    except ValueError as error:
        raise UsageError(f"{option}: {one_line(error)}") from None


def bench_command(args) -> int:
    """Run a benchmark suite: prints each run's rows file, one per line; the summary table goes to stderr."""
    from modules.processing import StableDiffusionProcessingTxt2Img
    from modules.sweeps.axes import sweepable_fields
    from serena_kit import benchmarks

    base = StableDiffusionProcessingTxt2Img(prompt="")
    fields = {}
    settable = sweepable_fields(base)
    for text in args.set or []:
        name = text.partition("=")[0].strip()
        if name not in settable:
            raise UsageError(f"--set: {name} is not a generation setting; valid: {', '.join(settable)}")
        name, values = setting_values("--set", text, base)
        if len(values) != 1:
            raise UsageError(f"--set: {name} takes one value, got {values!r} (use --vary for several)")
        fields[settable[name]] = values[0]
    vary = dict(setting_values("--vary", text, base) for text in args.vary or [])

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\rserena bench: {done}/{total} images", end="" if done < total else "\n", file=sys.stderr)

    try:
        run = benchmarks.bench(
            args.suite,
            args.model,
            seeds=args.seeds,
            quick=args.quick,
            out_dir=args.outdir,
            vary=vary,
            progress=progress,
            **fields,
        )
    except (ValueError, TypeError) as error:  # every setting is checked before the first image
        raise UsageError(one_line(error)) from None
    for folder in run.folders:
        print(folder / "rows.parquet", flush=True)
    by = [f"setting_{name}" for name in benchmarks.varied_settings(run.rows)]
    summary = run.summary() if not by else benchmarks.summarize(run.rows, by=by)
    print(summary.to_string(index=False, float_format=lambda value: f"{value:.3f}"), file=sys.stderr)
    if args.csv:
        summary.to_csv(args.csv, index=False)
    return EXIT_OK


# Arguments ----------------------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_int.__name__ = "positive integer"  # argparse names the type in its message


def generation_options(kind: str) -> ArgumentParser:
    """The options of `serena txt2img` / `img2img`: one per declared field with a CLI option, then the CLI's own."""
    options = ArgumentParser(add_help=False)
    for declaration in generation_fields.fields_for(kind):
        if declaration.cli is None:
            continue
        default = declaration.default_for(kind)
        help_text = declaration.description
        if default not in (None, "", [], {}) and default is not False:
            help_text += f" (default: {default})"
        if isinstance(declaration.kind, Flag):
            argument = {"action": "store_true"}
        else:
            argument = {"type": declaration.kind.cli_type, "metavar": declaration.cli.metavar}
            argument["metavar"] = argument["metavar"] or declaration.short_name.upper()
            if declaration.cli.repeatable:
                argument["action"] = "append"
                help_text += " (repeatable)"
        options.add_argument(
            declaration.cli_flag,
            dest=declaration.name,
            default=argparse.SUPPRESS,  # not given: the field keeps its declared default
            required=declaration.cli.required,
            help=help_text,
            **argument,
        )
    options.add_argument("--outdir", default="outputs", help="outputs root (default: outputs)")
    options.add_argument("--quiet", action="store_true", help="no progress bar")
    options.add_argument(
        "--attention-maps",
        action="store_true",
        help="also save each word's cross-attention map beside each image (<image>-attention-NN-<word>.png)",
    )
    options.add_argument(
        "--trajectory",
        action="store_true",
        help="also save each image's denoising trajectory as a film strip beside it (<image>-trajectory.png)",
    )
    return options


def build_parser() -> ArgumentParser:
    common = ArgumentParser(add_help=False)
    common.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's, OMP_NUM_THREADS)")

    parser = ArgumentParser(
        prog="serena",
        description="Serena: Stable Diffusion from the command line. Written file paths go to stdout, one per line.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    txt2img = commands.add_parser(
        "txt2img", parents=[common, generation_options("txt2img")], help="generate images from a prompt"
    )
    txt2img.set_defaults(run=txt2img_command)

    img2img = commands.add_parser(
        "img2img", parents=[common, generation_options("img2img")], help="generate from init images"
    )
    img2img.set_defaults(run=img2img_command)

    replay = commands.add_parser("replay", parents=[common], help="regenerate an image from its infotext")
    replay.add_argument("file", metavar="FILE.png")
    replay.add_argument("--init-image", action="append", metavar="FILE", help="for an img2img infotext")
    replay.add_argument("--mask", metavar="FILE", help="for an inpainting infotext: the mask it was made with")
    replay.add_argument(
        "--control-image",
        action="append",
        metavar="FILE",
        help="for an infotext with ControlNet units: each unit's image, in order (repeatable)",
    )
    replay.add_argument("--outdir", default="outputs")
    replay.add_argument(
        "--model",
        metavar="CHECKPOINT",
        help="the checkpoint to replay on (a path or a name in the models folder) instead of the infotext's Model; "
        "a different model hash is a warning (an error with --strict)",
    )
    replay.add_argument("--exact", action="store_true")
    replay.add_argument("--verify", action="store_true", help="exit 1 unless byte-identical (saves nothing)")
    replay.add_argument("--save", action="store_true", help="with --verify: save the new image too")
    replay.add_argument("--quiet", action="store_true")
    replay.add_argument(
        "--strict", action="store_true", help="exit 2 instead of warning when the image may not be reproduced here"
    )
    replay.set_defaults(run=replay_command)

    png_info = commands.add_parser("png-info", parents=[common], help="print an image's generation parameters")
    png_info.add_argument("file", metavar="FILE.png")
    png_info.add_argument("--json", action="store_true", help="parsed, as JSON")
    png_info.set_defaults(run=png_info_command)

    upscale = commands.add_parser(
        "upscale", parents=[common], help="upscale image files with an upscaler (models/ESRGAN, models/RealESRGAN)"
    )
    upscale.add_argument("files", nargs="+", metavar="FILE")
    upscale.add_argument("--upscaler", default="Lanczos", help="an image upscaler or model name (serena upscalers)")
    upscale.add_argument("--scale", type=float, default=2.0, help="the output size over the input's (default 2)")
    upscale.add_argument("--width", type=int, help="the output width instead (with --height)")
    upscale.add_argument("--height", type=int)
    upscale.add_argument("--tile", type=int, default=192, help="model tiles in px (the webui's ESRGAN_tile; 0: none)")
    upscale.add_argument("--tile-overlap", type=int, default=8, help="model tile overlap in px (ESRGAN_tile_overlap)")
    upscale.add_argument("--outdir", default="outputs/extras-images")
    upscale.set_defaults(run=upscale_command)

    upscalers = commands.add_parser("upscalers", parents=[common], help="list upscalers (name, scale, path)")
    upscalers.set_defaults(run=upscalers_command)

    samplers = commands.add_parser("samplers", parents=[common], help="list samplers and their schedule types")
    samplers.set_defaults(run=samplers_command)

    models = commands.add_parser("models", parents=[common], help="list checkpoints (title, path)")
    models.add_argument("--models-dir", help="default: SERENA_MODELS_DIR or models/Stable-diffusion")
    models.set_defaults(run=models_command)

    loras = commands.add_parser(
        "loras", parents=[common], help="list LoRAs (name, hash, path): SERENA_LORA_DIR or models/Lora, then examples"
    )
    loras.set_defaults(run=loras_command)
    embeddings = commands.add_parser(
        "embeddings",
        parents=[common],
        help="list embeddings (name, vectors, loaded/skipped, hash, path): SERENA_EMBEDDINGS_DIR or embeddings/",
    )
    embeddings.set_defaults(run=embeddings_command)

    serve = commands.add_parser("serve", parents=[common], help="run the AUTOMATIC1111-compatible REST API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--api-auth", metavar="USER:PASS[,USER:PASS]", help="HTTP basic auth on every endpoint")
    serve.add_argument("--outdir", default="outputs", help="where save_images writes (default: outputs)")
    serve.add_argument("--models-dir", help="the only folder clients may pick checkpoints from")
    serve.add_argument("--max-size", type=positive_int, default=1024, help="max width and height")
    serve.add_argument("--max-images", type=positive_int, default=16, help="max batch_size * n_iter per request")
    serve.add_argument("--max-steps", type=positive_int, default=150)
    serve.add_argument("--max-request-mb", type=positive_int, default=64, help="max request body size")
    serve.add_argument(
        "--api-server-stop", action="store_true", help="allow /sdapi/v1/server-stop and server-restart (webui's flag)"
    )
    serve.add_argument(
        "--max-pixel-steps",
        type=positive_int,
        help="max batch_size * n_iter * width * height * steps per request (default: 16 x 512 x 512 x 50)",
    )
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(run=serve_command)

    sweep = commands.add_parser(
        "sweep", parents=[common], help="run or resume a sweep spec (YAML), locally or on a Ray cluster"
    )
    sweep.add_argument("spec", metavar="SPEC.yaml")
    sweep.add_argument("--ray", metavar="ADDRESS", help="run on Ray: auto, ray://HOST:10001, or local (a new one)")
    sweep.add_argument("--workers", type=int, help="Ray actors (default: as many as the cluster holds)")
    sweep.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray actor (default 1; 0 for CPU actors)")
    sweep.add_argument("--outdir", help="override the spec's outdir")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(run=sweep_command)

    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="score a model on a benchmark suite (scenes: GenEval's six categories); rows kept as Parquet",
    )
    bench.add_argument("suite", nargs="?", default="scenes", help="the suite (default: scenes)")
    bench.add_argument("--model", required=True, help="a checkpoint: serena-scenes, a path, or a models-folder name")
    bench.add_argument("--seeds", type=positive_int, default=4, help="seeds per prompt (default: 4)")
    bench.add_argument("--quick", action="store_true", help="a fixed stratified 25 prompts of the suite")
    bench.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="a generation setting, e.g. cfg_scale=5 (repeatable)"
    )
    bench.add_argument(
        "--vary",
        action="append",
        metavar="NAME=VALUES",
        help="one run per value, crossed with other --vary: sampler=Euler a,DPM++ 2M; cfg_scale=3-9 (+2); lora:X=0,1",
    )
    bench.add_argument("--outdir", default="outputs/bench", help="where runs are kept (default: outputs/bench)")
    bench.add_argument("--csv", metavar="FILE", help="also write the summary table as CSV")
    bench.add_argument("--quiet", action="store_true", help="no progress line")
    bench.set_defaults(run=bench_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        return args.run(args)
    except SystemExit as exit:  # --help
        return exit.code if isinstance(exit.code, int) else EXIT_OK
    except BrokenPipeError:  # the reader stopped early (`serena samplers | head -1`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UsageError as error:
        print(f"serena: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nserena: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        print(f"serena: error: {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
