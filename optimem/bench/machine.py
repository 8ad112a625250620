"""Which machine produced a figure, in one wording: every figure names its machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cores() -> int:
    """Cores this process may run on (its affinity, where the system says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def cpu_name() -> str:
    """The processor's model name ("AMD EPYC …"), or the architecture where it is not known."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """ "2 vCPUs, AMD EPYC, Python 3.11.7": what a benchmark prints beside its figures."""
    return f"{cores()} vCPUs, {cpu_name()}, Python {platform.python_version()}"
