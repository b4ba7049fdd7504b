"""Scripts run through the webui API's `script_name` / `script_args` (listed by /sdapi/v1/scripts and script-info)."""

from __future__ import annotations

MODES = ("txt2img", "img2img")
SCRIPTS: tuple = ()
