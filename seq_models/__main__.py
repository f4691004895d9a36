"""Command line: ``python -m seq_models {locost-train,summarize,chacal-train} [options]``.

``locost-train`` pretrains (gap sentences) and fine-tunes the ``tiny`` LOCOST on the
offline documentation-summarization data and reports ROUGE beside the lead-3 and
random-3 baselines; ``summarize --run-dir DIR FILE`` summarises a text file of any
length with a trained run; ``chacal-train --task tracking|boxes`` trains a
chain-and-causal attention model (or a standard transformer, ``--attention standard
standard``) on generated entity-tracking data.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from miles_cli import UsageError, check_config, config_to_dict, dispatch, option, run_command
from seq_models.chacal_job import ChaCALConfig, chacal_train, default_run_dir
from seq_models.locost_job import LOCOSTJobConfig, train_locost
from seq_models.scope_job import ScopeRunConfig, scope_command
from seq_models.summarize import read_document, summarize_text
from training import harness

DEFAULT_RUN_DIR = "runs/locost-tiny"


@dataclasses.dataclass(frozen=True)
class LOCOSTTrainConfig(LOCOSTJobConfig):
    """Gap-sentence pretraining, then summarization fine-tuning.

    Attributes:
      pretrain_steps: gap-sentence pretraining steps before fine-tuning (0: none).
      num_steps: fine-tuning steps.
    """

    stage: str = option("finetune", choices=("finetune",), cli=False)
    init_from: str | None = option(None, cli=False)
    pretrain_steps: int = option(400, minimum=0)

    def stage_config(self) -> LOCOSTJobConfig:
        fields = config_to_dict(self)
        del fields["pretrain_steps"]
        return LOCOSTJobConfig(**fields)


def locost_train(config: LOCOSTTrainConfig, run_dir: str, progress: bool) -> str:
    results = train_locost(
        config.stage_config(), run_dir, pretrain_steps=config.pretrain_steps, progress=progress
    )

    def row(name: str, scores: dict) -> str:
        return f"  {name:16s}" + "  ".join(f"{k} {v:.4f}" for k, v in scores.items())

    return "\n".join(
        [
            f"LOCOST {config.preset}: {results['parameters']:,} parameters, "
            f"{results['test_examples']} test documents:",
            row("LOCOST", results["rouge"]),
            row("lead-3", results["lead_3_rouge"]),
            row("random-3", results["random_3_rouge"]),
            f"run directory {run_dir} (summaries in finetune/summaries.jsonl)",
        ]
    )


@dataclasses.dataclass(frozen=True)
class SummarizeOptions:
    """What to summarise.

    Attributes:
      file: UTF-8 text file, of any length.
      max_length: most summary tokens.
      num_beams: beam width.
      progress: show the progress bar over the encoder layers.
      data_dir: data directory of the run's tokenizer (default: $MILES_JAX_DATA_DIR or
        ~/.cache/miles_jax/tensorflow_datasets).
    """

    file: str = option()
    max_length: int = option(64, minimum=2)
    num_beams: int = option(2, minimum=1)
    progress: bool = option(True)
    data_dir: str | None = option(None)

    def __post_init__(self) -> None:
        check_config(self)


def summarize(options: SummarizeOptions, run_dir: str) -> str:
    text = read_document(options.file)
    finetune = Path(run_dir) / "finetune"
    config, experiment, state = harness.restore(
        LOCOSTJobConfig, finetune if finetune.is_dir() else run_dir, data_dir=options.data_dir
    )
    if config.stage != "finetune":
        raise UsageError(f"{run_dir} holds a {config.stage} run, not a summarization model")
    summary, length = summarize_text(
        experiment.model,
        state.params,
        experiment.extras["tokenizer"],
        text,
        max_length=options.max_length,
        num_beams=options.num_beams,
        progress=options.progress,
    )
    print(f"{length:,} input tokens", file=sys.stderr)
    return summary


COMMANDS = {
    "locost-train": lambda argv: run_command(
        LOCOSTTrainConfig,
        locost_train,
        argv,
        prog="python -m seq_models locost-train",
        description="Pretrain (gap sentences) and fine-tune LOCOST on offline documentation "
        "summarization; ROUGE against the lead-3 and random-3 baselines.",
        run_dir=DEFAULT_RUN_DIR,
        progress=True,
    ),
    "summarize": lambda argv: run_command(
        SummarizeOptions,
        summarize,
        argv,
        prog="python -m seq_models summarize",
        description="Summarise a text file of any length with a trained LOCOST run.",
        run_dir=True,
    ),
    "scope": lambda argv: run_command(
        ScopeRunConfig,
        scope_command,
        argv,
        prog="python -m seq_models scope",
        description="SCOPE on generated data-to-text: unconditional LM, SFT, noisy "
        "negatives and DPO; hallucination, omission, PARENT-style and ROUGE scores of SFT, "
        "SFT + SCOPE and context-aware decoding.",
        run_dir="runs/scope",
        progress=True,
    ),
    "chacal-train": lambda argv: run_command(
        ChaCALConfig,
        chacal_train,
        argv,
        prog="python -m seq_models chacal-train",
        description="Train chain-and-causal attention (or a standard transformer) on "
        "generated entity tracking: chains of reassignments or Boxes.",
        run_dir=default_run_dir,
        progress=True,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("python -m seq_models", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
