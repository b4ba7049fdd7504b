"""The execution boundary (milestone M10): every face's job goes `process_images(p)` ->
`ProcessingRunner(process_images_inner).run(ProcessingRequest(p))` -> `process_images_inner(p)`.

The runner receives the function it runs, so this package never imports the engine that calls it.
It adds a lifecycle around that function without changing what it returns:
- prepare: hooks see the request before any work (logging, metrics, validation of their own);
- execute: `engine(request.processing)`, one job at a time per process, in arrival order (FIFO), since all jobs
  share the one loaded model;
- finalize: hooks see the request and the result.
Per-phase wall times (queue wait included) go into `request.phase_timings`, never into the result.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from modules.runtime.state import GenerationState
from modules.runtime.timings import PhaseTimings


@dataclass
class ProcessingRequest:
    processing: object  # modules.processing.StableDiffusionProcessing
    phase_timings: PhaseTimings = field(default_factory=PhaseTimings)

    @property
    def state(self) -> GenerationState:
        """The job's progress/interrupt state, carried by the processing object."""
        return self.processing.state


class FifoGate:
    """A lock granted in arrival order (threading.Lock is not fair), with a count of waiting jobs."""

    def __init__(self):
        self._condition = threading.Condition()
        self._waiting: deque[object] = deque()
        self._busy = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return self._busy

    @contextmanager
    def turn(self):
        ticket = object()
        with self._condition:
            self._waiting.append(ticket)
            self._condition.wait_for(lambda: not self._busy and self._waiting[0] is ticket)
            self._waiting.popleft()
            self._busy = True
        try:
            yield
        finally:
            with self._condition:
                self._busy = False
                self._condition.notify_all()


# One model, one generation at a time: every runner in the process queues here.
generation_queue = FifoGate()


@dataclass
class RunnerHooks:
    on_prepare: list[Callable[[ProcessingRequest], None]] = field(default_factory=list)
    on_finalize: list[Callable[[ProcessingRequest, object], None]] = field(default_factory=list)


class ProcessingRunner:
    """Runs `engine` (in Serena, `modules.processing.process_images_inner`) on requests, with hooks and timings."""

    def __init__(self, engine: Callable[[object], object], hooks: RunnerHooks | None = None):
        self.engine = engine
        self.hooks = hooks or RunnerHooks()

    def run(self, request: ProcessingRequest):
        """Return exactly what `self.engine(request.processing)` returns."""
        timings = request.phase_timings
        with ExitStack() as turn:
            with timings.phase("queue"):
                turn.enter_context(generation_queue.turn())
            with timings.phase("prepare"):
                for hook in self.hooks.on_prepare:
                    hook(request)
            with timings.phase("execute"):
                result = self.engine(request.processing)
            with timings.phase("finalize"):
                for hook in self.hooks.on_finalize:
                    hook(request, result)
        return result
