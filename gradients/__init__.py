"""Gradient transforms as custom VJPs: Highway-BP for residual stacks and RNNs, and
stationary (diagonal) state feedback for recurrent layers.

- ``highway_bp(block_fn, k)`` -> ``stack(stacked_params, h0, residual=None) -> h_L``
- ``highway_rnn(step_fn, k)`` -> ``run(params, h0, xs, residual=None) -> hs``
- ``dsf_rnn(cell_fn, feedback="diagonal")`` -> ``run(params, h0, xs) -> hs``

Each wraps a pure forward function; ``jax.grad``, ``jax.jit`` and optax work unchanged.

Slow references (plain Python loops over the steps, one VJP at a time) for checking the
fast paths and your own runs: ``residual_stack_reference`` / ``residual_rnn_reference``
(exact backpropagation, or the residual paths only), ``highway_bp_reference`` /
``highway_rnn_reference`` (the Highway-BP iteration written out), ``rnn_reference``
(BPTT or truncated BPTT) and ``dsf_rnn_reference`` (DSF written out).
"""

from gradients.cells import CELLS, GRU, LSTM, TANH, RecurrentCell
from gradients.dsf import FEEDBACKS, dsf_rnn, dsf_rnn_reference, rnn_reference
from gradients.feedback import feedback_matrix, feedback_recurrence
from gradients.highway import (
    highway_bp,
    highway_bp_reference,
    highway_rnn,
    highway_rnn_reference,
    residual_rnn_reference,
    residual_stack_reference,
)
from gradients.recurrence import reverse_linear_recurrence

__all__ = [
    "CELLS",
    "FEEDBACKS",
    "GRU",
    "LSTM",
    "TANH",
    "RecurrentCell",
    "dsf_rnn",
    "dsf_rnn_reference",
    "feedback_matrix",
    "feedback_recurrence",
    "highway_bp",
    "highway_bp_reference",
    "highway_rnn",
    "highway_rnn_reference",
    "residual_rnn_reference",
    "residual_stack_reference",
    "reverse_linear_recurrence",
    "rnn_reference",
]
