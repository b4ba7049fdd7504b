"""Sweeps on Ray: a local Ray instance with 2 CPUs and two CPU actors gives the local executor's images byte for
byte (exact mode), survives an actor killed mid-sweep, and resumes an interrupted sweep with only the missing cells."""

import json
import os
import signal

import pytest
from helpers import png_files

ray = pytest.importorskip("ray", reason="Ray is not installed (the optional extra: pip install -e .[ray])")

import serena_kit as sk  # noqa: E402
from serena_kit.distributed import RayExecutor, portable  # noqa: E402
from serena_kit.sweep_output import MANIFEST, SweepOutput  # noqa: E402

BASE = dict(prompt="a red circle on a blue background", steps=4, seed=21, subseed=5, exact=True)
AXES = dict(x=("cfg_scale", [3.0, 7.0, 12.0]), y=("seed", [1, 2]), z=("steps", [3, 4]))  # 12 cells
RAY_OPTIONS = dict(executor="ray", workers=2, gpus_per_worker=0)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_files(tmp_path_factory):
    """The reference: the same sweep on the local executor, {file name: bytes}."""
    outdir = tmp_path_factory.mktemp("local") / "sweep"
    sk.sweep(BASE, **AXES, outdir=outdir)
    return png_files(outdir)


def manifest_lines(outdir):
    return [json.loads(line) for line in (outdir / MANIFEST).read_text().splitlines()]


def assert_every_cell_once(outdir, local_files):
    lines = manifest_lines(outdir)
    assert len(lines) == 12 and len({line["cell"] for line in lines}) == 12
    assert png_files(outdir) == local_files


def test_a_ray_sweep_writes_the_local_executors_images_byte_for_byte(local_ray, local_files, tmp_path):
    result = sk.sweep(BASE, **AXES, outdir=tmp_path / "ray", **RAY_OPTIONS)
    assert_every_cell_once(tmp_path / "ray", local_files)
    assert result.generated_count == 12 and result.resumed_count == 0
    assert [cell.processed.seed for cell in result.cells[:6]] == [1, 1, 1, 2, 2, 2]


def test_an_actor_killed_mid_sweep_has_its_cells_retried_and_every_cell_is_written_once(
    local_ray, local_files, tmp_path
):
    killed = []

    def kill_one(pid, cells):
        """On the 5th batch sent (two actors, two queued each: after a first result came back), kill its actor."""
        kill_one.dispatched += 1
        if kill_one.dispatched == 5:
            os.kill(pid, signal.SIGKILL)
            killed.append(cells)

    kill_one.dispatched = 0
    executor = RayExecutor(workers=2, gpus_per_worker=0, batch_size=2, on_dispatch=kill_one)
    result = sk.sweep(BASE, **AXES, outdir=tmp_path / "ray", execute=executor)
    assert killed and executor.stats["lost_workers"] == 1 and executor.stats["retried_batches"] >= 1
    assert executor.stats["batches"] == 6 and result.generated_count == 12
    assert_every_cell_once(tmp_path / "ray", local_files)


def test_an_interrupted_ray_sweep_reruns_only_its_missing_cells(local_ray, local_files, tmp_path, monkeypatch):
    outdir = tmp_path / "ray"
    real_write, written = SweepOutput.write, []

    def write_then_stop(self, *args):  # Ctrl-C right after the 5th image and its manifest line
        written.append(real_write(self, *args))
        if len(written) == 5:
            raise KeyboardInterrupt
        return written[-1]

    monkeypatch.setattr(SweepOutput, "write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        sk.sweep(BASE, **AXES, outdir=outdir, **RAY_OPTIONS)
    monkeypatch.undo()
    first_lines = manifest_lines(outdir)
    kept = {path.name: path.stat().st_ino for path in outdir.glob("*.png")}
    assert len(first_lines) == 5 and len(kept) == 5

    # The rerun needs both CPUs: it only gets them if the interrupted sweep's actors were stopped.
    result = sk.sweep(BASE, **AXES, outdir=outdir, **RAY_OPTIONS)
    assert result.resumed_count == 5 and result.generated_count - result.resumed_count == 7
    assert manifest_lines(outdir)[:5] == first_lines  # append-only
    assert {name: (outdir / name).stat().st_ino for name in kept} == kept  # not rewritten
    assert_every_cell_once(outdir, local_files)


def test_cells_travel_without_their_progress_state_and_with_absolute_checkpoint_paths(tmp_path):
    (tmp_path / "models" / "tiny").mkdir(parents=True)  # the test runs in tmp_path; an actor may run elsewhere
    cell = sk.StableDiffusionProcessingTxt2Img(**BASE, sd_model_checkpoint="models/tiny")
    sent = portable(cell)
    assert sent.state is None and sent.sd_model_checkpoint == str(tmp_path / "models" / "tiny")
    assert portable(sk.StableDiffusionProcessingTxt2Img(**BASE)).sd_model_checkpoint is None


def test_the_sweep_widget_runs_on_ray_and_fills_its_grid_with_the_local_images(local_ray):
    form = sk.SweepForm(BASE, executor="ray", workers=2, gpus_per_worker=0, measure=False)
    form.set_axis("x", "cfg_scale", "3, 7")
    form.set_axis("y", "seed", "1-2")
    result = form.run()
    local = sk.sweep(BASE, x=("cfg_scale", [3.0, 7.0]), y=("seed", [1, 2]))
    assert [cell.png_sha256() for cell in result.cells] == [cell.png_sha256() for cell in local.cells]
    assert form.progress.value == 4 and all(not slot["button"].disabled for slot in form._slots.values())
    assert "executor='ray'" in form.code() and "workers=2" in form.code()
