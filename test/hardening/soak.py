"""Soak: 8 clients against one real `serena serve` for a while, mixing txt2img, img2img, progress polling,
interrupt, skip and model switches through /options. What it measures (`run_soak` returns it):

- every request answered (no transport error, no timeout) and with an expected status;
- every returned image decodes and carries, in order, the seeds its request asked for (an interrupted or skipped
  job returns fewer images, never other seeds);
- the server's RSS once a second; growth = the highest RSS after warm-up minus the RSS when warm-up ended;
- p50/p99 latency per kind of request.

CI runs it briefly (test_soak.py); the documented run:
    flock /tmp/serena-cpu.lock python test/hardening/soak.py --seconds 600 --report FILE.json --plot FILE.png
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]
from faces.face_helpers import ApiServer, free_port, single_thread_env, stop  # noqa: E402

CLIENTS = 8
REQUEST_TIMEOUT = 300
INIT_IMAGE = Image.new("RGB", (32, 32), (30, 60, 200))


def start_server(root: Path) -> ApiServer:
    from modules.default_model import DEFAULT_MODEL_DIR

    models = root / "models"
    models.mkdir()
    shutil.copytree(DEFAULT_MODEL_DIR, models / "tiny")
    port = free_port()
    command = [sys.executable, "-m", "serena_kit", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--threads", "1", "--outdir", str(root / "outputs"), "--models-dir", str(models)]
    command += ["--max-size", "64", "--max-steps", "8", "--log-level", "error"]
    log = root / "server.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=root, env=single_thread_env(), stdout=log_file, stderr=subprocess.STDOUT
        )
    server = ApiServer(f"http://127.0.0.1:{port}", root, root / "outputs", models, process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + "/sdapi/v1/samplers", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start: {server.log_text()}")


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class Soak:
    def __init__(self, server: ApiServer, seconds: float, seed: int = 19):
        self.server, self.seconds = server, seconds
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.problems: list[str] = []
        self.sent = self.answered = self.images = 0
        self.next_seed = 10_000
        self.rss: list[tuple[float, int]] = []

    def seeds(self, count: int) -> int:
        with self.lock:
            first, self.next_seed = self.next_seed, self.next_seed + 100
        return first

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)
            self.answered += 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def check_images(self, kind: str, body: dict, first_seed: int) -> None:
        info = json.loads(body["info"])
        expected = [first_seed + index for index in range(len(body["images"]))]
        if info["all_seeds"][: len(expected)] != expected:
            self.problem(f"{kind}: seeds {info['all_seeds']} for asked {first_seed}..")
        for encoded, seed in zip(body["images"], expected):
            with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
                image.load()
                if f"Seed: {seed}," not in image.info.get("parameters", ""):
                    self.problem(f"{kind}: an image without its seed {seed}")
        with self.lock:
            self.images += len(body["images"])

    def one_request(self, client: httpx.Client, rng: random.Random) -> None:
        kind = rng.choices(
            ["txt2img", "img2img", "progress", "interrupt", "skip", "switch model"], [30, 20, 40, 3, 3, 4]
        )[0]
        with self.lock:
            self.sent += 1
        started = time.monotonic()
        if kind in ("txt2img", "img2img"):
            batch, first = rng.choice([1, 2]), self.seeds(2)
            body = {"prompt": "a red circle on a blue background", "seed": first, "batch_size": batch}
            body |= {"steps": rng.choice([2, 4, 8]), "width": 32, "height": rng.choice([32, 48])}
            if kind == "img2img":
                body |= {"init_images": [b64(INIT_IMAGE)], "denoising_strength": 0.6}
            response = client.post(f"/sdapi/v1/{kind}", json=body)
            if response.status_code == 200:
                self.check_images(kind, response.json(), first)
        elif kind == "progress":
            response = client.get("/sdapi/v1/progress", params={"skip_current_image": rng.random() < 0.5})
        elif kind in ("interrupt", "skip"):
            response = client.post(f"/sdapi/v1/{kind}")
        else:
            response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": rng.choice(["tiny", "default"])})
        if response.status_code != 200:
            self.problem(f"{kind}: {response.status_code} {response.text[:200]}")
        self.record(kind, time.monotonic() - started)

    def client_loop(self, index: int, deadline: float) -> None:
        rng = random.Random(self.rng.random() + index)
        with httpx.Client(base_url=self.server.url, timeout=REQUEST_TIMEOUT) as client:
            while time.monotonic() < deadline:
                try:
                    self.one_request(client, rng)
                except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
                    self.problem(f"client {index}: {type(error).__name__}: {error}")
                if rng.random() < 0.5:
                    time.sleep(rng.uniform(0.0, 0.2))

    def sample_rss(self, stop_event: threading.Event, start: float) -> None:
        process = psutil.Process(self.server.process.pid)
        while not stop_event.is_set():
            self.rss.append((time.monotonic() - start, process.memory_info().rss))
            stop_event.wait(1.0)

    def run(self) -> dict:
        start = time.monotonic()
        stop_event = threading.Event()
        sampler = threading.Thread(target=self.sample_rss, args=(stop_event, start), daemon=True)
        sampler.start()
        clients = [
            threading.Thread(target=self.client_loop, args=(index, start + self.seconds)) for index in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        stop_event.set()
        sampler.join()
        return self.report(time.monotonic() - start)

    def report(self, elapsed: float) -> dict:
        warm_up = min(60.0, self.seconds / 4)
        after = [rss for at, rss in self.rss if at >= warm_up]
        at_warm_up = after[0] if after else self.rss[-1][1]
        latency = {}
        for kind, values in sorted(self.latencies.items()):
            values = sorted(values)
            latency[kind] = {
                "count": len(values),
                "p50_s": round(values[len(values) // 2], 3),
                "p99_s": round(values[min(len(values) - 1, int(len(values) * 0.99))], 3),
            }
        return {
            "seconds": round(elapsed, 1),
            "clients": CLIENTS,
            "sent": self.sent,
            "answered": self.answered,
            "images_checked": self.images,
            "problems": self.problems,
            "warm_up_s": warm_up,
            "rss_at_warm_up_mb": round(at_warm_up / 2**20, 1),
            "rss_growth_after_warm_up_mb": round((max(after, default=at_warm_up) - at_warm_up) / 2**20, 1),
            "latency": latency,
            "rss_mb": [(round(at, 1), round(rss / 2**20, 1)) for at, rss in self.rss],
        }


def run_soak(seconds: float) -> dict:
    root = Path(tempfile.mkdtemp(prefix="serena-soak-"))
    server = start_server(root)
    try:
        report = Soak(server, seconds).run()
        report["server_alive"] = server.alive()
        return report
    finally:
        stop(server.process)
        shutil.rmtree(root, ignore_errors=True)


def plot_rss(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, rss = zip(*report["rss_mb"])
    figure, axes = plt.subplots(figsize=(7, 3))
    axes.plot(times, rss)
    axes.axvline(report["warm_up_s"], color="grey", linestyle="--", label="end of warm-up")
    axes.set_xlabel("seconds")
    axes.set_ylabel("server RSS (MB)")
    axes.set_title(f"Soak: {report['clients']} clients, {report['answered']} requests")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--report", required=True)
    parser.add_argument("--plot")
    args = parser.parse_args()
    report = run_soak(args.seconds)
    Path(args.report).write_text(json.dumps(report, indent=1))
    if args.plot:
        plot_rss(report, args.plot)
    summary = {key: value for key, value in report.items() if key not in ("rss_mb", "problems")}
    print(json.dumps(summary | {"problems": len(report["problems"])}, indent=1))
    return 0 if not report["problems"] and report["server_alive"] else 1


if __name__ == "__main__":
    import modules  # noqa: F401  (portable kernels before torch, like every entry point)

    sys.exit(main())
