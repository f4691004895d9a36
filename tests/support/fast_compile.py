"""``jit`` for tests: the programs are tiny, so compiling them dominates the time; skip
XLA's CPU optimisations (LLVM's, and the fusion emitters' where this jaxlib has the
switch). Results are the same programs' results, only compiled faster."""

import functools

import jax
import jax.numpy as jnp


def fast_compile_options() -> dict:
    options = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
    try:
        jax.jit(jnp.sin, compiler_options=options).lower(1.0).compile()
    except Exception:  # an older or newer XLA without the switch
        return {"xla_backend_optimization_level": 0}
    return options


jit = functools.partial(jax.jit, compiler_options=fast_compile_options())
