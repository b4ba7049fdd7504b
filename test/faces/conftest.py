"""The face tests' real server: `python -m serena_kit serve` on 127.0.0.1, one per test session, with basic auth.

Its models folder holds a copy of the default model ("tiny"), a checkpoint that cannot load ("broken.safetensors"),
and a symlink leading out of the folder ("linked"); the same default model also sits outside the folder.
"""

import shutil
import subprocess
import sys

import pytest
from face_helpers import AUTH, ApiServer, free_port, single_thread_env, stop, wait_until_serving

from modules.default_model import DEFAULT_MODEL_DIR


@pytest.fixture(scope="session")
def api_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_server")
    models_dir = root / "models"
    models_dir.mkdir()
    shutil.copytree(DEFAULT_MODEL_DIR, models_dir / "tiny")
    (models_dir / "broken.safetensors").write_bytes(b"this is not a checkpoint")
    (models_dir / "linked").symlink_to(DEFAULT_MODEL_DIR, target_is_directory=True)
    outdir = root / "outputs"
    log = root / "server.log"
    port = free_port()
    command = [sys.executable, "-m", "serena_kit", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--threads", "1", "--api-auth", f"{AUTH[0]}:{AUTH[1]}", "--outdir", str(outdir)]
    command += ["--models-dir", str(models_dir), "--max-request-mb", "4", "--log-level", "warning"]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=root, env=single_thread_env(), stdout=log_file, stderr=subprocess.STDOUT
        )
    server = ApiServer(f"http://127.0.0.1:{port}", root, outdir, models_dir, process, log)
    try:
        wait_until_serving(server)
        yield server
    finally:
        stop(process)
