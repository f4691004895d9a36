"""Direct preference optimisation (DPO, sigmoid loss) on summed sequence log-probabilities.

For a prompt with a chosen response ``y+`` and a rejected one ``y-``, the policy
``pi`` and a frozen reference ``pi_ref``::

    r+ = log pi(y+) - log pi_ref(y+),   r- = log pi(y-) - log pi_ref(y-)
    loss = mean(-log sigmoid(beta (r+ - r-)))

(Rafailov et al., 2023). ``beta r`` is the implicit reward; the metrics report its
margin ``beta (r+ - r-)`` and how often the chosen response wins (preference accuracy).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _check_same_shape(arrays: dict[str, Any], ndim: int, shape_text: str) -> tuple[int, ...]:
    shapes = {name: tuple(np.shape(a)) for name, a in arrays.items()}
    first = next(iter(shapes.values()))
    for name, shape in shapes.items():
        if len(shape) != ndim or shape != first:
            raise ValueError(
                f"{name} must have shape {shape_text} like the other inputs {first}, got {shape}"
            )
    return first


def sequence_logps(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """Summed log-probabilities of ``targets`` under ``logits`` where ``mask`` is set.

    Args:
      logits: ``[B, T, V]``, the model's next-token logits at each target position
        (teacher forcing: ``logits[:, t]`` predicts ``targets[:, t]``).
      targets: ``[B, T]`` int token ids.
      mask: ``[B, T]``, True (or 1) at the response tokens to count (prompt and padding
        False).

    Returns:
      ``[B]`` float32: ``sum_t mask[b, t] log softmax(logits[b, t])[targets[b, t]]``.
    """
    if np.ndim(logits) != 3:
        raise ValueError(f"logits must have shape [B, T, V], got {np.shape(logits)}")
    _check_same_shape({"targets": targets, "mask": mask}, 2, "[B, T]")
    if tuple(np.shape(targets)) != tuple(np.shape(logits)[:2]):
        raise ValueError(
            f"targets must have shape [B, T] = {np.shape(logits)[:2]} (that of logits), got "
            f"{np.shape(targets)}"
        )
    if not jnp.issubdtype(jnp.result_type(targets), jnp.integer):
        raise ValueError(f"targets must be integer token ids, got {jnp.result_type(targets)}")
    log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_probs, jnp.asarray(targets)[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(jnp.asarray(mask, bool), picked, 0.0), axis=-1)


def dpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    beta: float = 0.1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The DPO sigmoid loss and its metrics.

    Args:
      policy_chosen_logps, policy_rejected_logps: ``[B]`` summed response log-probabilities
        under the policy (:func:`sequence_logps`).
      ref_chosen_logps, ref_rejected_logps: ``[B]`` the same under the frozen reference.
      beta: inverse temperature of the implicit reward (> 0).

    Returns:
      ``(loss, metrics)``: ``loss = mean(-log_sigmoid(beta ((pc - rc) - (pr - rr))))``;
      metrics ``chosen_reward`` and ``rejected_reward`` (means of ``beta (p - r)``),
      ``reward_margin`` (their difference) and ``preference_accuracy`` (the fraction of
      pairs whose chosen reward is strictly larger).
    """
    inputs = {
        "policy_chosen_logps": policy_chosen_logps,
        "policy_rejected_logps": policy_rejected_logps,
        "ref_chosen_logps": ref_chosen_logps,
        "ref_rejected_logps": ref_rejected_logps,
    }
    _check_same_shape(inputs, 1, "[B]")
    if not (isinstance(beta, int | float) and not isinstance(beta, bool) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    pc, pr, rc, rr = (jnp.asarray(a, jnp.float32) for a in inputs.values())
    chosen = beta * (pc - rc)
    rejected = beta * (pr - rr)
    loss = jnp.mean(-jax.nn.log_sigmoid(chosen - rejected))
    metrics = {
        "chosen_reward": jnp.mean(chosen),
        "rejected_reward": jnp.mean(rejected),
        "reward_margin": jnp.mean(chosen - rejected),
        "preference_accuracy": jnp.mean((chosen > rejected).astype(jnp.float32)),
    }
    return loss, metrics
