"""Settings for the whole suite.

Test programs are small and many, so compiling them dominates the suite's time: XLA
compiles them without LLVM's optimisations and with its older elementwise emitters
(the programs compute the same values; measured 2.2x faster on the classification
job's test, and then 15% less CPU on the classification and quantization job tests).
Set before JAX starts its backend, and inherited by the subprocesses some tests start.
"""

import os

_FLAGS = {
    "xla_backend_optimization_level": "0",
    "xla_cpu_use_fusion_emitters": "false",
}
_current = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_current] + [f"--{name}={value}" for name, value in _FLAGS.items() if name not in _current]
).strip()
