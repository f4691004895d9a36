"""Recurrent cells (GRU, tanh RNN, LSTM) as pure functions, split for a fast scan.

Each cell is a ``RecurrentCell``: the input projection ``u_t = x_t W + b`` of every time
step is one parallel matmul (``project``), and only the recurrent part runs in the
scan (``step(params, h_prev, u_t) -> h_t``, the ``cell_fn`` of ``dsf_rnn``), as cuDNN
does. The gradient with respect to ``u`` that ``dsf_rnn`` returns flows to ``W`` and
``x`` by ordinary autodiff of ``project``.

Parameters: ``{"input": {"w": [d_in, g d], "b": [g d]}, "recurrent": {"w": [d, g d],
"b": [g d]}}`` with ``g`` gates (1 tanh, 3 GRU, 4 LSTM), initialised uniform in
``+-1 / sqrt(d)`` as PyTorch's cells. Gate order and equations follow ``torch.nn``.

The LSTM state is the pair ``(h, c)``, and its ``readout`` is ``concat(h, c)`` (2d
features): as in the reference code, the loss sees both and the state feedback acts on
the ``2d`` concatenated channels (``feedback.channels``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradients.checks import check_int

PyTree = Any
Params = dict[str, dict[str, jax.Array]]


class RecurrentCell(NamedTuple):
    """A recurrent cell as data.

    Attributes:
      gates: blocks of ``d`` in the projections.
      step: ``(params["recurrent"], h_prev, u_t) -> h_t`` (state ``[..., d]`` or a pair).
      initial_state: ``(batch_shape, d, dtype=None) -> h0`` of zeros.
      readout: ``state -> [..., features d]``, what the layer outputs.
      features: width of ``readout`` in units of ``d``.

    Methods ``init(key, input_size, hidden) -> params`` and ``project(params["input"],
    xs: [..., d_in]) -> us: [..., gates d]``.
    """

    gates: int
    step: Callable[[dict[str, jax.Array], PyTree, jax.Array], PyTree]
    initial_state: Callable[..., PyTree]
    readout: Callable[[PyTree], jax.Array]
    features: int

    def init(self, key: jax.Array, input_size: int, hidden: int) -> Params:
        """Uniform ``+-1 / sqrt(hidden)`` parameters, as ``torch.nn`` cells.

        ``key`` (a ``jax.random`` key) first; ``input_size`` and ``hidden`` positive ints.
        """
        input_size = check_int(input_size, "input_size")
        hidden = check_int(hidden, "hidden")
        bound = hidden**-0.5
        keys = jax.random.split(key, 4)

        def uniform(k, shape):
            return jax.random.uniform(k, shape, minval=-bound, maxval=bound)

        width = self.gates * hidden
        return {
            "input": {"w": uniform(keys[0], (input_size, width)), "b": uniform(keys[1], (width,))},
            "recurrent": {"w": uniform(keys[2], (hidden, width)), "b": uniform(keys[3], (width,))},
        }

    @staticmethod
    def project(params: dict[str, jax.Array], xs: jax.Array) -> jax.Array:
        return xs @ params["w"] + params["b"]


def _zeros(batch_shape: tuple[int, ...], hidden: int, dtype=None) -> jax.Array:
    return jnp.zeros((*batch_shape, check_int(hidden, "hidden")), dtype)


def tanh_step(params: dict[str, jax.Array], h: jax.Array, u: jax.Array) -> jax.Array:
    """``tanh(u_t + h W_h + b_h)``."""
    return jnp.tanh(u + h @ params["w"] + params["b"])


def gru_step(params: dict[str, jax.Array], h: jax.Array, u: jax.Array) -> jax.Array:
    """``r, z = sigmoid(.)``, ``n = tanh(u_n + r (h W_hn + b_hn))``, ``h' = (1 - z) n + z h``."""
    u_r, u_z, u_n = jnp.split(u, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h @ params["w"] + params["b"], 3, axis=-1)
    r = jax.nn.sigmoid(u_r + h_r)
    z = jax.nn.sigmoid(u_z + h_z)
    n = jnp.tanh(u_n + r * h_n)
    return (1 - z) * n + z * h


def lstm_step(
    params: dict[str, jax.Array], state: tuple[jax.Array, jax.Array], u: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Gates ``i, f, g, o``: ``c' = f c + i g``, ``h' = o tanh(c')``; state ``(h, c)``."""
    h, c = state
    i, f, g, o = jnp.split(u + h @ params["w"] + params["b"], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


TANH = RecurrentCell(gates=1, step=tanh_step, initial_state=_zeros, readout=lambda h: h, features=1)
GRU = RecurrentCell(gates=3, step=gru_step, initial_state=_zeros, readout=lambda h: h, features=1)
LSTM = RecurrentCell(
    gates=4,
    step=lstm_step,
    initial_state=lambda batch_shape, hidden, dtype=None: (
        _zeros(batch_shape, hidden, dtype),
        _zeros(batch_shape, hidden, dtype),
    ),
    readout=lambda state: jnp.concatenate(state, axis=-1),
    features=2,
)
CELLS = {"gru": GRU, "tanh": TANH, "lstm": LSTM}
