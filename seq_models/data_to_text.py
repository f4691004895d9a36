"""A data-to-text task where every fact of an output can be checked against its record.

A record describes one entity (a person or a restaurant) by 3 to 5 typed attributes,
each value drawn from a closed vocabulary; the reference text states exactly the
record's facts, with the attributes in a random order, paraphrased clauses (several per
attribute) and varied sentence openings, so a model has to read the record to be right::

    record: person | first name: Mira | last name: Okafor | birth city: Lyon | occupation:
            violinist | employer: Harbor Bank
    text:   Okafor grew up in Lyon. Mira Okafor works for Harbor Bank and earns a living
            as a violinist.

(the order of the sentences and clauses varies from example to example). Because the
value vocabularies are closed and no template word is a value, :func:`extract_values`
finds every value an output mentions exactly (no model): a mentioned value absent from
the record is a hallucination, a record value not mentioned an omission.

``DataToTextSource(split, size, seed)`` is a random-access (grain) source of
``{"id", "kind", "record", "text", "values"}`` examples, generated on the fly from
``(seed, split, index)``: offline, deterministic, nothing cached or downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

SPLITS = ("train", "validation", "test")

FIRST_NAMES = (
    "Mira",
    "Jonas",
    "Aiko",
    "Tomas",
    "Leila",
    "Viktor",
    "Nadia",
    "Oren",
    "Ines",
    "Kofi",
    "Sanna",
    "Ravi",
    "Elena",
    "Bruno",
    "Yara",
    "Felix",
    "Marta",
    "Idris",
    "Greta",
    "Hugo",
)
LAST_NAMES = (
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Novak",
    "Haddad",
    "Castillo",
    "Weber",
    "Kowalski",
    "Duarte",
    "Brennan",
    "Sato",
    "Petrov",
    "Nakamura",
    "Fischer",
    "Alvarez",
    "Quinn",
    "Rossi",
    "Jensen",
    "Varga",
)
CITIES = (
    "Lyon",
    "Porto",
    "Osaka",
    "Krakow",
    "Dublin",
    "Lagos",
    "Quito",
    "Tallinn",
    "Nairobi",
    "Bergen",
    "Seville",
    "Hanoi",
    "Leipzig",
    "Cusco",
    "Gdansk",
    "Mombasa",
    "Turin",
    "Austin",
)
OCCUPATIONS = (
    "violinist",
    "architect",
    "chemist",
    "carpenter",
    "journalist",
    "surgeon",
    "pilot",
    "librarian",
    "geologist",
    "baker",
    "translator",
    "engineer",
    "photographer",
    "sculptor",
    "economist",
    "botanist",
)
EMPLOYERS = (
    "Harbor Bank",
    "Nordlys Energy",
    "Vireo Labs",
    "Atlas Freight",
    "Kestrel Media",
    "Solano Foods",
    "Brightwater Clinic",
    "Meridian Press",
    "Copperline Rail",
    "Ostara Films",
)
RESTAURANT_ADJECTIVES = (
    "Golden",
    "Silver",
    "Blue",
    "Crooked",
    "Hidden",
    "Rusty",
    "Little",
    "Wild",
    "Green",
    "Copper",
)
RESTAURANT_NOUNS = (
    "Fig",
    "Lantern",
    "Anchor",
    "Olive",
    "Kettle",
    "Sparrow",
    "Barrel",
    "Orchard",
    "Compass",
    "Thistle",
)
CUISINES = (
    "Italian",
    "Thai",
    "Mexican",
    "Ethiopian",
    "Japanese",
    "Lebanese",
    "Peruvian",
    "Korean",
    "Greek",
    "Indian",
    "French",
    "Turkish",
)
AREAS = (
    "riverside",
    "city centre",
    "old town",
    "harbour district",
    "university quarter",
    "market square",
    "north hills",
)
PRICES = ("cheap", "moderate", "expensive")
RATINGS = tuple(f"{k} out of 5" for k in range(1, 6))
YEARS = tuple(str(y) for y in range(1930, 2021))

# attribute -> (label in the record, vocabulary, clauses; {v} is the value)
PERSON = {
    "birth_year": (
        "birth year",
        YEARS,
        ("was born in {v}", "was born in the year {v}", "came into the world in {v}"),
    ),
    "birth_city": (
        "birth city",
        CITIES,
        ("comes from {v}", "is a native of {v}", "grew up in {v}", "was raised in {v}"),
    ),
    "occupation": (
        "occupation",
        OCCUPATIONS,
        ("works as a {v}", "is a {v} by profession", "earns a living as a {v}"),
    ),
    "employer": (
        "employer",
        EMPLOYERS,
        ("works for {v}", "is employed by {v}", "has a job at {v}"),
    ),
}
RESTAURANT = {
    "cuisine": (
        "cuisine",
        CUISINES,
        ("serves {v} food", "offers {v} cuisine", "specialises in {v} dishes"),
    ),
    "area": (
        "area",
        AREAS,
        ("is located in the {v}", "can be found in the {v}", "sits in the {v}"),
    ),
    "price": (
        "price range",
        PRICES,
        ("has {v} prices", "is in the {v} price range", "charges {v} prices"),
    ),
    "rating": (
        "rating",
        RATINGS,
        ("is rated {v}", "has a customer rating of {v}", "earns {v} from its guests"),
    ),
    "opened": (
        "opened",
        YEARS,
        ("opened in {v}", "has been open since {v}", "first opened its doors in {v}"),
    ),
}
KINDS = {"person": PERSON, "restaurant": RESTAURANT}
VALUE_VOCABULARY = tuple(
    sorted(
        set(FIRST_NAMES + LAST_NAMES + CITIES + OCCUPATIONS + EMPLOYERS + CUISINES + AREAS)
        | set(PRICES + RATINGS + YEARS)
        | {f"The {a} {n}" for a in RESTAURANT_ADJECTIVES for n in RESTAURANT_NOUNS}
    )
)
# Longest first, so "The Golden Fig" is one value and not a year inside a longer string.
_VALUE_PATTERN = re.compile(
    r"(?<![\w-])("
    + "|".join(re.escape(v) for v in sorted(VALUE_VOCABULARY, key=len, reverse=True))
    + r")(?![\w-])"
)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _person(rng: np.random.Generator) -> tuple[list[tuple[str, str]], str]:
    first, last = _pick(rng, FIRST_NAMES), _pick(rng, LAST_NAMES)
    fields = [("first name", first), ("last name", last)]
    return fields, f"{first} {last}"


def _restaurant(rng: np.random.Generator) -> tuple[list[tuple[str, str]], str]:
    name = f"The {_pick(rng, RESTAURANT_ADJECTIVES)} {_pick(rng, RESTAURANT_NOUNS)}"
    return [("name", name)], name


def _subjects(kind: str, name: str, fields: list[tuple[str, str]]) -> tuple[str, ...]:
    """Ways to refer to the entity after the first sentence."""
    if kind == "person":
        return (name, fields[1][1], "This person")
    return (name, "The restaurant", "This place")


def make_example(kind: str, rng: np.random.Generator) -> dict[str, Any]:
    """One record and its reference text (see the module doc)."""
    attributes = KINDS[kind]
    fields, name = (_person if kind == "person" else _restaurant)(rng)
    count = int(rng.integers(2, len(attributes) + 1))
    chosen = [list(attributes)[i] for i in rng.permutation(len(attributes))[:count]]
    clauses = []
    for attribute in chosen:
        label, vocabulary, templates = attributes[attribute]
        value = _pick(rng, vocabulary)
        fields.append((label, value))
        clauses.append(_pick(rng, templates).format(v=value))
    # Record fields in a fixed order; the text's order is the random `chosen` order.
    order = {label: i for i, (label, _, _) in enumerate(attributes.values())}
    names, facts = fields[: len(fields) - count], fields[len(fields) - count :]
    facts.sort(key=lambda f: order[f[0]])
    record = " | ".join([kind] + [f"{label}: {value}" for label, value in names + facts])
    sentences, i = [], 0
    subjects = _subjects(kind, name, fields)
    while i < len(clauses):
        take = 2 if i + 1 < len(clauses) and rng.random() < 0.5 else 1
        subject = name if i == 0 else _pick(rng, subjects)
        sentences.append(f"{subject} " + " and ".join(clauses[i : i + take]) + ".")
        i += take
    return {
        "kind": kind,
        "record": record,
        "text": " ".join(sentences),
        "values": [value for _, value in names + facts],
    }


class DataToTextSource:
    """Random-access source of generated data-to-text examples (grain-compatible).

    Example ``i`` of ``split`` is generated from ``(seed, split, i)`` alone: the same
    for every call, process and platform. Items: ``{"id": "<split>-<i>", "kind",
    "record", "text", "values"}`` (``values``: the record's values, for the metrics).

    Args:
      split: ``train``, ``validation`` or ``test`` (disjoint random streams).
      size: number of examples.
      seed: data seed.
    """

    def __init__(self, split: str, size: int, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not isinstance(size, int | np.integer) or isinstance(size, bool) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.split, self.size, self.seed = split, int(size), int(seed)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        index %= self.size
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        kind = "person" if rng.random() < 0.5 else "restaurant"
        return {"id": f"{self.split}-{index}"} | make_example(kind, rng)

    def __repr__(self) -> str:
        return f"DataToTextSource({self.split!r}, size={self.size}, seed={self.seed})"


def extract_values(text: str) -> list[str]:
    """Every value of the task's vocabularies mentioned in ``text``, in order (exact,
    case-sensitive matches of whole words, longest first)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return _VALUE_PATTERN.findall(text)


def record_fields(record: str) -> list[tuple[str, str]]:
    """``[(label, value), ...]`` of a serialised record (``kind | label: value | ...``)."""
    if not isinstance(record, str) or " | " not in record:
        raise ValueError(f"record must be a 'kind | label: value | ...' string, got {record!r}")
    fields = []
    for part in record.split(" | ")[1:]:
        label, sep, value = part.partition(": ")
        if not sep or not value:
            raise ValueError(f"record field must be 'label: value', got {part!r} in {record!r}")
        fields.append((label, value))
    return fields
