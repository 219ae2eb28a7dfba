"""The one timer of every benchmark: warm-up calls (not timed), timed repeats, their median.

On a CUDA device the device is synchronised before the clock starts and after `fn` returns, so a
repeat covers the kernels it queued, not only their launch. The clock is `time.perf_counter` (wall
time) unless the caller passes another (`bench soft` uses process CPU time on CPU: robust to other
jobs sharing the cores).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from mentalese.errors import MentaleseError


@dataclass(frozen=True)
class Timing:
    seconds: list[float]  # one entry per timed repeat, warm-up excluded
    result: Any  # what fn returned in the last timed repeat

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work; a no-op on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device | str, repeats: int = 3, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Call fn `warmup` times untimed, then `repeats` times timed on `clock`."""
    if repeats < 1:
        raise MentaleseError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise MentaleseError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    seconds, result = [], None
    for _ in range(repeats):
        synchronize(device)
        start = clock()
        result = fn()
        synchronize(device)
        seconds.append(clock() - start)
    return Timing(seconds, result)
