"""The AUTOMATIC1111-compatible REST API face.

models (the wire format) -> requests (limits, options, checkpoint allowlist, request -> processing object) -> app
(`create_app`, the endpoints and the job list) ; security (basic auth, body size) ; server (uvicorn, `serena serve`).
"""

from modules.api.app import create_app
from modules.api.requests import ApiLimits

__all__ = ["ApiLimits", "create_app"]
