"""What the face tests share: starting and stopping a real `serena serve`, single-thread subprocesses, base64 PNGs."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

AUTH = ("serena", "s3cret-pass")
SERVER_START_TIMEOUT = 120
REQUEST_TIMEOUT = 180


def single_thread_env() -> dict:
    """Subprocesses use one torch thread (two processes with two threads each on two cores slow each other 10x)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("SERENA_MODELS_DIR", None)
    env.pop("SERENA_STYLES", None)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_b64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass
class ApiServer:
    url: str
    root: Path
    outdir: Path
    models_dir: Path
    process: subprocess.Popen
    log: Path

    def client(self, auth=AUTH, timeout: float = REQUEST_TIMEOUT) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=auth, timeout=timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until_serving(server: ApiServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    with server.client(timeout=5) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                pytest.fail(f"serena serve exited with {server.process.returncode}:\n{server.log_text()}")
            try:
                if client.get("/sdapi/v1/samplers").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"serena serve did not answer within {SERVER_START_TIMEOUT}s:\n{server.log_text()}")


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops it: a graceful shutdown and a normal exit (SIGTERM would end it without atexit)."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
