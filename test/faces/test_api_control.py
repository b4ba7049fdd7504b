"""The API's control paths on an in-process app: skip and interrupt at a chosen step (held there by a step listener,
so no timing decides which batch a request reaches), shutdown with running and queued jobs, auth on every route,
several users, and the warning for a public host without auth."""

import asyncio
import base64
import json
import threading

import httpx
import pytest
from face_helpers import b64_png
from fastapi.routing import APIRoute
from helpers import load_png
from PIL import Image

from modules.api import ApiLimits, create_app, server
from modules.api import requests as api_requests

USERS = {"alice": "alice-pass", "bob": "bob:has:colons"}


class PauseAt:
    """A step listener that holds the job (in its worker thread) after `step` of batch `job_no` until released."""

    def __init__(self, job_no: int, step: int):
        self.job_no, self.step = job_no, step
        self.reached, self.released = threading.Event(), threading.Event()

    def __call__(self, state):
        if (state.job_no, state.sampling_step) == (self.job_no, self.step) and not self.reached.is_set():
            self.reached.set()
            assert self.released.wait(120), "the test never released the job"

    async def wait(self):
        assert await asyncio.to_thread(self.reached.wait, 120), f"batch {self.job_no} never reached step {self.step}"


def pause_jobs(monkeypatch, *pauses: PauseAt) -> None:
    """Every job the app builds gets the listeners (the hook: the app's own request -> processing functions)."""
    for name in ("txt2img_processing", "img2img_processing"):
        original = getattr(api_requests, name)

        def with_pauses(*args, original=original):
            p = original(*args)
            p.state.listeners.extend(pauses)
            return p

        monkeypatch.setattr(api_requests, name, with_pauses)


def run(app, scenario):
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serena", timeout=120) as client:
            await scenario(client)

    asyncio.run(main())


JOB = {"prompt": "a long job", "seed": 500, "steps": 6, "n_iter": 8, "sampler_name": "Euler"}
IMG2IMG_JOB = JOB | {"init_images": [b64_png(Image.new("RGB", (32, 32), (200, 40, 40)))], "denoising_strength": 1.0}


@pytest.mark.parametrize("mode, body", [("txt2img", JOB), ("img2img", IMG2IMG_JOB)])
def test_skip_drops_the_batch_it_reaches_and_interrupt_returns_the_images_so_far(monkeypatch, mode, body):
    at_skip, at_interrupt = PauseAt(job_no=1, step=2), PauseAt(job_no=3, step=1)
    pause_jobs(monkeypatch, at_skip, at_interrupt)

    async def scenario(client):
        job = asyncio.create_task(client.post(f"/sdapi/v1/{mode}", json=body))
        await at_skip.wait()
        progress = (await client.get("/sdapi/v1/progress")).json()
        assert (progress["state"]["job_no"], progress["state"]["sampling_step"]) == (1, 2)
        assert (progress["state"]["job_count"], progress["state"]["sampling_steps"]) == (8, 6)
        assert 0 < progress["progress"] < 1 and progress["textinfo"] == "Batch 2 out of 8, step 2 of 6"
        assert progress["eta_relative"] > 0
        assert load_png(base64.b64decode(progress["current_image"])).mode == "RGB"  # a latent preview
        without_image = await client.get("/sdapi/v1/progress", params={"skip_current_image": True})
        assert without_image.json()["current_image"] is None
        assert (await client.post("/sdapi/v1/skip")).json() == {}
        at_skip.released.set()
        await at_interrupt.wait()
        assert (await client.post("/sdapi/v1/interrupt")).json() == {}
        at_interrupt.released.set()
        response = await job
        assert response.status_code == 200, response.text
        info = json.loads(response.json()["info"])
        assert info["interrupted"] is True
        # batch 1 skipped; batch 3 interrupted at step 1 and returned as it stood (the webui's API); 4-7 never started
        assert info["all_seeds"] == [500, 502, 503]
        assert len(response.json()["images"]) == 3
        idle = (await client.get("/sdapi/v1/progress")).json()
        assert (idle["state"]["job_count"], idle["progress"]) == (0, 0)

    run(create_app(outdir="out"), scenario)


def test_shutdown_stops_the_running_and_the_queued_jobs_and_answers_both(monkeypatch):
    running = PauseAt(job_no=0, step=1)
    pause_jobs(monkeypatch, running)
    app = create_app(outdir="out", limits=ApiLimits(max_queued_jobs=4))

    async def scenario(client):
        async with app.router.lifespan_context(app):
            first = asyncio.create_task(client.post("/sdapi/v1/txt2img", json=JOB))
            await running.wait()
            second = asyncio.create_task(client.post("/sdapi/v1/txt2img", json=JOB | {"seed": 900}))
            for _ in range(200):  # the second request is queued behind the first
                if (await client.get("/sdapi/v1/progress")).json()["state"]["queued"] == 1:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the second job never queued")
            running.released.set()
        answers = [await first, await second]  # the app's shutdown interrupted both; each still answers
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert json.loads(answer.json()["info"])["interrupted"] is True
        assert len(json.loads(answers[0].json()["info"])["all_seeds"]) < 8

    run(app, scenario)


def basic(user: str, password: str) -> dict:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def every_route(app) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, the docs included: a new endpoint is covered by itself."""
    routes = []
    for route in app.routes:
        if hasattr(route, "original_router"):  # an included router (FastAPI keeps it whole)
            prefix = route.include_context.prefix
            routes += [(method, prefix + path) for method, path in every_route(route.original_router)]
            continue
        methods = sorted(route.methods - {"HEAD"}) if getattr(route, "methods", None) else ["GET"]
        routes += [(method, route.path) for method in methods]
    return routes


def test_auth_guards_every_route_of_the_app():
    app = create_app(outdir="out", auth=USERS)
    routes = every_route(app)
    expected = {("POST", "/sdapi/v1/txt2img"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/sdapi/v1/memory")}
    assert expected <= set(routes)
    assert len([route for route in app.routes if isinstance(route, APIRoute)]) >= 10

    async def scenario(client):
        for method, path in routes:
            for headers in ({}, basic("alice", "wrong"), basic("mallory", "alice-pass"), basic("alice", "bob-pass")):
                response = await client.request(method, path, headers=headers, json={} if method == "POST" else None)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == 'Basic realm="Serena"'
                assert response.json()["error"] == "unauthorized"

    run(app, scenario)


def test_each_of_several_users_gets_in_with_their_own_password_only():
    app = create_app(outdir="out", auth=USERS)

    async def scenario(client):
        for user, password in USERS.items():
            assert (await client.get("/sdapi/v1/samplers", headers=basic(user, password))).status_code == 200
        assert (await client.get("/sdapi/v1/samplers", headers=basic("alice", USERS["bob"]))).status_code == 401
        assert (await client.get("/sdapi/v1/samplers", headers=basic("bob", USERS["alice"]))).status_code == 401

    run(app, scenario)


@pytest.mark.parametrize(
    "host, auth, warned",
    [("0.0.0.0", None, True), ("192.168.1.5", None, True), ("0.0.0.0", USERS, False), ("127.0.0.1", None, False)]
    + [("localhost", None, False), ("::1", None, False)],
)
def test_serving_beyond_this_machine_without_auth_warns(monkeypatch, capsys, host, auth, warned):
    started = []
    monkeypatch.setattr(server.uvicorn, "run", lambda app, **options: started.append(options))
    server.serve(create_app(outdir="out", auth=auth), host=host, port=7861)
    assert started and started[0]["host"] == host
    warning = f"serena: warning: serving on {host} without --api-auth: anyone who can reach it can use it"
    assert (warning in capsys.readouterr().err.splitlines()) is warned
