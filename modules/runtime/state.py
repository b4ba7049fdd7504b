"""Progress, interrupt and skip for one generation job.

A face (notebook form, CLI, API) holds the job's state object: it reads progress from it, calls `interrupt()` or
`skip()` from another thread, and may subscribe listeners (a tqdm bar, a progress widget) to its steps.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

StepListener = Callable[["GenerationState"], None]


class Interrupted(Exception):
    """Raised inside the sampling loop to stop the job; the engine returns the images finished so far."""


class Skipped(Exception):
    """Raised inside the sampling loop to abandon the current batch and go on with the next."""


_timestamp_lock = threading.Lock()
_last_timestamp: datetime.datetime | None = None


def next_job_timestamp() -> str:
    """The webui's job timestamp ("%Y%m%d%H%M%S": the job's start second), one second after the previous job's when
    two jobs start within one second: monitoring clients tell jobs apart by it."""
    global _last_timestamp
    with _timestamp_lock:
        now = datetime.datetime.now().replace(microsecond=0)
        if _last_timestamp is not None and now <= _last_timestamp:
            now = _last_timestamp + datetime.timedelta(seconds=1)
        _last_timestamp = now
        return now.strftime("%Y%m%d%H%M%S")


@dataclass
class GenerationState:
    job_count: int = 0  # batches the engine runs: n_iter, or batch_size * n_iter in exact mode (one image each)
    job_no: int = 0  # batches finished
    sampling_steps: int = 0  # steps per batch
    sampling_step: int = 0  # steps finished in the current batch
    started_at: float | None = None
    finished_at: float | None = None
    current_latent: object = None  # the current batch's latents after its last step (None before its first)
    current_model: object = None  # the LoadedModel that made current_latent (a refiner's, once it took over)
    current_denoised: object = None  # the sampler's prediction of the clean latents at that step (None: it has none)
    preview_id: int = 0  # steps done in the whole job: a live preview's id (the webui's id_live_preview)
    job_timestamp: str = ""  # set when the job begins (next_job_timestamp)
    # The webui's interrupt: the batch being sampled is decoded from its latents so far and returned too.
    keep_interrupted_batch: bool = False
    listeners: list[StepListener] = field(default_factory=list)
    _interrupt: threading.Event = field(default_factory=threading.Event, repr=False)
    _skip: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    @property
    def skipped(self) -> bool:
        return self._skip.is_set()

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.finished_at is None

    @property
    def progress(self) -> float:
        """Fraction of the whole job done, 0..1."""
        if self.job_count == 0 or self.sampling_steps == 0:
            return 1.0 if self.finished_at is not None else 0.0
        done = self.job_no * self.sampling_steps + self.sampling_step
        return min(done / (self.job_count * self.sampling_steps), 1.0)

    @property
    def eta_seconds(self) -> float | None:
        if not self.running or self.progress <= 0:
            return None
        elapsed = time.perf_counter() - self.started_at
        return elapsed / self.progress - elapsed

    def interrupt(self) -> None:
        self._interrupt.set()

    def skip(self) -> None:
        self._skip.set()

    def begin(self, job_count: int, sampling_steps: int) -> None:
        self.job_count, self.sampling_steps = job_count, sampling_steps
        self.job_no = self.sampling_step = self.preview_id = 0
        self.job_timestamp = next_job_timestamp()
        self.started_at, self.finished_at = time.perf_counter(), None
        self._interrupt.clear()
        self._skip.clear()

    def begin_batch(self, job_no: int) -> None:
        self.job_no, self.sampling_step = job_no, 0
        self.current_latent = self.current_model = self.current_denoised = None
        self._skip.clear()

    def raise_if_stopped(self) -> None:
        """Called by the sampling loop before each step, so a batch whose last step is done is kept."""
        if self.interrupted:
            raise Interrupted
        if self.skipped:
            raise Skipped

    def step_done(self, latents=None, model=None, denoised=None) -> None:
        self.sampling_step += 1
        self.preview_id += 1
        self.current_latent, self.current_model, self.current_denoised = latents, model, denoised
        for listener in self.listeners:
            listener(self)

    def end(self) -> None:
        self.job_no = self.job_count
        self.sampling_step = 0
        self.finished_at = time.perf_counter()
        self.current_latent = self.current_model = self.current_denoised = None
