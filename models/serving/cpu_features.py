"""What the CPU runs natively, from its feature flags (Linux ``/proc/cpuinfo``).

    from models.serving.cpu_features import cpu_flags, NATIVE_BF16, VNNI

The runtimes a CPU is offered depend on them: bf16 autocast is fast only with native bf16
(``NATIVE_BF16``), and int8 kernels without VNNI (``VNNI``) multiply unsigned by signed bytes
with instructions whose 16-bit intermediate sums can saturate.
"""

from __future__ import annotations

from pathlib import Path

NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
VNNI = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux); none known elsewhere."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                return frozenset(value.split())
    except OSError:
        pass
    return frozenset()
