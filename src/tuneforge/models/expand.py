"""LLaMA Pro's block expansion (Wu et al. 2024; LLaMA-Factory's ``scripts/llama_pro.py``).

After every k-th decoder layer goes a copy of it whose output projections (``o_proj``,
``down_proj``) are zero: the copy adds nothing to the residual stream, so the expanded model
computes exactly what the original did. Training only the copies (``use_llama_pro: true``,
`adapters.llama_pro_layers`) adds knowledge while the original layers stay as they were.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tuneforge.config.schema import ModelArgs
from tuneforge.errors import ConfigError, ModelError, OutputError, UserError
from tuneforge.models.adapters import decoder_layers, llama_pro_layers
from tuneforge.models.aliases import resolve_model_path
from tuneforge.models.load import load_model
from tuneforge.models.quantization import is_quantized

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# A layer's last projection of attention and of the MLP: zero, the copy is an identity.
OUTPUT_PROJECTIONS = frozenset({"o_proj", "down_proj"})


@dataclass(frozen=True)
class Expansion:
    """What `expand_blocks` wrote: the folder, the layer counts, and the new layers' indices
    (the ones ``use_llama_pro`` trains)."""

    output_dir: Path
    layers_before: int
    layers_after: int
    inserted: tuple[int, ...]

    @property
    def num_expand(self) -> int:
        return len(self.inserted)


def expand_blocks(model_path: str | Path, output_dir: str | Path, num_expand: int) -> Expansion:
    """Save into `output_dir` the model of `model_path` (a folder, an alias or a hub id) with
    `num_expand` zero-output copies of its decoder layers, one after every
    (layers / num_expand)-th, and its tokenizer.

    Everything is checked before the weights load: `output_dir` must be new or empty (a
    folder of the user's is never written into), `num_expand` must divide the layer count.
    The folder appears only once complete (written beside it, then renamed)."""
    out = Path(output_dir).expanduser()
    _check_output(out)
    folder = resolve_model_path(ModelArgs(model_name_or_path=str(model_path)))
    settings = _read_config(Path(folder))
    count = settings.get("num_hidden_layers")
    if not isinstance(count, int) or count < 1:
        raise ModelError(
            f"{folder}: config.json names no num_hidden_layers; block expansion needs a "
            f"decoder-only model with LLaMA-style layers"
        )
    _check_num_expand(num_expand, count)
    stride = count // num_expand

    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{folder}: the tokenizer cannot be loaded: {reason}") from None
    model = load_model(
        ModelArgs(model_name_or_path=folder), dtype=_stored_dtype(settings), for_training=False
    )
    if is_quantized(model):
        raise ModelError(f"{folder}: a quantized model cannot be expanded; expand the original")
    stack_name, layers = _layers(model, folder)
    inserted = tuple(llama_pro_layers(count + num_expand, num_expand))  # what trains later
    logger.info(
        "expanding %s: %d -> %d decoder layers, a zero-output copy after %s (new layers %s)",
        folder,
        count,
        count + num_expand,
        "each layer" if stride == 1 else f"every {_ordinal(stride)} layer",
        ", ".join(map(str, inserted)),
    )
    _expand(model, stack_name, layers, stride)

    _save(model, tokenizer, out)
    logger.info("expanded model saved in %s", out)
    return Expansion(out, count, count + num_expand, inserted)


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    """Write beside `out`, then rename: an interrupted save leaves no half model behind."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise OutputError(
            f"output_dir '{out}' cannot be created: {exc.strerror or exc}; choose another folder"
        ) from None
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        os.replace(partial, out)  # an empty `out` is replaced; a full one was refused above
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise OutputError(
            f"output_dir '{out}': the expanded model cannot be written: {exc.strerror or exc}"
        ) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"output_dir '{out}' is a file; name a new folder for the model")
    if out.is_dir() and any(out.iterdir()):
        names = sorted(path.name for path in out.iterdir())
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise OutputError(
            f"output_dir '{out}' is not empty ({shown}); name a new folder for the expanded model"
        )


def _check_num_expand(num_expand: int, count: int) -> None:
    if num_expand >= 1 and count % num_expand == 0:
        return
    divisors = [str(d) for d in range(1, count + 1) if count % d == 0]
    raise UserError(
        f"num_expand={num_expand}: must divide the model's {count} decoder layers "
        f"(one of {', '.join(divisors)})"
    )


def _read_config(folder: Path) -> dict:
    try:
        settings = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}/config.json cannot be read: {exc}") from None
    return settings if isinstance(settings, dict) else {}


def _stored_dtype(settings: dict) -> torch.dtype:
    """The dtype the weights are saved in, so the expanded copy is no larger than it must be."""
    name = settings.get("dtype") or settings.get("torch_dtype")
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _layers(model: PreTrainedModel, folder: str) -> tuple[str, torch.nn.ModuleList]:
    """The decoder layers and their name, refused where a zero copy would not be an identity."""
    try:
        stack_name, layers = decoder_layers(model)
    except ConfigError:
        raise ModelError(
            f"{folder}: cannot find the decoder layers of {type(model).__name__}; block "
            f"expansion needs LLaMA-style layers"
        ) from None
    found = {part for name, _ in layers[0].named_parameters() for part in name.split(".")}
    if not OUTPUT_PROJECTIONS <= found:
        raise ModelError(
            f"{folder}: the decoder layers of {type(model).__name__} have no "
            f"{' and '.join(sorted(OUTPUT_PROJECTIONS - found))}; block expansion needs "
            f"LLaMA-style layers (o_proj after attention, down_proj after the MLP)"
        )
    return stack_name, layers


def _expand(
    model: PreTrainedModel, stack_name: str, layers: torch.nn.ModuleList, stride: int
) -> None:
    """A zero-output copy after every `stride`-th layer of `model`, in place, for saving: the
    config's layer count and ``layer_types`` follow (loading it numbers the layers afresh)."""
    grown: list[torch.nn.Module] = []
    kinds = getattr(model.config, "layer_types", None)  # e.g. full or sliding attention
    if not (isinstance(kinds, list) and len(kinds) == len(layers)):
        kinds = None
    grown_kinds: list[object] = []
    for index, layer in enumerate(layers):
        grown.append(layer)
        if kinds is not None:
            grown_kinds.append(kinds[index])
        if (index + 1) % stride == 0:
            grown.append(_zero_output_copy(layer))
            if kinds is not None:
                grown_kinds.append(kinds[index])
    parent_name, _, attribute = stack_name.rpartition(".")
    setattr(model.get_submodule(parent_name), attribute, torch.nn.ModuleList(grown))
    model.config.num_hidden_layers = len(grown)
    if kinds is not None:
        model.config.layer_types = grown_kinds


def _zero_output_copy(layer: torch.nn.Module) -> torch.nn.Module:
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        for name, param in twin.named_parameters():
            if OUTPUT_PROJECTIONS & set(name.split(".")):
                param.zero_()
    return twin


def _ordinal(n: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10 if n % 100 not in (11, 12, 13) else 0, "th")
    return f"{n}{suffix}"
