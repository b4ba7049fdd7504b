"""Wall time per named phase of a job: the engine's steps (encode, sample, decode, ...) and the runner's lifecycle."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch


class PhaseTimings(dict):
    """Seconds spent per phase, summed when a phase repeats (once per batch). GPU work is included: CUDA is
    synchronized at each phase end, since kernels run asynchronously."""

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            self[name] = self.get(name, 0.0) + time.perf_counter() - start
