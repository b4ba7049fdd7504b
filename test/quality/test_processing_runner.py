"""M10 contract: process_images(p) -> ProcessingRunner(process_images_inner).run(ProcessingRequest(p)) ->
process_images_inner(p)."""

import threading
import time

import torch
from helpers import png_files, png_of

from modules import processing
from modules.processing import StableDiffusionProcessingTxt2Img, process_images, process_images_inner
from modules.runtime import runner as runner_module
from modules.runtime.runner import ProcessingRequest, ProcessingRunner, RunnerHooks


def small_job(**fields):
    values = dict(prompt="a red circle on a blue background", seed=11, steps=4, batch_size=2, n_iter=1) | fields
    return StableDiffusionProcessingTxt2Img(**values)


def test_process_images_hands_the_runner_the_engine_and_a_request_wrapping_p(monkeypatch):
    seen = []
    sentinel = object()

    def fake_run(self, request):
        seen.append((self.engine, request))
        return sentinel

    monkeypatch.setattr(ProcessingRunner, "run", fake_run)
    p = small_job()
    assert process_images(p) is sentinel
    assert len(seen) == 1
    engine, request = seen[0]
    assert engine is process_images_inner
    assert isinstance(request, ProcessingRequest)
    assert request.processing is p


def test_runner_returns_exactly_what_its_engine_returns():
    sentinel = object()
    calls = []
    p = small_job()
    assert ProcessingRunner(lambda job: calls.append(job) or sentinel).run(ProcessingRequest(p)) is sentinel
    assert calls == [p]


def test_request_keeps_the_processing_object_and_its_state():
    p = small_job()
    request = ProcessingRequest(p)
    assert request.processing is p
    assert request.state is p.state


def test_runner_and_direct_engine_write_byte_identical_pngs(tmp_path):
    through_runner = process_images(
        small_job(outpath_samples=str(tmp_path / "a/s"), outpath_grids=str(tmp_path / "a/g"))
    )
    direct = process_images_inner(small_job(outpath_samples=str(tmp_path / "b/s"), outpath_grids=str(tmp_path / "b/g")))
    assert [png_of(image) for image in through_runner.images] == [png_of(image) for image in direct.images]
    assert png_files(tmp_path / "a") == png_files(tmp_path / "b")
    assert len(png_files(tmp_path / "a")) == 3  # two samples and the grid
    assert through_runner.infotexts == direct.infotexts


def test_runner_adds_no_side_effects(tmp_path):
    """Same caller object, same files, same global RNG state as calling the engine directly."""
    p_runner = small_job(outpath_samples=str(tmp_path / "a/s"), outpath_grids=str(tmp_path / "a/g"))
    p_direct = small_job(outpath_samples=str(tmp_path / "b/s"), outpath_grids=str(tmp_path / "b/g"))

    def fields(p):
        return {
            name: value for name, value in vars(p).items() if name not in ("state", "outpath_samples", "outpath_grids")
        }

    before = fields(p_runner)
    torch.manual_seed(1234)
    process_images(p_runner)
    rng_after_runner = torch.get_rng_state()
    torch.manual_seed(1234)
    process_images_inner(p_direct)
    rng_after_direct = torch.get_rng_state()

    assert fields(p_runner) == before == fields(p_direct)
    assert torch.equal(rng_after_runner, rng_after_direct)
    assert sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*")) == sorted(
        path.relative_to(tmp_path / "b") for path in (tmp_path / "b").rglob("*")
    )


def test_hooks_run_around_the_engine_and_phases_are_timed():
    events = []
    hooks = RunnerHooks(
        on_prepare=[lambda request: events.append("prepare")],
        on_finalize=[lambda request, result: events.append(f"finalize:{result}")],
    )
    request = ProcessingRequest(small_job())
    assert ProcessingRunner(lambda p: events.append("execute") or "result", hooks).run(request) == "result"
    assert events == ["prepare", "execute", "finalize:result"]
    assert set(request.phase_timings) == {"queue", "prepare", "execute", "finalize"}


def test_concurrent_jobs_run_one_at_a_time_in_arrival_order(monkeypatch):
    running, order, overlaps = [], [], []

    def slow_inner(p):
        if running:
            overlaps.append(p.seed)
        running.append(p.seed)
        time.sleep(0.05)
        order.append(p.seed)
        running.remove(p.seed)
        return p.seed

    monkeypatch.setattr(processing, "process_images_inner", slow_inner)
    results = {}
    threads = []
    gate = runner_module.generation_queue
    with gate.turn():  # hold the queue so every job is waiting before the first one runs
        for seed in range(6):
            thread = threading.Thread(target=lambda s=seed: results.__setitem__(s, process_images(small_job(seed=s))))
            thread.start()
            threads.append(thread)
            while gate.waiting < seed + 1:
                time.sleep(0.001)
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert order == list(range(6))
    assert results == {seed: seed for seed in range(6)}
