"""The webui API's server endpoints beyond generation, in its response shapes: command-line flags, prompt styles,
VAE and module lists, checkpoint refresh/reload/unload, memory, scripts, and (only when the server allows it)
stop/restart.
"""

from __future__ import annotations

import os
import signal

from fastapi import APIRouter, FastAPI, Response
from pydantic import BaseModel

from modules import devices, sd_models, sd_modules, styles
from modules.api import lax, models, scripts
from modules.runtime.runner import generation_queue

# The webui's flags that clients read (cmd-flags), at what Serena's server does; `server_flags` adds the real ones.
WEBUI_FLAGS = {
    "api": True,
    "nowebui": True,
    "listen": False,
    "port": 7860,
    "api_auth": None,  # never echoed: the webui's cmd-flags leaks the credentials
    "api_log": False,
    "api_server_stop": False,
    "cors_allow_origins": None,
    "skip_torch_cuda_test": True,
    "lowvram": False,
    "medvram": False,
    "xformers": False,
    "no_half": False,
    "no_half_vae": False,
    "precision": "autocast",
    "hide_ui_dir_config": True,
    "freeze_settings": False,
    "disable_safe_unpickle": False,
}


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


class VaeItem(BaseModel):
    model_name: str
    filename: str


def server_router(app: FastAPI, options, server_flags: dict, allow_server_stop: bool) -> APIRouter:
    """options: the app's ServerOptions; server_flags: the server's own command-line values (webui names)."""
    router = APIRouter()

    @router.get("/sdapi/v1/cmd-flags")
    async def cmd_flags() -> dict:
        return (
            WEBUI_FLAGS
            | {
                "ckpt_dir": str(options.models_dir),
                "vae_dir": str(sd_models.vae_dir().resolve()),
                "styles_file": [str(styles.styles_file().resolve())],
                "api_server_stop": allow_server_stop,
            }
            | {key: value for key, value in server_flags.items() if key != "api_auth"}
        )

    @router.get("/sdapi/v1/prompt-styles", response_model=list[PromptStyleItem])
    def prompt_styles():
        return [PromptStyleItem(**vars(style)) for style in styles.load_styles().values()]

    @router.post("/sdapi/v1/prompt-styles")
    def create_prompt_style(request: models.PromptStyleRequest, response: Response) -> None:
        """Add a style to styles.csv, or replace the one of that name (not a webui endpoint: the webui's UI does it)."""
        lax.report_ignored(response, request)
        styles.save_style(styles.PromptStyle(request.name, request.prompt, request.negative_prompt))

    @router.get("/sdapi/v1/sd-vae", response_model=list[VaeItem])
    def sd_vae():
        return [VaeItem(model_name=path.name, filename=str(path)) for path in sd_models.list_vaes()]

    @router.get("/sdapi/v1/sd-modules", response_model=list[VaeItem])
    def sd_modules_list():
        """Forge's list of additional modules (text encoders, then VAEs), as `forge_additional_modules` takes them."""
        return [VaeItem(model_name=path.name, filename=str(path)) for path in sd_modules.list_modules()]

    @router.post("/sdapi/v1/refresh-checkpoints")
    async def refresh_checkpoints() -> None:
        """Listings are read from the folders on every request: nothing is cached but file hashes (by size and
        modification time), so a refresh has nothing to do."""

    @router.post("/sdapi/v1/refresh-vae")
    async def refresh_vae() -> None:
        """As refresh-checkpoints: the VAE folder is read on every request."""

    @router.post("/sdapi/v1/reload-checkpoint")
    def reload_checkpoint() -> None:
        """Load the current checkpoint now (between jobs), so the next generation does not wait for it."""
        checkpoint = options.checkpoint or sd_models.default_checkpoint()
        with generation_queue.turn():
            sd_models.model_cache.get(checkpoint)

    @router.post("/sdapi/v1/unload-checkpoint")
    def unload_checkpoint() -> None:
        """Free the loaded model (between jobs); the next generation loads it again."""
        with generation_queue.turn():
            sd_models.model_cache.clear()

    @router.get("/sdapi/v1/memory")
    def memory() -> dict:
        return devices.memory_report()

    @router.get("/sdapi/v1/scripts")
    async def script_names() -> dict:
        return {mode: [script.name for script in scripts.SCRIPTS if mode in script.modes] for mode in scripts.MODES}

    @router.get("/sdapi/v1/script-info")
    async def script_info() -> list[dict]:
        return [info for script in scripts.SCRIPTS for info in script.infos()]

    if allow_server_stop:  # as the webui: these paths exist only with --api-server-stop

        @router.post("/sdapi/v1/server-kill")
        @router.post("/sdapi/v1/server-stop")
        async def server_stop() -> str:
            os.kill(os.getpid(), signal.SIGINT)  # uvicorn's graceful shutdown: running jobs return what they have
            return "Stopping."

        @router.post("/sdapi/v1/server-restart")
        async def server_restart() -> str:
            app.state.restart = True  # `serena serve` starts itself again once uvicorn has stopped
            os.kill(os.getpid(), signal.SIGINT)
            return "Restarting."

    return router
