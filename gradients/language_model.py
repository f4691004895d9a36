"""A word-level RNN language model whose recurrences train by BPTT, DSF or truncated BPTT.

Architecture of the DSF paper's reference code (GPT-2-like, pre-LayerNorm):

    x = Embed(tokens)
    repeat layers:  x = x + Linear(RNN(LN(x)));  x = x + MLP(LN(x))   (MLP: 4x, GELU)
    logits = Linear(LN(x))

GPT-2 initialisation: every linear and the embedding ``N(0, 0.02^2)``, the last linear
of each residual branch ``N(0, 0.02^2 / (2 layers))``; the cells keep PyTorch's uniform
init (``cells.py``). Only the backward pass of the recurrences differs between
``feedback`` settings (``dsf.dsf_rnn``): the forward pass and the rest of the network
are identical.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradients.cells import CELLS
from gradients.checks import check_int, check_positive
from gradients.dsf import FEEDBACKS, dsf_rnn

INIT_STD = 0.02


def _check_cell(cell: str) -> None:
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {tuple(CELLS)}, got {cell!r}")


def _check_feedback(feedback: str) -> None:
    if feedback not in FEEDBACKS:
        raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")


def recurrent_layer(
    cell_name: str,
    params: dict,
    xs: jax.Array,
    feedback: str = "diagonal",
    key: jax.Array | None = None,
) -> jax.Array:
    """Run a cell over ``xs: [batch, length, d_in]`` from a zero state.

    Returns the cell's readout ``[batch, length, features * hidden]``; the backward
    pass of the recurrence is ``feedback`` (see ``dsf_rnn``).
    """
    _check_cell(cell_name)
    cell = CELLS[cell_name]
    hidden = params["recurrent"]["w"].shape[0]
    us = cell.project(params["input"], jnp.swapaxes(xs, 0, 1))  # time-major for the scan
    h0 = cell.initial_state(xs.shape[:1], hidden, xs.dtype)
    hs = dsf_rnn(cell.step, feedback, key=key)(params["recurrent"], h0, us)
    return jnp.swapaxes(cell.readout(hs), 0, 1)


class RecurrentBlock(nn.Module):
    """``x + Linear(RNN(LN(x)))``: ``x: [batch, length, d]`` -> same shape."""

    cell: str
    feedback: str
    output_std: float
    feedback_seed: int = 0
    index: int = 0

    def __post_init__(self) -> None:
        _check_cell(self.cell)
        _check_feedback(self.feedback)
        check_positive(self.output_std, "output_std")
        check_int(self.feedback_seed, "feedback_seed", minimum=0)
        check_int(self.index, "index", minimum=0)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cell = CELLS[self.cell]
        width = x.shape[-1]
        params = self.param("cell", lambda key: cell.init(key, width, width))
        key = jax.random.fold_in(jax.random.key(self.feedback_seed), self.index)
        features = recurrent_layer(self.cell, params, nn.LayerNorm()(x), self.feedback, key)
        out = nn.Dense(width, kernel_init=nn.initializers.normal(self.output_std))(features)
        return x + out


class MLPBlock(nn.Module):
    """``x + Linear(GELU(Linear(LN(x))))`` with a 4x hidden width."""

    output_std: float

    def __post_init__(self) -> None:
        check_positive(self.output_std, "output_std")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        hidden = nn.Dense(4 * width, kernel_init=nn.initializers.normal(INIT_STD))(
            nn.LayerNorm()(x)
        )
        out = nn.Dense(width, kernel_init=nn.initializers.normal(self.output_std))(nn.gelu(hidden))
        return x + out


class RNNLanguageModel(nn.Module):
    """``tokens: [batch, length]`` (int) -> next-token logits ``[batch, length, vocab]``.

    Attributes:
      vocab_size, width, layers: sizes; the RNN's hidden size is ``width``.
      cell: ``"gru"``, ``"tanh"`` or ``"lstm"``.
      feedback: the recurrences' backward pass (``dsf_rnn``): ``"exact"`` (BPTT),
        ``"diagonal"`` (DSF), ``"zero"`` (truncated BPTT), ...
      feedback_seed: seed of the random dense feedbacks (``"gaussian"``,
        ``"orthogonal"``); each layer folds in its index.
    """

    vocab_size: int
    width: int = 128
    layers: int = 2
    cell: str = "gru"
    feedback: str = "diagonal"
    feedback_seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size")
        check_int(self.width, "width")
        check_int(self.layers, "layers")
        _check_cell(self.cell)
        _check_feedback(self.feedback)
        check_int(self.feedback_seed, "feedback_seed", minimum=0)
        super().__post_init__()

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        output_std = INIT_STD / (2 * self.layers) ** 0.5
        x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(INIT_STD))(
            tokens
        )
        for i in range(self.layers):
            x = RecurrentBlock(self.cell, self.feedback, output_std, self.feedback_seed, i)(x)
            x = MLPBlock(output_std)(x)
        x = nn.LayerNorm()(x)
        return nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(INIT_STD))(x)
