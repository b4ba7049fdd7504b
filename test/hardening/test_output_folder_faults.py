"""A full, read-only or forbidden output folder: the API answers 500 naming the folder and the reason, nothing
half-written stays behind, and the server keeps serving (the next request, and saving once space is back).

ENOSPC and EROFS are real: a tiny tmpfs mounted by the test (needs root; skipped otherwise). EACCES comes from a
fault-injecting layer over os.open, because root ignores permission bits.
"""

import asyncio
import errno
import json
import os
import subprocess
import uuid

import httpx
import pytest
from PIL import Image

from modules.api import ApiLimits, create_app

SAVE = {"prompt": "a red circle on a blue background", "seed": 3, "steps": 2, "width": 64, "height": 64}


@pytest.fixture
def tmpfs(tmp_path):
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill(folder, leave_bytes: int):
    """Fill the file system of `folder` up to `leave_bytes` free; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: closing must not write again
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    os.truncate(filler, max(os.path.getsize(filler) - (leave_bytes - free), 0))
    return filler


def run_requests(app, *bodies) -> list[httpx.Response]:
    async def send():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serena", timeout=120) as client:
            return [await client.post("/sdapi/v1/txt2img", json=body) for body in bodies]

    return asyncio.run(send())


def assert_nothing_half_written(outdir):
    for path in outdir.rglob("*"):
        assert not path.name.startswith(".tmp-"), f"temp file left: {path}"
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()


def assert_refused_naming_the_folder(response, outdir, reason: str):
    assert response.status_code == 500, response.text
    detail = response.json()["detail"]
    assert f"cannot save images in {outdir / 'txt2img-images'}" in detail and reason in detail, detail


def test_a_full_output_folder_is_a_clear_500_and_the_server_keeps_serving(tmpfs):
    outdir = tmpfs / "outputs"
    app = create_app(outdir=outdir, limits=ApiLimits())
    filler = fill(tmpfs, leave_bytes=4096)  # one page: a 64x64 PNG does not fit, so its write fails midway
    refused, unsaved = run_requests(app, SAVE | {"save_images": True, "batch_size": 2}, SAVE)
    assert_refused_naming_the_folder(refused, outdir, "No space left on device")
    assert_nothing_half_written(outdir)
    assert unsaved.status_code == 200 and len(unsaved.json()["images"]) == 1
    filler.unlink()
    (saved,) = run_requests(app, SAVE | {"save_images": True})
    assert saved.status_code == 200 and len(list(outdir.rglob("0*.png"))) == 1
    assert_nothing_half_written(outdir)


def test_a_read_only_output_folder_is_a_clear_500(tmpfs):
    outdir = tmpfs / "outputs"
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    app = create_app(outdir=outdir, limits=ApiLimits())
    refused, unsaved = run_requests(app, SAVE | {"save_images": True}, SAVE)
    assert_refused_naming_the_folder(refused, outdir, "Read-only file system")
    assert unsaved.status_code == 200


def test_a_forbidden_output_folder_is_a_clear_500(tmp_path, monkeypatch):
    outdir = tmp_path / f"outputs-{uuid.uuid4().hex[:6]}"
    real_open = os.open

    def forbidding_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(outdir)) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", forbidding_open)
    app = create_app(outdir=outdir, limits=ApiLimits())
    refused, unsaved = run_requests(app, SAVE | {"save_images": True, "batch_size": 2}, SAVE)
    assert_refused_naming_the_folder(refused, outdir, "Permission denied")
    assert json.loads(unsaved.json()["info"])["all_seeds"] == [3]
    assert not list(outdir.rglob("*.png"))
