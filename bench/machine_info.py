"""The one line every benchmark table starts with: what machine, threads and load produced it."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, GPU {gpu}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {load}"
    )
