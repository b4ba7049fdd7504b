"""The REST API against a real `serena serve` on 127.0.0.1 (see conftest.py), generating with the default model."""

import asyncio
import base64
import datetime
import io
import json
import threading
import time

import httpx
import pytest
from face_helpers import AUTH, b64_png, decode_b64
from helpers import load_png, png_of
from PIL import Image

from modules.api import ApiLimits, create_app
from modules.api.models import StableDiffusionImg2ImgProcessingAPI, StableDiffusionTxt2ImgAPI
from modules.default_model import DEFAULT_MODEL_DIR
from modules.processing import StableDiffusionProcessingTxt2Img, process_images

ENDPOINTS = {
    "txt2img": ("POST", "/sdapi/v1/txt2img"),
    "img2img": ("POST", "/sdapi/v1/img2img"),
    "png-info": ("POST", "/sdapi/v1/png-info"),
    "options": ("POST", "/sdapi/v1/options"),
}
SMALL_IMAGE = b64_png(Image.new("RGB", (40, 24), (200, 40, 40)))
HUGE_IMAGE = b64_png(Image.new("L", (3000, 3000)))  # a few KB of PNG, 9 megapixels
NOT_AN_IMAGE = base64.b64encode(b"hello, I am text").decode()


@pytest.fixture
def client(api_server):
    with api_server.client() as client:
        yield client


def post_ok(client, path: str, body: dict) -> dict:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition, client, timeout: float = 120.0) -> dict:
    """Poll /progress until `condition(progress)` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = client.get("/sdapi/v1/progress").json()
        if condition(progress):
            return progress
        time.sleep(0.02)
    pytest.fail(f"progress never reached the expected state; last: {progress}")


def test_request_models_carry_the_webui_api_defaults():
    txt2img = StableDiffusionTxt2ImgAPI()
    assert (txt2img.steps, txt2img.cfg_scale, txt2img.sampler_index, txt2img.sampler_name) == (50, 7.0, "Euler", None)
    assert (txt2img.seed, txt2img.subseed, txt2img.batch_size, txt2img.n_iter) == (-1, -1, 1, 1)
    assert (txt2img.send_images, txt2img.save_images, txt2img.enable_hr) == (True, False, False)
    img2img = StableDiffusionImg2ImgProcessingAPI()
    assert (img2img.denoising_strength, img2img.resize_mode, img2img.include_init_images) == (0.75, 0, False)


def test_read_endpoints_answer_with_the_webui_shapes(client):
    samplers = client.get("/sdapi/v1/samplers").json()
    assert {"Euler a", "DPM++ 2M", "DDIM"} <= {sampler["name"] for sampler in samplers}
    assert set(samplers[0]) == {"name", "aliases", "options"}
    schedulers = client.get("/sdapi/v1/schedulers").json()
    assert [(item["name"], item["label"]) for item in schedulers][:2] == [
        ("automatic", "Automatic"),
        ("karras", "Karras"),
    ]
    progress = client.get("/sdapi/v1/progress").json()
    assert progress["progress"] == 0 and progress["current_image"] is None
    assert {"job_count", "job_no", "sampling_step", "sampling_steps", "interrupted", "skipped"} <= set(
        progress["state"]
    )
    options = client.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"].startswith("serena-default [")
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for name in ("txt2img", "img2img", "png-info", "samplers", "schedulers", "sd-models", "options", "progress"):
        assert f"/sdapi/v1/{name}" in paths
    assert {"/sdapi/v1/interrupt", "/sdapi/v1/skip"} <= set(paths)


def test_sd_models_lists_only_checkpoints_inside_the_models_folder(client):
    listed = client.get("/sdapi/v1/sd-models").json()
    # The embedded models, then the folder's ("linked" leads outside it)
    assert [item["model_name"] for item in listed] == [
        "serena-default",
        "serena-scenes",
        "serena-flow",
        "broken",
        "tiny",
    ]
    tiny = listed[4]
    assert tiny["title"] == f"tiny [{tiny['hash']}]" and tiny["sha256"].startswith(tiny["hash"])
    assert [item["architecture"] for item in listed] == ["sd", "sd", "sd3", "unknown", "sd"]  # "broken" cannot be read


def test_txt2img_image_round_trips_through_png_info_with_the_same_parameters(client):
    request = {
        "prompt": "a red square",
        "negative_prompt": "blurry",
        "seed": 1234,
        "steps": 5,
        "cfg_scale": 6.5,
        "sampler_name": "DPM++ 2M",
        "scheduler": "karras",
        "width": 40,
        "height": 32,
        "batch_size": 2,
    }
    body = post_ok(client, "/sdapi/v1/txt2img", request)
    info = json.loads(body["info"])
    assert info["all_seeds"] == [1234, 1235] and len(body["images"]) == 2
    assert body["parameters"]["seed"] == 1234 and body["parameters"]["sampler_index"] == "Euler"  # request + defaults
    for encoded, seed, text in zip(body["images"], info["all_seeds"], info["infotexts"]):
        assert load_png(decode_b64(encoded)).size == (40, 32)
        png_info = post_ok(client, "/sdapi/v1/png-info", {"image": "data:image/png;base64," + encoded})
        assert png_info["info"] == text
        parameters = png_info["parameters"]
        assert parameters["Prompt"] == "a red square" and parameters["Negative prompt"] == "blurry"
        assert (parameters["Steps"], parameters["Sampler"], parameters["Schedule type"]) == ("5", "DPM++ 2M", "Karras")
        assert (parameters["CFG scale"], parameters["Seed"]) == ("6.5", str(seed))
        assert (parameters["Size-1"], parameters["Size-2"]) == ("40", "32")


def test_png_info_of_an_image_without_parameters_is_empty(client):
    assert post_ok(client, "/sdapi/v1/png-info", {"image": SMALL_IMAGE}) == {"info": "", "items": {}, "parameters": {}}


def test_img2img_takes_base64_init_images(client):
    init = "data:image/png;base64," + SMALL_IMAGE
    request = {"init_images": [init], "prompt": "x", "seed": 7, "steps": 6, "denoising_strength": 0.5}
    body = post_ok(client, "/sdapi/v1/img2img", request | {"width": 32, "height": 24, "include_init_images": True})
    assert load_png(decode_b64(body["images"][0])).size == (32, 24)
    assert json.loads(body["info"])["denoising_strength"] == 0.5
    assert "Denoising strength: 0.5" in json.loads(body["info"])["infotexts"][0]
    assert body["parameters"]["init_images"] == [init]
    assert post_ok(client, "/sdapi/v1/img2img", request)["parameters"]["init_images"] is None  # the webui's default


def test_save_images_writes_into_the_servers_output_folder(client, api_server):
    body = post_ok(client, "/sdapi/v1/txt2img", {"seed": 21, "steps": 3, "batch_size": 2, "save_images": True})
    info = json.loads(body["info"])
    assert info["index_of_first_image"] == 1 and len(body["images"]) == 3  # the grid first, like the webui
    today = datetime.date.today().isoformat()
    samples = sorted((api_server.outdir / "txt2img-images" / today).glob("*.png"))
    assert [path.name.split("-", 1)[1] for path in samples] == ["21.png", "22.png"]
    assert [path.read_bytes() for path in samples] == [decode_b64(image) for image in body["images"][1:]]
    assert len(list((api_server.outdir / "txt2img-grids" / today).glob("*.png"))) == 1
    assert post_ok(client, "/sdapi/v1/txt2img", {"seed": 23, "steps": 3, "send_images": False})["images"] == []
    assert len(list(api_server.outdir.rglob("*.png"))) == 3  # save_images defaults to false


def test_checkpoints_are_chosen_by_name_from_the_models_folder(client):
    tiny_title = client.get("/sdapi/v1/sd-models").json()[4]["title"]
    request = {"seed": 3, "steps": 3}
    once = post_ok(client, "/sdapi/v1/txt2img", request | {"override_settings": {"sd_model_checkpoint": tiny_title}})
    assert json.loads(once["info"])["sd_model_name"] == "tiny"
    try:
        assert post_ok(client, "/sdapi/v1/options", {"sd_model_checkpoint": "tiny"}) is None
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == tiny_title
        assert json.loads(post_ok(client, "/sdapi/v1/txt2img", request)["info"])["sd_model_name"] == "tiny"
    finally:
        post_ok(client, "/sdapi/v1/options", {"sd_model_checkpoint": "serena-default"})
    assert json.loads(post_ok(client, "/sdapi/v1/txt2img", request)["info"])["sd_model_name"] == "serena-default"
    # An embedded model is chosen by its name, wherever the models folder is.
    scenes = request | {
        "prompt": "a photo of a red circle",
        "override_settings": {"sd_model_checkpoint": "serena-scenes"},
    }
    answer = post_ok(client, "/sdapi/v1/txt2img", scenes)
    assert json.loads(answer["info"])["sd_model_name"] == "serena-scenes"
    assert Image.open(io.BytesIO(decode_b64(answer["images"][0]))).size == (64, 64)


def test_eight_concurrent_clients_each_get_exactly_their_own_images(api_server):
    def request(seed: int) -> dict:
        return {"prompt": f"shape number {seed}", "seed": seed, "steps": 4, "batch_size": 2, "sampler_name": "Euler"}

    seeds = [100 + 10 * client_no for client_no in range(8)]
    responses = {}

    def call(seed):
        with api_server.client() as client:
            responses[seed] = client.post("/sdapi/v1/txt2img", json=request(seed))

    threads = [threading.Thread(target=call, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(responses) == seeds
    for seed in seeds:
        assert responses[seed].status_code == 200, responses[seed].text
        body = responses[seed].json()
        info = json.loads(body["info"])
        assert info["all_seeds"] == [seed, seed + 1] and info["all_prompts"] == [f"shape number {seed}"] * 2
        expected = process_images(
            StableDiffusionProcessingTxt2Img(**request(seed), do_not_save_samples=True, do_not_save_grid=True)
        )
        assert [decode_b64(image) for image in body["images"]] == [png_of(image) for image in expected.images]
    assert api_server.alive()


BAD_REQUESTS = [
    # (case, endpoint, body, status, field)
    ("steps as text", "txt2img", {"steps": "many"}, 422, "steps"),
    ("fractional steps", "txt2img", {"steps": 2.5}, 422, "steps"),
    ("zero steps", "txt2img", {"steps": 0}, 400, "steps"),
    ("steps over the server limit", "txt2img", {"steps": 151}, 400, "steps"),
    ("cfg_scale as text", "txt2img", {"cfg_scale": "high"}, 422, "cfg_scale"),
    ("negative cfg_scale", "txt2img", {"cfg_scale": -1}, 400, "cfg_scale"),
    ("seed as text", "txt2img", {"seed": "lucky"}, 422, "seed"),
    ("seed below -1", "txt2img", {"seed": -5}, 400, "seed"),
    ("seed over 2**32", "txt2img", {"seed": 2**40}, 400, "seed"),
    ("subseed_strength over 1", "txt2img", {"subseed_strength": 1.5}, 400, "subseed_strength"),
    ("width not a multiple of 8", "txt2img", {"width": 33}, 400, "width"),
    ("negative width", "txt2img", {"width": -64}, 400, "width"),
    ("huge width", "txt2img", {"width": 100000}, 400, "width"),
    ("height over the server limit", "txt2img", {"height": 2048}, 400, "height"),
    ("zero batch_size", "txt2img", {"batch_size": 0}, 400, "batch_size"),
    ("batch_size as a bool", "txt2img", {"batch_size": True}, 422, "batch_size"),
    ("too many images", "txt2img", {"batch_size": 8, "n_iter": 8}, 400, "n_iter"),
    ("unknown sampler", "txt2img", {"sampler_name": "Euler z"}, 400, "sampler_name"),
    ("unknown sampler_index", "txt2img", {"sampler_index": "nope"}, 400, "sampler_name"),
    ("unknown scheduler", "txt2img", {"scheduler": "Wavy"}, 400, "scheduler"),
    ("schedule the sampler lacks", "txt2img", {"sampler_name": "Euler a", "scheduler": "Karras"}, 400, "scheduler"),
    ("prompt as a number", "txt2img", {"prompt": 5}, 422, "prompt"),
    ("prompt list of the wrong length", "txt2img", {"prompt": ["a", "b"]}, 400, "prompt"),
    ("prompt over the server limit", "txt2img", {"negative_prompt": "no " * 10_000}, 400, "negative_prompt"),
    ("styles not a list", "txt2img", {"styles": "bold"}, 422, "styles"),
    ("unknown style", "txt2img", {"styles": ["no-such-style"]}, 400, "styles"),
    ("misspelled field", "txt2img", {"promt": "typo"}, 422, "promt"),
    ("hires. fix scale 0", "txt2img", {"enable_hr": True, "hr_scale": 0.0}, 400, "hr_scale"),
    ("an unknown script", "txt2img", {"script_name": "loopback wave"}, 400, "script_name"),
    ("x/y/z plot without its arguments", "txt2img", {"script_name": "x/y/z plot"}, 400, "script_args"),
    (
        "x/y/z plot on an axis Serena lacks",
        "txt2img",
        {"script_name": "X/Y/Z plot", "script_args": ["Face restore", "1,2", [], *[0, "", []] * 2, *[False] * 9]},
        400,
        "script_args",
    ),
    ("NaN as text", "txt2img", {"cfg_scale": "nan"}, 422, "cfg_scale"),
    ("fractional steps as text", "txt2img", {"steps": "3.5"}, 422, "steps"),
    ("true for a quantity", "txt2img", {"steps": True}, 422, "steps"),
    ("client output folder", "txt2img", {"outpath_samples": "../../escape"}, 400, "outpath_samples"),
    ("override_settings not an object", "txt2img", {"override_settings": "x"}, 422, "override_settings"),
    ("unknown override", "txt2img", {"override_settings": {"no_such_option": "x"}}, 400, "override_settings"),
    (
        "clip skip override out of range",
        "txt2img",
        {"override_settings": {"CLIP_stop_at_last_layers": 99}},
        400,
        "override_settings.CLIP_stop_at_last_layers",
    ),
    *[
        (f"checkpoint {case}", "txt2img", {"override_settings": {"sd_model_checkpoint": name}}, 400, field)
        for field in ["override_settings.sd_model_checkpoint"]
        for case, name in [
            ("path traversal", "../models/tiny"),
            ("absolute path", "/etc/passwd"),
            ("path of a real model outside the folder", str(DEFAULT_MODEL_DIR)),
            ("symlinked out of the folder", "linked"),
            ("as a number", 5),
        ]
    ],
    (
        "options: checkpoint path traversal",
        "options",
        {"sd_model_checkpoint": "../../etc/passwd"},
        400,
        "sd_model_checkpoint",
    ),
    ("options: unknown option", "options", {"outdir_samples": "/tmp"}, 400, "outdir_samples"),
    ("options: clip skip as text", "options", {"CLIP_stop_at_last_layers": "two"}, 400, "CLIP_stop_at_last_layers"),
    ("img2img without init_images", "img2img", {"prompt": "x"}, 400, "init_images"),
    ("img2img init_images not a list", "img2img", {"init_images": "abc"}, 422, "init_images"),
    ("img2img bad base64", "img2img", {"init_images": ["not base64!"]}, 400, "init_images[0]"),
    ("img2img base64 of text", "img2img", {"init_images": [NOT_AN_IMAGE]}, 400, "init_images[0]"),
    ("img2img image URL", "img2img", {"init_images": ["http://127.0.0.1:9/x.png"]}, 400, "init_images[0]"),
    ("img2img huge image", "img2img", {"init_images": [HUGE_IMAGE]}, 400, "init_images[0]"),
    ("img2img more images than batch", "img2img", {"init_images": [SMALL_IMAGE] * 2}, 400, "init_images"),
    (
        "img2img strength over 1",
        "img2img",
        {"init_images": [SMALL_IMAGE], "denoising_strength": 1.5},
        400,
        "denoising_strength",
    ),
    ("img2img unknown resize_mode", "img2img", {"init_images": [SMALL_IMAGE], "resize_mode": 9}, 400, "resize_mode"),
    ("img2img mask not an image", "img2img", {"init_images": [SMALL_IMAGE], "mask": NOT_AN_IMAGE}, 400, "mask"),
    ("png-info bad base64", "png-info", {"image": "%%%"}, 400, "image"),
    ("png-info not an image", "png-info", {"image": NOT_AN_IMAGE}, 400, "image"),
    ("png-info without image", "png-info", {}, 422, "image"),
    ("body not JSON", "txt2img", b"{not json", 422, None),
    ("body a JSON list", "txt2img", [1, 2], 422, None),
]


@pytest.mark.parametrize(
    "endpoint, body, status, field", [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS]
)
def test_malformed_requests_are_refused_naming_the_field(client, endpoint, body, status, field):
    method, path = ENDPOINTS[endpoint]
    if isinstance(body, bytes):
        response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "field", "detail"}
    if field is not None:
        assert error["field"] == field
    if status == 400:
        assert error["detail"].startswith(error["field"] + ":")


def test_a_bad_progress_flag_is_refused(client):
    response = client.get("/sdapi/v1/progress", params={"skip_current_image": "maybe"})
    assert response.status_code == 422 and response.json()["field"] == "skip_current_image"


def test_a_good_request_still_works_after_the_malformed_ones(client, api_server):
    assert len(BAD_REQUESTS) >= 30
    body = post_ok(client, "/sdapi/v1/txt2img", {"prompt": "fine", "seed": 1, "steps": 3})
    assert json.loads(body["info"])["all_seeds"] == [1] and len(body["images"]) == 1
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("serena-default [")
    assert api_server.alive()


def test_bodies_over_the_request_limit_are_refused_with_413(client):
    oversized = b"x" * (4 * 2**20 + 1)
    response = client.post("/sdapi/v1/png-info", content=oversized, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    chunks = (oversized[start : start + 2**16] for start in range(0, len(oversized), 2**16))  # no Content-Length
    response = client.post("/sdapi/v1/png-info", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_a_failing_generation_is_a_500_and_the_server_keeps_serving(client, api_server):
    response = client.post(
        "/sdapi/v1/txt2img", json={"steps": 2, "override_settings": {"sd_model_checkpoint": "broken"}}
    )
    assert response.status_code == 500
    assert response.json()["error"] and response.json()["detail"]
    assert post_ok(client, "/sdapi/v1/txt2img", {"seed": 2, "steps": 2})["images"]
    assert api_server.alive()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [None, basic(AUTH[0], "wrong"), basic("mallory", AUTH[1]), basic(AUTH[0], ""), "Bearer abc", "Basic !!!"],
    ids=["missing", "wrong password", "unknown user", "empty password", "not basic", "not base64"],
)
def test_auth_rejects_missing_or_wrong_credentials_everywhere(api_server, authorization):
    headers = {"authorization": authorization} if authorization else {}
    with httpx.Client(base_url=api_server.url, timeout=30) as anonymous:
        for method, path in [("GET", "/sdapi/v1/progress"), ("POST", "/sdapi/v1/txt2img"), ("GET", "/docs")]:
            response = anonymous.request(method, path, headers=headers, json={} if method == "POST" else None)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Basic")
        correct = {"authorization": basic(*AUTH)}
        assert anonymous.get("/sdapi/v1/progress", headers=correct).status_code == 200


def test_an_app_without_auth_serves_everyone_and_applies_its_own_limits():
    app = create_app(outdir="out", limits=ApiLimits(max_images=2, max_queued_jobs=1, max_width=64, max_height=64))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serena", timeout=120) as client:
            assert (await client.get("/sdapi/v1/samplers")).status_code == 200
            over = await client.post("/sdapi/v1/txt2img", json={"batch_size": 3})
            assert over.status_code == 400 and over.json()["error"] == "limit exceeded"
            assert (await client.post("/sdapi/v1/txt2img", json={"width": 72})).json()["field"] == "width"
            long_job = asyncio.create_task(
                client.post("/sdapi/v1/txt2img", json={"seed": 9, "steps": 40, "n_iter": 2, "sampler_name": "Euler"})
            )
            for _ in range(6000):
                if (await client.get("/sdapi/v1/progress")).json()["state"]["sampling_step"] >= 2:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the long job never reached step 2")
            full = await client.post("/sdapi/v1/txt2img", json={"steps": 2})
            assert full.status_code == 503 and full.json()["error"] == "queue full"
            await client.post("/sdapi/v1/interrupt")
            finished = await long_job
            assert finished.status_code == 200 and json.loads(finished.json()["info"])["interrupted"] is True

    asyncio.run(scenario())


def test_infotext_sets_the_fields_a_request_leaves_unset_and_the_servers_model_runs(client, api_server):
    made = post_ok(client, "/sdapi/v1/txt2img", {"prompt": "a green square on a red background", "seed": 5, "steps": 4})
    text = json.loads(made["info"])["infotexts"][0]
    recorded_hash = text.split("Model hash: ")[1][:10]
    # As another machine wrote it: a model not installed here, under another name.
    elsewhere = text.replace("Model: serena-default", "Model: shapes-v1-from-a-colleague")
    again = post_ok(client, "/sdapi/v1/txt2img", {"infotext": elsewhere})
    assert load_png(decode_b64(again["images"][0])).tobytes() == load_png(decode_b64(made["images"][0])).tobytes()
    assert json.loads(again["info"])["infotexts"][0] == text  # seed, steps, prompt and size all from the infotext
    fewer = post_ok(client, "/sdapi/v1/txt2img", {"infotext": elsewhere, "steps": 3})  # the request's own field wins
    assert "Steps: 3," in json.loads(fewer["info"])["infotexts"][0]
    assert "Seed: 5," in json.loads(fewer["info"])["infotexts"][0]
    other_hash = elsewhere.replace(f"Model hash: {recorded_hash}", "Model hash: 0123456789")
    post_ok(client, "/sdapi/v1/txt2img", {"infotext": other_hash, "steps": 1})
    logged = api_server.log.read_text()  # the server's output shows serena.api's log
    assert "serena.api: infotext: the image records model hash 0123456789 (shapes-v1-from-a-colleague)" in logged
    bad = client.post("/sdapi/v1/txt2img", json={"infotext": text.replace("Steps: 4", "Steps: many")})
    assert bad.status_code == 400 and bad.json()["field"] == "infotext", bad.text


def test_the_api_returns_the_maps_and_film_strips_and_saves_them_beside_saved_images(api_server):
    plain = {"prompt": "a red circle on a blue background", "steps": 4, "seed": 9413}
    request = plain | {"attention_maps": True, "trajectory": True}
    with api_server.client() as client:
        answer = client.post("/sdapi/v1/txt2img", json=request | {"save_images": True})
        refused = client.post("/sdapi/v1/txt2img", json=request | {"script_name": "x/y/z plot"})
        unobserved = client.post("/sdapi/v1/txt2img", json=plain)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    words = [entry["word"] for entry in body["attention_maps"][0]]
    assert words == ["a", "red", "circle", "on", "a", "blue", "background"] and len(body["trajectories"]) == 1
    grey = Image.open(io.BytesIO(base64.b64decode(body["attention_maps"][0][2]["map"])))
    assert grey.mode == "L" and grey.size == (32, 32)
    image_path = next(api_server.outdir.rglob("*-9413.png"))
    beside = sorted(path.name for path in image_path.parent.glob(f"{image_path.stem}-*.png"))
    assert beside == [f"{image_path.stem}-attention-{n:02d}-{word}.png" for n, word in enumerate(words)] + [
        f"{image_path.stem}-trajectory.png"
    ]
    assert refused.status_code == 400 and refused.json()["field"] == "attention_maps"
    assert unobserved.json()["images"] == body["images"] and unobserved.json()["attention_maps"] is None


def test_every_checkpoint_name_the_schema_offers_is_one_the_server_accepts(tmp_path):
    """Found by the fuzzer: the schema offered an embedded model's folder name ("weights"), which the server refused."""
    from modules.api import requests, schema

    (tmp_path / "tiny").symlink_to(DEFAULT_MODEL_DIR, target_is_directory=True)
    (enum,) = schema.checkpoint_forms(tmp_path, ("", "None"))
    for name in enum["enum"][2:]:  # after "" and "None", which keep the first pass's model
        requests.find_checkpoint(name, tmp_path, "refiner_checkpoint")
    assert "serena-scenes" in enum["enum"] and "weights" not in enum["enum"]


def test_the_hires_image_is_held_to_the_servers_size_limits(tmp_path):
    from modules.api import ApiLimits
    from modules.api.requests import ApiError, ServerOptions, txt2img_processing

    limits = ApiLimits(max_width=64, max_height=64)
    options = ServerOptions(DEFAULT_MODEL_DIR.parent, tmp_path)
    request = StableDiffusionTxt2ImgAPI(prompt="x", steps=2, enable_hr=True, hr_scale=2.0)
    assert txt2img_processing(request, options, limits).hr_scale == 2.0  # 32 px native: a 64 px hires image
    with pytest.raises(ApiError, match="^hr_scale: the hires image would be 96x96, over this server's limit of 64x64"):
        txt2img_processing(request.model_copy(update={"hr_scale": 3.0}), options, limits)
