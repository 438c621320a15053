"""The one line every benchmark table starts with: what machine, threads and load produced it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# cpuinfo flags -> the names the README uses for the units that set this project's speed
_UNITS = [
    ("amx_tile", "AMX"),
    ("avx512f", "AVX512"),
    ("avx512_bf16", "AVX512-BF16"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx_vnni", "AVX-VNNI"),
]


def _amd_core(family: int, flags: set[str]) -> str:
    if family == 26:
        return "Zen 5"
    if family == 25:
        return "Zen 4" if "avx512f" in flags else "Zen 3"
    return "Zen/Zen 2" if family == 23 else ""


def cpu_description(cpuinfo: str) -> str:
    """The first CPU of a /proc/cpuinfo text, e.g. 'AMD EPYC (Zen 5: family 26 model 2 stepping 1; AVX512,
    AVX512-BF16, AVX512-VNNI)'. A VM's model name alone ('AMD EPYC') does not tell CPU generations apart, and
    this project's latency differed ~1.8x between two of them."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    flags = set(fields.get("flags", "").split())
    units = ", ".join(label for flag, label in _UNITS if flag in flags) or "no AVX512/AMX/VNNI"
    if "cpu family" not in fields:
        return f"{name} ({units})"
    family = int(fields["cpu family"]) if fields["cpu family"].isdigit() else -1
    core = _amd_core(family, flags) if fields.get("vendor_id") == "AuthenticAMD" else ""
    where = f"family {fields['cpu family']} model {fields.get('model', '?')} stepping {fields.get('stepping', '?')}"
    return f"{name} ({core + ': ' if core else ''}{where}; {units})"


def cpu_name() -> str:
    try:
        return cpu_description(Path("/proc/cpuinfo").read_text())
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"machine: {cpu_name()}, {os.cpu_count()} cores, GPU {gpu}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {load}"
    )


if __name__ == "__main__":
    print(machine())
