"""Machine description printed at the top of every benchmark table (not a benchmark)."""

from __future__ import annotations

import contextlib
import os
import platform


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line: CPU model, cores, RAM and the jax/flax versions and backend."""
    import flax
    import jax
    import jaxlib

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {total:.0f} GiB RAM; "
        f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax {flax.__version__}, "
        f"backend {jax.default_backend()}; Python {platform.python_version()}."
    )
