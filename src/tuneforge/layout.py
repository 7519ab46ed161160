"""The run folder: the names of everything a run writes into its ``output_dir``.

One module below every package owns these names, so the code that writes a file, the code
that reads it back (report, eval, chat, webui) and the code that may delete it
(``overwrite_output_dir``) agree. Anything in a run folder that is not listed here belongs to
the user, and tuneforge never deletes it.
"""

from __future__ import annotations

import re
from pathlib import Path

CONFIG_NAME = "tuneforge_config.yaml"  # the resolved config, written when training starts
MARKER = "tuneforge_complete.json"  # in a checkpoint: every file of it is on disk
LOG_NAME = "trainer_log.jsonl"
RESULTS_NAME = "all_results.json"
STATE_NAME = "trainer_state.json"
PLOT_NAME = "training_loss.png"
REPORT_NAME = "report.html"
EVAL_DIR = "eval"  # `tuneforge eval` writes here by default
PREDICT_DIR = "predict"  # do_predict after training
TB_DIR = "runs"  # TensorBoard event files
WANDB_DIR = "wandb"
REF_ADAPTER_DIR = "ref"  # dpo/kto continuing an adapter: trl's frozen copy of it, the reference
PISSA_INIT_DIR = "pissa_init"  # pissa_convert: the adapter as PiSSA started it, to convert from
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")

# What transformers, peft and the tokenizer write when a run saves its result.
_SAVED_FILES = frozenset(
    {
        "adapter_config.json",
        "adapter_model.safetensors",
        "adapter_model.bin",
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "training_args.bin",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "chat_template.json",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "train_results.json",
        "eval_results.json",
    }
)
_RUN_FILES = _SAVED_FILES | {
    CONFIG_NAME,
    LOG_NAME,
    RESULTS_NAME,
    STATE_NAME,
    PLOT_NAME,
    REPORT_NAME,
}
_RUN_DIRS = frozenset({EVAL_DIR, PREDICT_DIR, TB_DIR, WANDB_DIR, REF_ADAPTER_DIR, PISSA_INIT_DIR})
_SHARD = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")


def is_run_entry(path: Path) -> bool:
    """True for a file or folder that a run writes (so overwrite may delete it)."""
    name = path.name
    if path.is_dir() and not path.is_symlink():
        return name in _RUN_DIRS or CHECKPOINT_PATTERN.match(name) is not None
    return name in _RUN_FILES or _SHARD.match(name) is not None


def is_run_folder(folder: Path) -> bool:
    """A folder a tuneforge run has written to: its config, its log or a checkpoint."""
    if not folder.is_dir():
        return False
    return (
        (folder / CONFIG_NAME).is_file()
        or (folder / LOG_NAME).is_file()
        or any(CHECKPOINT_PATTERN.match(p.name) for p in folder.iterdir() if p.is_dir())
    )


def foreign_entries(folder: Path) -> list[str]:
    """Names in `folder` that no run writes: the user's own files, never to be deleted."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not is_run_entry(p))


def checkpoint_step(folder: Path) -> int | None:
    """The step in a ``checkpoint-N`` folder name, or None for any other name."""
    match = CHECKPOINT_PATTERN.match(folder.name)
    return int(match.group(1)) if match else None


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """All checkpoint folders of a run (complete or not), oldest first."""
    if not output_dir.is_dir():
        return []
    found = [
        (step, p)
        for p in output_dir.iterdir()
        if p.is_dir() and (step := checkpoint_step(p)) is not None
    ]
    return sorted(found)


def is_complete(checkpoint: Path) -> bool:
    """Every file of the checkpoint is on disk (its marker is written last)."""
    return (checkpoint / MARKER).is_file()


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """The checkpoints a run can resume from (or chat with), oldest first."""
    return [path for _, path in checkpoints(output_dir) if is_complete(path)]
