"""Gradient transforms as custom VJPs: Highway-BP for residual stacks and RNNs, and
stationary (diagonal) state feedback for recurrent layers.

- ``highway_bp(block_fn, k)`` -> ``stack(stacked_params, h0, residual=None) -> h_L``
- ``highway_rnn(step_fn, k)`` -> ``run(params, h0, xs, residual=None) -> hs``
- ``dsf_rnn(cell_fn, feedback="diagonal")`` -> ``run(params, h0, xs) -> hs``

Each wraps a pure forward function; ``jax.grad``, ``jax.jit`` and optax work unchanged.
"""

from gradients.cells import CELLS, GRU, LSTM, TANH, RecurrentCell
from gradients.dsf import FEEDBACKS, dsf_rnn
from gradients.feedback import feedback_matrix, feedback_recurrence
from gradients.highway import highway_bp, highway_rnn
from gradients.recurrence import reverse_linear_recurrence

__all__ = [
    "CELLS",
    "FEEDBACKS",
    "GRU",
    "LSTM",
    "TANH",
    "RecurrentCell",
    "dsf_rnn",
    "feedback_matrix",
    "feedback_recurrence",
    "highway_bp",
    "highway_rnn",
    "reverse_linear_recurrence",
]
