"""The AUTOMATIC1111-compatible REST API: the webui's /sdapi/v1 paths, fields and response shapes over Serena's engine.

`create_app(...)` builds one app and everything it holds (folders, limits, options, jobs); nothing is module-global.
Generation endpoints build a StableDiffusionProcessing (modules.api.requests) and call `process_images` in a worker
thread, so the event loop keeps answering /progress, /interrupt and /skip while the runner's process-wide FIFO queue
runs one job at a time. Each response carries exactly its own job's images and seeds.

Errors: 422 for malformed requests (`field` names the first bad one), 400 `{"error", "field", "detail"}` for values
the engine or the server's limits refuse, 401 without valid credentials (when auth is on), 413 for bodies over the
request limit, 503 when the queue is full, 500 when a generation fails (the server keeps running).
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match

from modules import (
    attention_maps,
    extra_networks,
    images,
    infotext,
    lora,
    sd_models,
    sd_samplers,
    textual_inversion,
    trajectory,
)
from modules.api import lax, models, progress, requests, schema, scripts, server_routes
from modules.api.controlnet_routes import controlnet_router
from modules.api.extras import extras_router
from modules.api.requests import ApiError, ApiLimits, ServerOptions
from modules.api.security import BasicAuth, RequestSizeLimit
from modules.processing import process_images
from modules.runtime.runner import generation_queue
from modules.runtime.state import GenerationState


def encode_png(image: Image.Image) -> str:
    """Base64 PNG with the image's infotext: the bytes the engine saves."""
    return base64.b64encode(images.png_bytes(image, image.info.get("parameters"))).decode("ascii")


def instrument_outputs(request, processed) -> dict:
    """What a request's Serena instruments made (attention maps, film strips), for the response; saved beside the
    saved images too."""
    outputs = {}
    if request.attention_maps:
        outputs["attention_maps"] = [
            [{"word": word, "map": encode_png(grey)} for word, grey in attention_maps.word_map_images(maps)]
            for maps in processed.attention_maps
        ]
        attention_maps.save_beside_images(processed.paths, processed.attention_maps)
    if request.trajectory:
        outputs["trajectories"] = [encode_png(item.film_strip()) for item in processed.trajectories]
        trajectory.save_beside_images(processed.paths, processed.trajectories)
    return outputs


class Jobs:
    """The app's queued and running jobs, in arrival order, so /progress, /interrupt and /skip reach the running one,
    and the task ids clients gave them (force_task_id), so each client can follow its own job."""

    RECENT_TASKS = 1000  # finished task ids remembered for /internal/progress

    def __init__(self, max_queued: int):
        self.max_queued = max_queued
        self.closing = False
        self.last_job_timestamp = ""
        self._states: list[GenerationState] = []
        self._tasks: dict[str, GenerationState] = {}  # task id -> its job's state, while queued or running
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    async def run(self, p, task_id: str | None = None, script: Callable | None = None):
        """Queue `p` and wait for its result in a worker thread; the event loop stays free. `script`: what runs the
        job instead of `process_images` (the X/Y/Z plot)."""
        with self._lock:
            if len(self._states) >= self.max_queued:
                raise ApiError(503, "queue full", None, f"{len(self._states)} jobs are queued; try again later")
            self._states.append(p.state)
            if task_id:
                self._tasks[task_id] = p.state
        p.state.keep_interrupted_batch = True  # the webui returns the image in progress when interrupted
        p.state.listeners.append(lambda state: state.interrupt() if self.closing else None)
        return await run_in_threadpool(self._run, p, task_id, script or process_images)

    def _run(self, p, task_id: str | None, run: Callable):
        try:
            return run(p)
        except ApiError:
            raise
        except Exception as error:
            raise ApiError(500, type(error).__name__, None, str(error)) from error
        finally:
            with self._lock:
                self._states.remove(p.state)
                self.last_job_timestamp = p.state.job_timestamp or self.last_job_timestamp
                if task_id:
                    self._tasks.pop(task_id, None)
                    self._finished[task_id] = None
                    while len(self._finished) > self.RECENT_TASKS:
                        self._finished.popitem(last=False)

    async def between_jobs(self, change) -> None:
        """Run `change(model)` on the loaded model (if any) in the generation queue's turn: never during a job."""

        def run():
            with generation_queue.turn():
                if sd_models.model_cache.loaded is not None:
                    change(sd_models.model_cache.loaded)

        await run_in_threadpool(run)

    def running(self) -> GenerationState | None:
        with self._lock:
            return next((state for state in self._states if state.running), None)

    def waiting(self) -> int:
        with self._lock:
            return sum(not state.running for state in self._states)

    def task(self, task_id: str) -> tuple[GenerationState | None, int, int, bool]:
        """A task's state (None unless queued or running), its place in the queue (1 = next) and the queue's length
        (0, 0 when running or unknown), and whether it has finished."""
        with self._lock:
            state = self._tasks.get(task_id)
            waiting = [queued for queued in self._states if not queued.running]
            place = next((index + 1 for index, queued in enumerate(waiting) if queued is state), 0)
            return state, place, len(waiting) if place else 0, task_id in self._finished

    def close(self) -> None:
        """Stop every job at its next step, the running one and those still waiting (their images so far return)."""
        self.closing = True
        with self._lock:
            for state in self._states:
                state.interrupt()


def create_app(
    outdir: str | Path = "outputs",
    models_dir: str | Path | None = None,
    auth: dict[str, str] | None = None,
    limits: ApiLimits | None = None,
    server_flags: dict | None = None,
    allow_server_stop: bool = False,
) -> FastAPI:
    """The API app.

    outdir: where `save_images` writes (`<outdir>/txt2img-images/<date>/...`, like the webui); the outdir_* options
        choose folders inside it, never outside.
    models_dir: the only folder `sd_model_checkpoint` may pick models from (default SERENA_MODELS_DIR or
        models/Stable-diffusion), besides the embedded default model.
    auth: {user: password} for HTTP basic auth on every endpoint (see security.parse_api_auth); None: no auth.
    limits: see ApiLimits.
    server_flags: the server's command-line values under the webui's flag names (GET /sdapi/v1/cmd-flags).
    allow_server_stop: serve /sdapi/v1/server-stop, server-kill and server-restart (the webui's --api-server-stop).
    """
    outdir = Path(outdir).resolve()
    limits = limits or ApiLimits()
    options = ServerOptions(Path(models_dir or sd_models.models_dir()).resolve(), outdir)
    jobs = Jobs(limits.max_queued_jobs)

    @asynccontextmanager
    async def lifespan(app):
        yield
        jobs.close()

    app = FastAPI(
        title="Serena API",
        description="AUTOMATIC1111-compatible /sdapi/v1 endpoints over Serena's engine.",
        lifespan=lifespan,
        responses=models.ERROR_RESPONSES,
    )
    app.state.auth = bool(auth)
    app.add_middleware(RequestSizeLimit, max_bytes=limits.max_request_bytes)
    if auth:
        app.add_middleware(BasicAuth, credentials=dict(auth))

    app.state.restart = False
    app.include_router(server_routes.server_router(app, options, server_flags or {}, allow_server_stop))
    app.include_router(progress.progress_router(jobs, lambda: bool(options.value("live_previews_enable"))))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse(error.content(), error.status)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, error: RequestValidationError):
        errors = error.errors()
        content = {"error": "invalid request", "field": field_of(errors), "detail": jsonable(errors)}
        return JSONResponse(content, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        content = {"error": HTTPStatus(error.status_code).phrase.lower(), "field": None, "detail": error.detail}
        headers = dict(error.headers or {})
        if error.status_code == 405:  # every method of the path, not only those of the first route that matched it
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return JSONResponse(content, error.status_code, headers=headers)

    # made anew per request: styles, upscalers and checkpoints change while serving
    app.openapi = lambda: schema.server_openapi(app, limits, options.models_dir)

    app.include_router(extras_router(limits))  # upscaling (modules.api.extras)
    app.include_router(controlnet_router(limits))  # the ControlNet extension's endpoints

    @app.post("/sdapi/v1/txt2img", response_model=models.TextToImageResponse)
    async def txt2img(request: models.StableDiffusionTxt2ImgAPI, response: Response):
        lax.report_ignored(response, request)
        p = await run_in_threadpool(requests.txt2img_processing, request, options, limits)
        script = scripts.script_runner(request.script_name, request.script_args, "txt2img", options.models_dir)
        processed = await jobs.run(p, request.force_task_id, script)
        maps = await run_in_threadpool(requests.detected_maps, p, request, processed.width, processed.height)
        return models.TextToImageResponse(
            images=[encode_png(image) for image in processed.images + maps] if request.send_images else [],
            parameters=request.model_dump(),
            info=processed.js(),
            **await run_in_threadpool(instrument_outputs, request, processed),
        )

    @app.post("/sdapi/v1/img2img", response_model=models.ImageToImageResponse)
    async def img2img(request: models.StableDiffusionImg2ImgProcessingAPI, response: Response):
        lax.report_ignored(response, request)
        p = await run_in_threadpool(requests.img2img_processing, request, options, limits)
        script = scripts.script_runner(request.script_name, request.script_args, "img2img", options.models_dir)
        processed = await jobs.run(p, request.force_task_id, script)
        maps = await run_in_threadpool(requests.detected_maps, p, request, processed.width, processed.height)
        parameters = request.model_dump()
        if not request.include_init_images:
            parameters["init_images"] = None
        return models.ImageToImageResponse(
            images=[encode_png(image) for image in processed.images + maps] if request.send_images else [],
            parameters=parameters,
            info=processed.js(),
            **await run_in_threadpool(instrument_outputs, request, processed),
        )

    @app.post("/sdapi/v1/png-info", response_model=models.PNGInfoResponse)
    def png_info(request: models.PNGInfoRequest, response: Response):
        lax.report_ignored(response, request)
        image = requests.decode_image(request.image, "image", limits)
        text = images.read_infotext(image, missing_ok=True)
        items = {key: value for key, value in image.info.items() if key != "parameters" and isinstance(value, str)}
        return models.PNGInfoResponse(info=text, items=items, parameters=infotext.parse_infotext(text) if text else {})

    @app.post("/sdapi/v1/interrupt")
    async def interrupt():
        if state := jobs.running():
            state.interrupt()
        return {}

    @app.post("/sdapi/v1/skip")
    async def skip():
        if state := jobs.running():
            state.skip()
        return {}

    @app.get("/sdapi/v1/samplers", response_model=list[models.SamplerItem])
    async def samplers():
        return [
            models.SamplerItem(name=spec.name, aliases=list(spec.aliases), options={}) for spec in sd_samplers.SAMPLERS
        ]

    @app.get("/sdapi/v1/schedulers", response_model=list[models.SchedulerItem])
    async def schedulers():
        return [models.SchedulerItem(name=label.lower(), label=label) for label in sd_samplers.SCHEDULE_TYPES]

    @app.get("/sdapi/v1/sd-models", response_model=list[models.SDModelItem])
    def sd_models_list():  # hashes each file once per process: in a worker thread, not on the event loop
        return [
            models.SDModelItem(
                title=info.title,
                model_name=info.name,
                hash=info.shorthash,
                sha256=info.sha256,
                filename=str(info.path),
                architecture=info.architecture,
            )
            for info in requests.allowed_checkpoints(options.models_dir)
        ]

    @app.get("/sdapi/v1/loras", response_model=list[models.LoraItem])
    def loras():
        return [
            models.LoraItem(
                name=name,
                alias=name,
                path=str(network.path),
                metadata=extra_networks.safetensors_metadata(network.path),
            )
            for name, network in extra_networks.list_loras().items()
        ]

    @app.post("/sdapi/v1/refresh-loras")
    async def refresh_loras():
        """Folders are read on every job; a refresh also drops the LoRA layers loaded into the model (between jobs)."""
        await jobs.between_jobs(lora.unload_all)
        return None

    @app.get("/sdapi/v1/embeddings", response_model=models.EmbeddingsResponse)
    def embeddings():
        return textual_inversion.list_for_model(sd_models.text_encoder_width())

    @app.post("/sdapi/v1/refresh-embeddings")
    async def refresh_embeddings():
        await jobs.between_jobs(textual_inversion.unload_all)
        return None

    @app.get("/sdapi/v1/options")
    def get_options() -> dict:
        return options.as_dict()

    @app.post("/sdapi/v1/options")
    def set_options(values: dict, response: Response) -> None:
        if ignored := options.update(values):
            response.headers[lax.IGNORED_FIELDS_HEADER] = lax.header_value(ignored)

    return app


def allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    """The methods some route of the app serves at the scope's path (HEAD with GET, as Starlette answers it)."""
    methods = set()
    for route in app.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def field_of(errors: list[dict]) -> str | None:
    """The first bad field of a pydantic error list, "init_images[0]" style; None when the body itself is bad."""
    location = errors[0]["loc"][1:] if errors else ()  # after "body"
    if not location:
        return None
    return str(location[0]) + "".join(f"[{part}]" for part in location[1:] if isinstance(part, int))


def jsonable(errors: list[dict]) -> list[dict]:
    """Pydantic errors without the echoed input (it may be a huge base64 string) or exception objects."""
    return [{key: error[key] for key in ("type", "loc", "msg") if key in error} for error in errors]
