"""Sweeps on Ray: a local Ray instance with 2 CPUs and two CPU actors gives the local executor's images byte for
byte (exact mode), survives an actor killed or hung (SIGSTOP) mid-sweep, stops on a batch that always hangs, fails
with a clear error when no node has the GPUs asked for, and resumes an interrupted sweep with only the missing cells."""

import json
import os
import signal
import time
from contextlib import contextmanager

import psutil
import pytest
from helpers import COVERAGE_HOOK, png_files, png_of

ray = pytest.importorskip("ray", reason="Ray is not installed (the optional extra: pip install -e .[ray])")

import serena_kit as sk  # noqa: E402
from modules.sweeps.output import MANIFEST, SweepOutput  # noqa: E402
from serena_kit.distributed import RayExecutor, SweepWorker, portable  # noqa: E402

pytestmark = pytest.mark.whole_machine  # two Ray actors on both cores; batch timeouts in seconds

BASE = dict(prompt="a red circle on a blue background", steps=4, seed=21, subseed=5, exact=True)
AXES = dict(x=("cfg_scale", [3.0, 7.0, 12.0]), y=("seed", [1, 2]), z=("steps", [3, 4]))  # 12 cells
RAY_OPTIONS = dict(executor="ray", workers=2, gpus_per_worker=0)


@pytest.fixture(scope="module")
def local_ray():
    # Ray's own processes and the actors start without coverage's subprocess hook (it doubled these tests' time);
    # the few lines only an actor runs (distributed.SweepWorker) are counted by an in-process test below.
    hook = os.environ.pop(COVERAGE_HOOK, None)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if hook is not None:
            os.environ[COVERAGE_HOOK] = hook
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


def stop_actor_on(dispatch_number: int, again: bool = False):
    """An on_dispatch hook that hangs an actor (SIGSTOP: alive, silent) on the n-th batch sent, and with `again` each
    time that batch is sent again; `hook.stopped` lists the cells of the batches it stopped on."""

    def hook(pid, cells):
        hook.dispatched += 1
        if hook.dispatched == dispatch_number or (again and hook.stopped and cells == hook.stopped[0]):
            os.kill(pid, signal.SIGSTOP)
            hook.stopped.append(cells)
            hook.pids.append(pid)

    hook.dispatched, hook.stopped, hook.pids = 0, [], []
    return hook


@contextmanager
def hang_guard(seconds: int):
    """Fail instead of hanging when the executor misses a hang (Ray's wait lets Python's signal handlers run)."""

    def fail(signum, frame):
        raise TimeoutError(f"the sweep was still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def gone(pid: int) -> bool:
    """The process has exited (ray.kill of a stopped actor), waiting a little: the kill is asynchronous."""
    for _ in range(50):
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.faults
def test_a_hung_actor_is_timed_out_and_replaced_and_every_cell_is_written_once(local_ray, local_files, tmp_path):
    # The 5th batch sent goes to an actor already running one (two actors, two queued each): that one hangs.
    # The timeout leaves a replacement actor time to load torch and the model within its first batch on a busy
    # 2-core machine (10 s did not, once in CI: 3 timeouts); a slow live actor timed out is retried like a hung one.
    hang = stop_actor_on(dispatch_number=5)
    executor = RayExecutor(workers=2, gpus_per_worker=0, batch_size=2, batch_timeout_s=30, on_dispatch=hang)
    with hang_guard(240):
        result = sk.sweep(BASE, **AXES, outdir=tmp_path / "ray", execute=executor)
    assert hang.stopped and executor.stats["hung_batches"] >= 1 and executor.stats["lost_workers"] >= 1
    assert gone(hang.pids[0])
    assert result.generated_count == 12
    assert_every_cell_once(tmp_path / "ray", local_files)


@pytest.mark.faults
def test_a_batch_that_always_hangs_stops_the_sweep_naming_its_cells_and_the_timeout(local_ray, tmp_path):
    hang = stop_actor_on(dispatch_number=1, again=True)
    executor = RayExecutor(
        workers=1, gpus_per_worker=0, batch_size=2, batch_timeout_s=2, max_attempts=2, on_dispatch=hang
    )
    with (
        hang_guard(120),
        pytest.raises(RuntimeError, match=r"hung: no result within batch_timeout_s=2 s, 2 times$") as error,
    ):
        sk.sweep(BASE, **AXES, outdir=tmp_path / "ray", execute=executor)
    assert str(error.value).startswith(f"cells {hang.stopped[0]} hung")
    assert hang.stopped == [hang.stopped[0]] * 2 and executor.stats["hung_batches"] == 2
    assert all(gone(pid) for pid in hang.pids)
    assert not list((tmp_path / "ray").glob("*.png"))  # the hung batch runs first: nothing came back


def test_gpu_workers_on_a_cluster_without_gpus_fail_after_the_resource_wait(local_ray):
    # workers=N: an autoscaler might add GPU nodes, so the executor waits, but not forever.
    executor = RayExecutor(workers=2, gpus_per_worker=1, resource_wait_s=2)
    with (
        hang_guard(60),
        pytest.raises(
            RuntimeError, match="^gpus_per_worker: no Ray worker started within resource_wait_s=2 s: "
        ) as error,
    ):
        sk.sweep(BASE, **AXES, execute=executor)
    assert "asks for gpus_per_worker=1 GPU and cpus_per_worker=1 CPU, the cluster has 0 GPU and 2 CPU" in str(
        error.value
    )


def test_gpu_workers_fail_at_once_when_the_pool_is_sized_from_a_cluster_without_gpus(local_ray):
    with pytest.raises(ValueError, match="^gpus_per_worker: no node of the Ray cluster can hold a worker: .* 0 GPU"):
        sk.sweep(BASE, **AXES, executor="ray")  # workers unset, gpus_per_worker 1 by default


def test_ray_timeouts_must_be_positive():
    for option in ("batch_timeout_s", "resource_wait_s"):
        with pytest.raises(ValueError, match=f"^{option}: 0 is out of range"):
            RayExecutor(**{option: 0})


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


def test_a_lora_weight_axis_on_ray_writes_the_local_executors_images_byte_for_byte(local_ray, tmp_path):
    base = dict(BASE, prompt="a red ring on a blue background")  # subseed pinned: -1 is drawn per output folder
    axes = dict(x=("lora:ring", [0, 1]), y=("seed", [3, 4]))
    local = sk.sweep(base, **axes, outdir=tmp_path / "local")
    sk.sweep(base, **axes, outdir=tmp_path / "ray", **RAY_OPTIONS)
    local_files = png_files(tmp_path / "local")
    assert len(local_files) == 4 and png_files(tmp_path / "ray") == local_files
    without, with_lora = local.cells[0].png_sha256(), local.cells[1].png_sha256()
    assert without != with_lora  # the weight reached the engine: the axis is not a no-op
    assert "<lora:ring:1>" in local.cells[1].processed.prompt


def test_what_an_actor_runs_gives_each_cell_its_own_images_bytes_in_this_process():
    """The actor's class without Ray (Ray's processes run without coverage's hook, see local_ray)."""
    worker = SweepWorker(threads=1)
    assert worker.ready() == os.getpid()
    cells = [sk.StableDiffusionProcessingTxt2Img(**BASE, cfg_scale=cfg) for cfg in (3.0, 7.0)]
    results = worker.run([portable(cell) for cell in cells])
    alone = [sk.process_images(cell) for cell in cells]
    assert [png_of(result.images[0]) for result in results] == [png_of(result.images[0]) for result in alone]
    assert [result.cfg_scale for result in results] == [3.0, 7.0]
