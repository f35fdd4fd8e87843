"""Shared helpers of the benchmark scripts: timing and the machine description."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> str:
    """One line naming the machine, for benchmarks/RESULTS.md."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def today() -> str:
    return datetime.date.today().isoformat()


def median_time(function: Callable[[], object], repeats: int = 3, warmup: int = 1
                ) -> tuple[float, object]:
    """Median wall time of ``function`` over ``repeats`` runs, and its last result."""
    result = None
    for _ in range(warmup):
        result = function()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
