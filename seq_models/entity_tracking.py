"""Offline, seeded entity-tracking data: chains of reassignments, and Boxes.

Both are random-access sources (``len`` and ``__getitem__``, what ``training.make_loader``
and grain take): example ``i`` is generated on demand from ``numpy.random.default_rng(
[seed, stream, i])``, so a source is reproducible, needs no storage and is never
downloaded; different streams (training, validation, test) never share a generator.

Every example is a sequence of ``length`` statements; a statement is one position of a
decoder-only model, given as a few categorical fields (``tokens: int32 [T, F]``, one
embedding per field, summed), and every position is labelled with the state it
determines, so the model is trained at every position and evaluated where asked.

Tracking (``TrackingSource``): ``x_a := c`` assigns a value ``c``, ``x_b := x_a`` copies
a variable. Statements form chains ``x_0 := c, x_1 := x_0, ..., x_n := x_{n-1}`` (every
variable is assigned once, so no recency is needed), ``num_chains`` of them interleaved
at random, order inside each chain kept, each chain with its own value (so guessing a
value seen in the context is right ``1 / num_chains`` of the time, whatever ``n``). The
value of ``x_n`` is ``n`` state changes away from its assignment: a path of length ``n``
in the graph of "copies from" edges, which ``L`` layers of standard attention can
follow only for ``n <= 2^L - 1``. The last statement ends the *target* chain, whose
number of changes is ``num_changes`` (fixed, or drawn uniformly from a range); the
other statements form the distractor chains, of random lengths.
Fields ``(destination, source)``: destination a variable in ``[0, V)``, source a value
in ``[0, K)`` or a variable ``K + x``. Labels: the value each destination holds.

Boxes (``BoxesSource``, after Kim & Schuster 2023): objects are put into boxes, moved
between boxes and removed; every statement is labelled with the contents of its box
after it, and the last statement is a query of one box's contents. Fields
``(operation, object, box, source box)`` with ``operation`` in PUT, REMOVE, MOVE, QUERY,
``object = num_objects`` and ``source box = num_boxes`` where there is none. Labels:
``[T, num_objects]`` multi-hot contents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PUT, REMOVE, MOVE, QUERY = range(4)
OPERATIONS = ("put", "remove", "move", "query")


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class _SeededSource:
    """``num_examples`` examples, example ``i`` drawn from ``default_rng([seed, stream, i])``."""

    def __init__(self, num_examples: int, seed: int, stream: int):
        self.num_examples = _check_int(num_examples, "num_examples", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.stream = _check_int(stream, "stream", 0)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not -self.num_examples <= index < self.num_examples:
            raise IndexError(f"index {index} out of range for {self.num_examples} examples")
        return self.generate(
            np.random.default_rng([self.seed, self.stream, index % self.num_examples])
        )

    def generate(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError


class TrackingSource(_SeededSource):
    """Chains of reassignments (see the module docstring).

    Args:
      num_examples: examples in the source.
      seed, stream: the examples' generator (one stream per split).
      length: statements per example ``T``.
      num_changes: state changes of the target chain (ending at the last statement):
        an int ``n``, or a pair ``(low, high)`` drawn uniformly per example, inclusive;
        ``n + 1 <= length``.
      num_chains: chains per example, the target included (``<= length - n``).
      num_variables: variable names ``V >= length`` (each assigned once).
      num_values: values ``K >= num_chains``.

    Items: ``tokens: int32 [T, 2]`` (destination, source), ``labels: int32 [T]`` (value of
    each destination), ``depth: int32 [T]`` (state changes from the value to each
    statement; ``depth[-1]`` is the target's ``n``).
    """

    def __init__(
        self,
        num_examples: int,
        *,
        seed: int = 0,
        stream: int = 0,
        length: int = 32,
        num_changes: int | tuple[int, int] = (0, 15),
        num_chains: int = 4,
        num_variables: int = 64,
        num_values: int = 8,
    ):
        super().__init__(num_examples, seed, stream)
        self.length = _check_int(length, "length", 2)
        low, high = (num_changes, num_changes) if np.ndim(num_changes) == 0 else num_changes
        _check_int(low, "num_changes", 0)
        self.num_chains = _check_int(num_chains, "num_chains", 2)
        if _check_int(high, "num_changes", low) > self.length - self.num_chains:
            raise ValueError(
                f"num_changes must be at most length - num_chains = "
                f"{self.length - self.num_chains}, got {num_changes}"
            )
        self.num_changes = (int(low), int(high))
        self.num_variables = _check_int(num_variables, "num_variables", self.length)
        self.num_values = _check_int(num_values, "num_values", self.num_chains)

    @property
    def vocab_sizes(self) -> tuple[int, int]:
        """Categories of each token field: destination, source."""
        return self.num_variables, self.num_values + self.num_variables

    def generate(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        length = self.length
        changes = int(rng.integers(self.num_changes[0], self.num_changes[1] + 1))
        # Chain 0 is the target; the distractors split the other statements at random.
        others = length - changes - 1
        cuts = np.sort(rng.choice(np.arange(1, others), self.num_chains - 2, replace=False))
        sizes = [changes + 1, *np.diff([0, *cuts, others]).tolist()]
        # A uniform interleaving keeping each chain's order; the target ends last.
        order = np.repeat(np.arange(len(sizes)), [sizes[0] - 1, *sizes[1:]])
        order = np.append(rng.permutation(order), 0)
        names = rng.permutation(self.num_variables)[:length]
        values = rng.permutation(self.num_values)[: len(sizes)]
        tokens = np.zeros((length, 2), np.int32)
        labels = np.zeros(length, np.int32)
        depth = np.zeros(length, np.int32)
        emitted = np.zeros(len(sizes), np.int64)
        previous = np.zeros(len(sizes), np.int64)
        for position, chain in enumerate(order):
            step = emitted[chain]
            source = values[chain] if step == 0 else self.num_values + previous[chain]
            tokens[position] = names[position], source
            labels[position], depth[position] = values[chain], step
            previous[chain], emitted[chain] = names[position], step + 1
        return {"tokens": tokens, "labels": labels, "depth": depth}


class BoxesSource(_SeededSource):
    """Boxes of objects under put / remove / move operations (see the module docstring).

    Args:
      num_examples: examples in the source.
      seed, stream: the examples' generator (one stream per split).
      length: statements per example ``T`` (``T - 1`` operations, then one query).
      num_boxes: boxes.
      num_objects: distinct objects (each in at most one box at a time).

    Items: ``tokens: int32 [T, 4]`` (operation, object, box, source box),
    ``labels: int32 [T, num_objects]`` (1 where the object is in the statement's box
    after it), ``box_operations: int32`` (operations before the query that put into,
    took from or moved into or out of the queried box).
    """

    def __init__(
        self,
        num_examples: int,
        *,
        seed: int = 0,
        stream: int = 0,
        length: int = 32,
        num_boxes: int = 5,
        num_objects: int = 8,
    ):
        super().__init__(num_examples, seed, stream)
        self.length = _check_int(length, "length", 2)
        self.num_boxes = _check_int(num_boxes, "num_boxes", 2)
        self.num_objects = _check_int(num_objects, "num_objects", 1)

    @property
    def vocab_sizes(self) -> tuple[int, int, int, int]:
        """Categories of each token field: operation, object (+ none), box, source (+ none)."""
        return len(OPERATIONS), self.num_objects + 1, self.num_boxes, self.num_boxes + 1

    def generate(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # Plain Python in the loop: a few hundred numpy calls per example would cost 10x.
        none_object, none_box = self.num_objects, self.num_boxes
        where = [-1] * self.num_objects  # the box of each object, -1: in none
        states = np.zeros((self.length, self.num_objects), np.int32)
        tokens = np.zeros((self.length, 4), np.int32)
        touched = [0] * self.num_boxes
        draws = rng.random((self.length, 3)).tolist()  # operation, object, box
        for position, (u_kind, u_object, u_box) in enumerate(draws[:-1]):
            absent = [o for o, b in enumerate(where) if b < 0]
            present = [o for o, b in enumerate(where) if b >= 0]
            # Put twice as often as remove, so that boxes hold a few objects.
            weights = [2.0 * bool(absent), 1.0 * bool(present), 2.0 * bool(present)]
            u_kind *= sum(weights)
            kind = PUT if u_kind < weights[0] else REMOVE if u_kind < sum(weights[:2]) else MOVE
            candidates = absent if kind == PUT else present
            obj = candidates[int(u_object * len(candidates))]
            source = none_box if kind == PUT else where[obj]
            if kind == PUT:
                box = int(u_box * self.num_boxes)
            elif kind == REMOVE:
                box, source = source, none_box
            else:
                box = (source + 1 + int(u_box * (self.num_boxes - 1))) % self.num_boxes
                touched[source] += 1
            where[obj] = -1 if kind == REMOVE else box
            touched[box] += 1
            tokens[position] = kind, obj, box, source
            states[position] = where
        box = int(draws[-1][2] * self.num_boxes)
        tokens[-1] = QUERY, none_object, box, none_box
        states[-1] = where
        labels = (states == tokens[:, 2:3]).astype(np.int32)
        return {"tokens": tokens, "labels": labels, "box_operations": np.int32(touched[box])}
