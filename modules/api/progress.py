"""Progress the webui's way: `GET /sdapi/v1/progress` (the running job, whoever sent it) and
`POST /internal/progress` (one task, by the id its client gave with `force_task_id`).

The live preview is the running batch's first image as the notebook form shows it (modules.previews.live_preview),
only while the server option `live_previews_enable` is on.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from fastapi import APIRouter, Response

from modules import images, previews
from modules.api import lax, models
from modules.runtime.state import GenerationState


def live_preview(state: GenerationState) -> str | None:
    """The running batch's first image as the notebook form previews it (modules.previews.live_preview), as a base64
    PNG, or None before its first step. A model without a fitted map and large latents shows its first three
    latent channels rather than a decode in the request's thread beside the job."""
    latents = state.current_latent
    if latents is None:
        return None
    preview = previews.live_preview(state.current_model, latents, decode_large=False)
    return base64.b64encode(images.png_bytes(preview, None)).decode("ascii")


def batch_text(state: GenerationState) -> str:
    return f"Batch {state.job_no + 1} out of {state.job_count}" if state.running else ""


def state_dict(state: GenerationState, job_timestamp: str, queued: int) -> dict:
    """The webui's `shared.state.dict()`, plus the number of jobs waiting."""
    return {
        "skipped": state.skipped,
        "interrupted": state.interrupted,
        "stopping_generation": False,  # Serena has no "stop after this batch"; interrupt stops at the next step
        "job": batch_text(state),
        "job_count": state.job_count if state.running else 0,
        "job_timestamp": job_timestamp,
        "job_no": state.job_no,
        "sampling_step": state.sampling_step,
        "sampling_steps": state.sampling_steps,
        "queued": queued,
    }


def progress_router(jobs, previews_enabled: Callable[[], bool]) -> APIRouter:
    """jobs: the app's job list (modules.api.app.Jobs); previews_enabled: the live_previews_enable option."""
    router = APIRouter()

    @router.get("/sdapi/v1/progress", response_model=models.ProgressResponse)
    async def progress(skip_current_image: bool = False):
        state = jobs.running()
        if state is None:  # idle: the last job's timestamp stays, as in the webui
            return models.ProgressResponse(
                progress=0.0,
                eta_relative=0.0,
                state=state_dict(GenerationState(), jobs.last_job_timestamp, jobs.waiting()),
            )
        show_image = not skip_current_image and previews_enabled()
        return models.ProgressResponse(
            progress=state.progress,
            eta_relative=state.eta_seconds or 0.0,
            state=state_dict(state, state.job_timestamp, jobs.waiting()),
            current_image=live_preview(state) if show_image else None,
            textinfo=f"{batch_text(state)}, step {state.sampling_step} of {state.sampling_steps}",
        )

    @router.post("/internal/progress", response_model=models.TaskProgressResponse)
    async def task_progress(request: models.TaskProgressRequest, response: Response):
        lax.report_ignored(response, request)
        state, place, queue_length, completed = jobs.task(request.id_task)
        if state is None or not state.running:
            textinfo = f"In queue: {place}/{queue_length}" if place else ("Finished" if completed else "Waiting...")
            return models.TaskProgressResponse(
                active=False,
                queued=bool(place) or state is not None,
                completed=completed,
                id_live_preview=-1,
                textinfo=textinfo,
                queue_position=place or None,
            )
        preview, preview_id = None, request.id_live_preview
        if request.live_preview and previews_enabled() and state.preview_id != request.id_live_preview:
            encoded = live_preview(state)
            if encoded is not None:
                preview, preview_id = "data:image/png;base64," + encoded, state.preview_id
        return models.TaskProgressResponse(
            active=True,
            queued=False,
            completed=False,
            progress=state.progress,
            eta=state.eta_seconds,
            live_preview=preview,
            id_live_preview=preview_id,
            textinfo=f"{batch_text(state)}, step {state.sampling_step} of {state.sampling_steps}",
        )

    return router
