"""Run the API app with uvicorn (what `serena serve` does)."""

from __future__ import annotations

import ipaddress
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
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
