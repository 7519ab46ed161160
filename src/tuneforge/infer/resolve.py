"""What "load this model" means, decided once: a trained folder (or model folder), an optional
YAML and overrides become the config it was trained with and what to load.

Chat, the API server, export, eval, predict, the forgetting check and the WebUI all ask here, so
a folder means the same thing everywhere. The config stays as it was trained or given: its
``model_name_or_path`` is always the base model the run started from. What is loaded is said
beside it (`ResolvedModel.weights` and `ResolvedModel.adapter`), never written into the config,
so whoever reads the config later (an export's saved YAML, eval's base side) sees the base.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.load import load_config, replace
from tuneforge.config.schema import ModelArgs, RunConfig
from tuneforge.errors import ModelError
from tuneforge.layout import CONFIG_NAME, complete_checkpoints

logger = logging.getLogger(__name__)

Overrides = Iterable[str] | Mapping[str, Any]


@dataclass(frozen=True)
class ResolvedModel:
    """A run config and what to load for it.

    `weights` is the folder (or model name) whose full weights load: the base model, a full or
    freeze run, a merged export or an interrupted run's last complete checkpoint. `adapter` is
    the LoRA folder applied on top, or None.
    """

    config: RunConfig
    weights: str
    adapter: str | None = None

    @property
    def base(self) -> str:
        """The model the run started from."""
        return self.config.model.model_name_or_path

    def load_args(self) -> ModelArgs:
        """The config's model settings pointed at `weights` and `adapter`: the form the loaders
        of `tuneforge.models` take. A copy; the config keeps naming the base."""
        return self.config.model.model_copy(
            update={"model_name_or_path": self.weights, "adapter_name_or_path": self.adapter}
        )

    def base_model(self) -> ResolvedModel:
        """The model the run started from, with the same settings (eval and the forgetting
        check compare the tuned model with it)."""
        return ResolvedModel(self.config, self.base)

    def with_settings(self, **changes: Any) -> ResolvedModel:
        """The same weights with flat config keys changed (``infer_dtype="float32"``)."""
        return dataclasses.replace(self, config=replace(self.config, **changes))


def resolve_model(
    trained: str | Path | None = None,
    config: RunConfig | str | Path | None = None,
    overrides: Overrides = (),
) -> ResolvedModel:
    """The config and the weights for a trained folder, a YAML or both.

    `trained` may be a LoRA output folder, the folder of a full/freeze run or of a merged
    export (these carry tuneforge_config.yaml), an interrupted run (its last complete checkpoint
    is loaded, with a warning), a plain peft adapter folder (its adapter_config.json names the
    base model) or a plain Hugging Face model folder (its own base). None: the config's model,
    and its ``adapter_name_or_path`` if it names one. `config` (a RunConfig or a YAML path,
    with `overrides`) is used instead of what the folder carries; without it, `overrides` apply
    on top of the folder's config.
    """
    given = _given_config(config, overrides)
    if trained is None:
        cfg = given or _overridden(load_config({"do_train": False}), overrides)
        if cfg.model.adapter_name_or_path:
            return resolve_model(cfg.model.adapter_name_or_path, cfg)
        return ResolvedModel(cfg, cfg.model.model_name_or_path)
    folder = Path(trained)
    weights, is_adapter = _weights(folder)
    cfg = given or _overridden(_folder_config(folder, is_adapter), overrides)
    if is_adapter:
        return ResolvedModel(cfg, cfg.model.model_name_or_path, str(weights))
    return ResolvedModel(cfg, str(weights))


def _given_config(config: RunConfig | str | Path | None, overrides: Overrides) -> RunConfig | None:
    if config is None:
        return None
    if isinstance(config, RunConfig):
        return _overridden(config, overrides)
    return load_config(config, overrides)


def _overridden(cfg: RunConfig, overrides: Overrides) -> RunConfig:
    """`cfg` with the user's overrides, for using the model rather than training it (so a
    training-only check, such as a dataset being named, does not apply)."""
    if not overrides:
        return cfg
    return load_config({**cfg.flat(only_set=True), "do_train": False}, overrides)


def _weights(folder: Path) -> tuple[Path, bool]:
    """The folder whose weights load, and whether they are a LoRA adapter."""
    if not folder.is_dir():
        raise ModelError(f"adapter '{folder}': no such folder")
    weights = folder
    if (folder / CONFIG_NAME).is_file() and not _holds_weights(folder):
        weights = _last_checkpoint(folder)
    if not _holds_weights(weights):
        raise ModelError(
            f"adapter '{folder}': no adapter_config.json (nor config.json); expected "
            f"a LoRA training output, a full-model folder or a merged export"
        )
    return weights, (weights / "adapter_config.json").is_file()


def _holds_weights(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file()


def _folder_config(folder: Path, is_adapter: bool) -> RunConfig:
    """The config saved with a tuneforge output; else the defaults with the base model a plain
    peft adapter names, or the plain model folder itself."""
    if (folder / CONFIG_NAME).is_file():
        return load_config(folder / CONFIG_NAME)
    base = _adapter_base(folder) if is_adapter else str(folder)
    return load_config({"do_train": False, **({"model_name_or_path": base} if base else {})})


def _last_checkpoint(run: Path) -> Path:
    """The weights of a run that was interrupted (it saved no final model): its last complete
    checkpoint, said in the log so the partial model is never taken for the finished one."""
    complete = complete_checkpoints(run)
    if not complete:
        raise ModelError(
            f"adapter '{run}': the run there has not finished and has no complete "
            f"checkpoint; resume it (resume_from_checkpoint: true) or train again"
        )
    logger.warning(
        "%s has not finished (no final model): using its last complete checkpoint, %s",
        run,
        complete[-1].name,
    )
    return complete[-1]


def _adapter_base(folder: Path) -> str | None:
    """The base model a plain peft adapter names (``base_model_name_or_path``)."""
    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
    except (OSError, ValueError):
        return None  # load_adapter reports the unreadable file with its name
    return base or None
