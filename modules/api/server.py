"""Run the API app with uvicorn (what `serena serve` does)."""

from __future__ import annotations

import ipaddress
import logging
import sys

import uvicorn


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(app, host: str = "127.0.0.1", port: int = 7860, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM; on shutdown, running and queued jobs are interrupted (their finished images are
    still returned to their clients)."""
    if not is_loopback(host) and not getattr(app.state, "auth", None):
        print(
            f"serena: warning: serving on {host} without --api-auth: anyone who can reach it can use it",
            file=sys.stderr,
        )
    print(
        f"serena: API on http://{host}:{port}/sdapi/v1 (docs at http://{host}:{port}/docs)", file=sys.stderr, flush=True
    )
    show_api_log(log_level)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)


def show_api_log(log_level: str) -> None:
    """Serena's own API log (ignored request fields, infotext caveats) in the server's output, at uvicorn's level."""
    logger = logging.getLogger("serena.api")
    if not any(getattr(handler, "serena_api", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.serena_api = True
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(log_level.upper() if log_level != "trace" else logging.DEBUG)
