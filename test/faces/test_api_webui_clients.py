"""The API as the webui's clients use it (issue 16): payloads in the shapes they send, the webui's options, progress
with task ids, interrupt, and the server endpoints. Against the real `serena serve` of conftest.py."""

import base64
import datetime
import io
import json
import threading
import time

import pytest
from face_helpers import b64_png, decode_b64
from PIL import Image

from modules import images
from modules.api import webui_options

SMALL_IMAGE = b64_png(Image.new("RGB", (40, 24), (200, 40, 40)))
QUICK = {"prompt": "a red circle on a blue background", "seed": 11, "steps": 3}


@pytest.fixture
def client(api_server):
    with api_server.client() as client:
        yield client


def info_of(response) -> dict:
    return json.loads(response.json()["info"])


def ignored_header(response) -> list[str]:
    return response.headers.get("x-serena-ignored-fields", "").split(", ")


# (case, endpoint, body, check of the response): payloads as webui clients send them, each with its effect.
WORKING_PAYLOADS = [
    ("numeric strings", "txt2img", QUICK | {"cfg_scale": "7", "seed": "2", "steps": "3"},
     lambda r: (info_of(r)["cfg_scale"], info_of(r)["seed"], info_of(r)["steps"]) == (7.0, 2, 3)),
    ("integral float for steps", "txt2img", QUICK | {"steps": 3.0, "batch_size": 2.0},
     lambda r: info_of(r)["steps"] == 3 and len(info_of(r)["all_seeds"]) == 2),
    ("null means the default", "txt2img",
     QUICK | {"negative_prompt": None, "sampler_index": None, "script_args": None, "styles": None, "width": None},
     lambda r: (info_of(r)["negative_prompt"], info_of(r)["sampler_name"], info_of(r)["width"]) == ("", "Euler", 32)),
    ("unknown SD.Next-era fields are ignored and named", "txt2img",
     QUICK | {"hr_force": False, "refiner_start": 0.8, "clip_skip": 1, "full_quality": True},
     lambda r: ignored_header(r) == ["hr_force", "refiner_start", "clip_skip", "full_quality"]),
    ("booleans for integer codes", "img2img",
     QUICK | {"init_images": [SMALL_IMAGE], "inpainting_mask_invert": False, "inpainting_fill": False},
     lambda r: len(r.json()["images"]) == 1),
    ("0/1 and 'true' for flags", "txt2img", QUICK | {"send_images": 0, "seed_enable_extras": "true"},
     lambda r: r.json()["images"] == []),
    ("legacy sampler name with its schedule", "txt2img", QUICK | {"sampler_name": "DPM++ 2M Karras"},
     lambda r: (info_of(r)["sampler_name"], info_of(r)["scheduler"]) == ("DPM++ 2M", "Karras")),
    ("legacy SDE name with its schedule", "txt2img", QUICK | {"sampler_name": "DPM++ 2M SDE Karras"},
     lambda r: (info_of(r)["sampler_name"], info_of(r)["scheduler"]) == ("DPM++ 2M SDE", "Karras")),
    ("legacy name in sampler_index", "txt2img", QUICK | {"sampler_index": "DPM++ 2M Karras"},
     lambda r: "Sampler: DPM++ 2M, Schedule type: Karras," in info_of(r)["infotexts"][0]),
    ("Euler a", "txt2img", QUICK | {"sampler_name": "Euler a"},
     lambda r: (info_of(r)["sampler_name"], info_of(r)["scheduler"]) == ("Euler a", "Automatic")),
    ("override: clip skip as a numeric string", "txt2img",
     QUICK | {"override_settings": {"CLIP_stop_at_last_layers": "2"}},
     lambda r: "Clip skip: 2" in info_of(r)["infotexts"][0]),
    ("override: ENSD", "txt2img",
     QUICK | {"sampler_name": "Euler a", "override_settings": {"eta_noise_seed_delta": 31337}},
     lambda r: "ENSD: 31337" in info_of(r)["infotexts"][0]),
    ("override: a stored option has no effect", "txt2img",
     QUICK | {"override_settings": {"send_seed": False, "sd_vae": "Automatic"},
              "override_settings_restore_afterwards": True},
     lambda r: "ENSD" not in info_of(r)["infotexts"][0] and len(r.json()["images"]) == 1),
    ("png-info with an unknown field", "png-info", {"image": SMALL_IMAGE, "extra": 1},
     lambda r: r.json()["info"] == "" and ignored_header(r) == ["extra"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "endpoint, body, check", [case[1:] for case in WORKING_PAYLOADS], ids=[case[0] for case in WORKING_PAYLOADS]
)
def test_webui_client_payloads_work_with_their_effect(client, endpoint, body, check):
    response = client.post(f"/sdapi/v1/{endpoint}", json=body)
    assert response.status_code == 200, response.text
    assert check(response), response.text[:2000]
    if endpoint != "png-info" and "hr_force" not in body:
        assert "x-serena-ignored-fields" not in response.headers


def test_nan_in_a_raw_body_is_refused_naming_the_field(client):
    response = client.post(
        "/sdapi/v1/txt2img", content=b'{"steps": 3, "cfg_scale": NaN}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["field"] == "cfg_scale"


def test_unknown_names_with_any_characters_are_named_escaped_in_the_header(client):
    # Found by the schemathesis fuzz: a non-latin-1, line-break or empty name in the header broke the answer.
    body = '{"\\u00f3K": 1, "a\\nb": 2, "\\ud920\\ude12": 3, "": 4, "plain": 5}'
    response = client.post("/sdapi/v1/options", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert ignored_header(response) == ['"\\u00f3K"', '"a\\nb"', '"\\ud920\\ude12"', '""', "plain"]


def test_a_legacy_sampler_name_gives_the_same_image_as_sampler_and_schedule(client):
    legacy = client.post("/sdapi/v1/txt2img", json=QUICK | {"sampler_name": "DPM++ 2M Karras"}).json()
    split = client.post("/sdapi/v1/txt2img", json=QUICK | {"sampler_name": "DPM++ 2M", "scheduler": "karras"}).json()
    assert decode_b64(legacy["images"][0]) == decode_b64(split["images"][0])


def test_options_list_every_webui_option_and_echo_stored_ones(client):
    options = client.get("/sdapi/v1/options").json()
    assert set(webui_options.STORED_OPTIONS) | set(webui_options.SERVER_OPTIONS) <= set(options)
    honoured = {"sd_model_checkpoint", "CLIP_stop_at_last_layers", "eta_ddim", "eta_noise_seed_delta"}
    assert honoured | {"samples_save", "grid_save", "samples_format"} <= set(options)
    assert options["samples_format"] == "png" and options["send_seed"] is True and options["jpeg_quality"] == 80
    try:
        response = client.post("/sdapi/v1/options", json={"send_seed": False, "jpeg_quality": "90", "my_ext_opt": 1})
        assert response.status_code == 200 and ignored_header(response) == ["my_ext_opt"]
        echoed = client.get("/sdapi/v1/options").json()
        assert (echoed["send_seed"], echoed["jpeg_quality"]) == (False, "90")  # stored as given
        assert "my_ext_opt" not in echoed
    finally:
        client.post("/sdapi/v1/options", json={"send_seed": True, "jpeg_quality": 80})


def test_samples_format_and_outdir_options_choose_how_and_where_images_are_saved(client, api_server):
    try:
        set_options = {"samples_format": "jpg", "outdir_txt2img_samples": "client-folder", "grid_save": False}
        assert client.post("/sdapi/v1/options", json=set_options).status_code == 200
        assert client.get("/sdapi/v1/options").json()["outdir_txt2img_samples"] == str(
            api_server.outdir.resolve() / "client-folder"
        )
        grids_before = len(list(api_server.outdir.rglob("*-grid.*")))
        body = client.post("/sdapi/v1/txt2img", json=QUICK | {"seed": 71, "batch_size": 2, "save_images": True}).json()
        today = datetime.date.today().isoformat()
        saved = sorted((api_server.outdir / "client-folder" / today).glob("*"))
        assert [path.name.split("-", 1)[1] for path in saved] == ["71.jpg", "72.jpg"]
        assert len(list(api_server.outdir.rglob("*-grid.*"))) == grids_before  # grid_save off
        infotexts = json.loads(body["info"])["infotexts"]
        assert [images.read_infotext(path) for path in saved] == infotexts  # the EXIF comment, as the webui writes it
        png_info = client.post("/sdapi/v1/png-info", json={"image": b64_of_file(saved[0])}).json()
        assert png_info["info"] == infotexts[0] and png_info["parameters"]["Seed"] == "71"

        assert client.post("/sdapi/v1/options", json={"samples_save": False}).status_code == 200
        client.post("/sdapi/v1/txt2img", json=QUICK | {"seed": 75, "save_images": True})
        assert len(list((api_server.outdir / "client-folder" / today).glob("*"))) == 2  # samples_save off
    finally:
        client.post(
            "/sdapi/v1/options",
            json={
                "samples_format": "png",
                "outdir_txt2img_samples": "txt2img-images",
                "grid_save": True,
                "samples_save": True,
            },
        )


def b64_of_file(path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


BAD_OPTIONS = [
    ({"outdir_samples": "/etc"}, "outdir_samples"),
    ({"outdir_txt2img_grids": "../../escape"}, "outdir_txt2img_grids"),
    ({"samples_format": "gif"}, "samples_format"),
    ({"eta_noise_seed_delta": "lots"}, "eta_noise_seed_delta"),
    ({"live_previews_enable": "maybe"}, "live_previews_enable"),
    ({"samles_save": True}, "samles_save"),  # one slip from a known option: refused, not ignored
]


@pytest.mark.parametrize("body, field", BAD_OPTIONS, ids=[field for _, field in BAD_OPTIONS])
def test_bad_option_values_are_refused_naming_the_option_and_nothing_changes(client, body, field):
    before = client.get("/sdapi/v1/options").json()
    response = client.post("/sdapi/v1/options", json=body | {"send_size": False})
    assert response.status_code == 400 and response.json()["field"] == field, response.text
    assert response.json()["detail"].startswith(field + ":")
    assert client.get("/sdapi/v1/options").json() == before


def test_an_override_folder_outside_the_output_folder_is_refused(client):
    response = client.post("/sdapi/v1/txt2img", json=QUICK | {"override_settings": {"outdir_samples": "/etc"}})
    assert response.status_code == 400 and response.json()["field"] == "override_settings.outdir_samples"


def test_a_monitor_polling_progress_sees_job_timestamp_change_per_job(client, api_server):
    seen, stop = [], threading.Event()

    def monitor():
        with api_server.client() as polling:
            while not stop.is_set():
                state = polling.get("/sdapi/v1/progress").json()["state"]
                assert {"skipped", "interrupted", "stopping_generation", "job", "job_count", "job_timestamp"} <= set(
                    state
                ) and {"job_no", "sampling_step", "sampling_steps"} <= set(state)
                if state["job_count"] and (not seen or seen[-1] != state["job_timestamp"]):
                    seen.append(state["job_timestamp"])
                time.sleep(0.005)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    try:
        timestamps = [
            info_of(client.post("/sdapi/v1/txt2img", json=QUICK | {"steps": 30, "seed": seed}))["job_timestamp"]
            for seed in (1, 2, 3)
        ]
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert len(set(timestamps)) == 3 and timestamps == sorted(timestamps)  # within one second too
    assert seen == timestamps
    assert client.get("/sdapi/v1/progress").json()["state"]["job_timestamp"] == timestamps[-1]  # idle: the last


def test_two_clients_each_follow_their_own_task_id(client, api_server):
    results = {}

    def generate(task_id, body):
        with api_server.client() as own:
            results[task_id] = own.post("/sdapi/v1/txt2img", json=body | {"force_task_id": task_id})

    first = threading.Thread(target=generate, args=("task-a", QUICK | {"steps": 150, "n_iter": 4, "seed": 5}))
    first.start()
    try:
        running = poll_task(client, "task-a", lambda answer: answer["active"] and answer["progress"] > 0)
        second = threading.Thread(target=generate, args=("task-b", QUICK | {"steps": 5, "seed": 9}))
        second.start()
        waiting = poll_task(client, "task-b", lambda answer: answer["queued"])
        assert waiting["queue_position"] == 1 and waiting["textinfo"] == "In queue: 1/1" and not waiting["active"]
        with_preview = poll_task(client, "task-a", lambda answer: answer["live_preview"] is not None)
        assert with_preview["live_preview"].startswith("data:image/png;base64,") and with_preview["id_live_preview"] > 0
        again = client.post(
            "/internal/progress", json={"id_task": "task-a", "id_live_preview": with_preview["id_live_preview"]}
        ).json()
        assert again["live_preview"] is None or again["id_live_preview"] > with_preview["id_live_preview"]
        assert 0 < running["progress"] < 1 and running["eta"] is not None
    finally:
        client.post("/sdapi/v1/interrupt")  # task-a was long only to be watched; it returns its batch so far
        first.join(timeout=120)
        second.join(timeout=120)
    for task_id, seed in (("task-a", 5), ("task-b", 9)):
        assert results[task_id].status_code == 200 and info_of(results[task_id])["seed"] == seed
        done = client.post("/internal/progress", json={"id_task": task_id}).json()
        assert done["completed"] and not done["active"] and not done["queued"]
    unknown = client.post("/internal/progress", json={"id_task": "never-sent"}).json()
    assert not (unknown["active"] or unknown["queued"] or unknown["completed"])


def poll_task(client, task_id, condition, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.post("/internal/progress", json={"id_task": task_id}).json()
        if condition(answer):
            return answer
        time.sleep(0.01)
    pytest.fail(f"task {task_id} never reached the state; last: {answer}")


def test_interrupt_returns_the_image_in_progress_decoded_like_the_webui(client, api_server):
    result = {}

    def generate():
        with api_server.client() as own:
            result["response"] = own.post("/sdapi/v1/txt2img", json=QUICK | {"steps": 150, "seed": 31})

    thread = threading.Thread(target=generate)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while client.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.post("/sdapi/v1/interrupt").json() == {}
    finally:
        thread.join(timeout=120)
    body = result["response"].json()
    info = json.loads(body["info"])
    assert info["interrupted"] is True and info["all_seeds"] == [31] and len(body["images"]) == 1
    assert Image.open(io.BytesIO(decode_b64(body["images"][0]))).size == (32, 32)


def test_live_previews_enable_off_leaves_progress_without_an_image(client, api_server):
    assert client.post("/sdapi/v1/options", json={"live_previews_enable": False}).status_code == 200

    def generate():
        with api_server.client() as own:
            own.post("/sdapi/v1/txt2img", json=QUICK | {"steps": 150, "n_iter": 4})

    thread = threading.Thread(target=generate)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            progress = client.get("/sdapi/v1/progress").json()
            if progress["state"]["sampling_step"] >= 3:
                break
            time.sleep(0.01)
        assert progress["current_image"] is None and progress["state"]["sampling_step"] >= 3
    finally:
        client.post("/sdapi/v1/interrupt")
        thread.join(timeout=120)
        client.post("/sdapi/v1/options", json={"live_previews_enable": True})


def test_server_endpoints_answer_in_the_webui_shapes(client, api_server):
    flags = client.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and flags["api_server_stop"] is False and flags["api_auth"] is None
    assert flags["ckpt_dir"] == str(api_server.models_dir)
    assert client.get("/sdapi/v1/sd-vae").json() == []
    for path in ("refresh-checkpoints", "refresh-vae", "unload-checkpoint", "reload-checkpoint"):
        response = client.post(f"/sdapi/v1/{path}")
        assert response.status_code == 200 and response.json() is None, path
    memory = client.get("/sdapi/v1/memory").json()
    assert memory["ram"]["total"] > memory["ram"]["free"] > 0 and memory["ram"]["used"] > 0
    assert "error" in memory["cuda"] or memory["cuda"]["system"]["total"] > 0
    assert client.get("/sdapi/v1/scripts").json().keys() == {"txt2img", "img2img"}
    assert isinstance(client.get("/sdapi/v1/script-info").json(), list)
    assert client.post("/sdapi/v1/server-stop").status_code == 404  # only with --api-server-stop
    assert api_server.alive()


def test_prompt_styles_are_listed_created_and_applied(client):
    style = {"name": "poster", "prompt": "{prompt}, poster art", "negative_prompt": "blurry"}
    assert client.post("/sdapi/v1/prompt-styles", json=style).status_code == 200
    assert style in client.get("/sdapi/v1/prompt-styles").json()
    info = info_of(client.post("/sdapi/v1/txt2img", json=QUICK | {"styles": ["poster"]}))
    assert info["prompt"] == QUICK["prompt"] + ", poster art" and info["negative_prompt"] == "blurry"
    assert client.post("/sdapi/v1/prompt-styles", json={"name": ""}).status_code == 422


def test_xyz_plot_runs_through_script_name_and_script_args_as_webui_clients_send_them(client):
    infos = client.get("/sdapi/v1/script-info").json()
    xyz = next(info for info in infos if info["name"] == "x/y/z plot" and not info["is_img2img"])
    choices = xyz["args"][0]["choices"]
    steps, sampler, nothing = choices.index("Steps"), choices.index("Sampler"), choices.index("Nothing")
    args = [steps, "2-4", [], sampler, "", ["Euler", "DDIM"], nothing, "", [], True, True, False, False]
    args += [False, False, False, 0, False]  # vary_seeds_x/y/z, margin_size, csv_mode (webui 1.6+)
    assert client.get("/sdapi/v1/scripts").json()["txt2img"] == ["x/y/z plot"]
    response = client.post("/sdapi/v1/txt2img", json=QUICK | {"script_name": "X/Y/Z plot", "script_args": args})
    assert response.status_code == 200, response.text
    body, info = response.json(), info_of(response)
    assert len(body["images"]) == 1 + 6 and info["all_seeds"] == [11] * 6  # the grid, then each cell
    cells = [text.split("\n")[-1] for text in info["infotexts"][1:]]
    assert [("Steps: 2," in text, "Sampler: DDIM" in text) for text in cells[:4]] == [
        (True, False),
        (False, False),
        (False, False),
        (True, True),
    ]
    grid = Image.open(io.BytesIO(decode_b64(body["images"][0])))
    assert grid.width > 3 * 32 and grid.height > 2 * 32
    alone = client.post("/sdapi/v1/txt2img", json=QUICK | {"steps": 3, "sampler_name": "DDIM"}).json()["images"][0]
    assert decode_b64(body["images"][5]) == decode_b64(alone)  # the cell (steps 3, DDIM) is the plain job's image
