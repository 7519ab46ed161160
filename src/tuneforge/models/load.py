"""Load the tokenizer, the model and a saved adapter from local folders, or say in one line why not.

A folder that loads with warnings is worse than one that fails: transformers fills weights
missing from a checkpoint with random values and only logs it, and older releases read the
wrong end-of-sequence token from GGUF files, so a model never stops generating. Both are
checked here, once, for every command that loads a model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors import SafetensorError

from tuneforge.config.schema import ModelArgs
from tuneforge.errors import ConfigError, ModelError
from tuneforge.layout import CONFIG_NAME
from tuneforge.messages import first_line
from tuneforge.models.aliases import resolve_model_path
from tuneforge.models.packed_attention import PACKED_SDPA
from tuneforge.models.pooling import Pooling, use_mean_pooling
from tuneforge.models.quantization import quantization_kwargs
from tuneforge.models.rope import rope_scaled_config

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# ``flash_attn`` config value -> transformers' ``attn_implementation``.
ATTENTION: Mapping[str, str] = MappingProxyType(
    {
        "auto": "sdpa",
        "sdpa": "sdpa",
        "disabled": "eager",
        "fa2": "flash_attention_2",
    }
)

_LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, SafetensorError)

# Names transformers gives a sequence-classification head (Llama-likes: score; BERT-likes:
# classifier); a new head is expected to be missing from a causal LM's checkpoint.
HEADS = ("score", "classifier")
# peft task types -> what a user calls them.
TASKS: Mapping[str, str] = MappingProxyType(
    {
        "SEQ_CLS": "sequence classification (stage cls)",
        "CAUSAL_LM": "text generation (stage sft or pt)",
    }
)

# An adapter tensor name -> the module it belongs to and what kind of LoRA tensor it is.
_LORA_KEY = re.compile(
    r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B"
    r"|lora_magnitude_vector)(\.weight)?$"
)


def load_tokenizer(model_args: ModelArgs) -> PreTrainedTokenizerBase:
    """The model's tokenizer with an end-of-sequence token the model knows and a padding token.

    An adapter folder holding a tokenizer wins over the base model's: it carries the chat
    template the adapter was trained with.
    """
    from transformers import AutoTokenizer

    adapter = Path(model_args.adapter_name_or_path or "").expanduser()
    if model_args.adapter_name_or_path and (adapter / "tokenizer_config.json").is_file():
        folder = str(adapter)
    else:
        folder = resolve_model_path(model_args)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder,
            use_fast=model_args.use_fast_tokenizer,
            trust_remote_code=model_args.trust_remote_code,
        )
    except _LOAD_ERRORS as exc:
        raise ModelError(f"{folder}: the tokenizer cannot be loaded: {_first_line(exc)}") from None
    _check_eos(tokenizer, folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info(
            "%s: the tokenizer has no padding token; padding with %s", folder, tokenizer.eos_token
        )
    added = tokenizer.add_tokens(list(model_args.add_tokens or []))
    added += tokenizer.add_special_tokens(
        {"additional_special_tokens": list(model_args.add_special_tokens or [])},
        replace_extra_special_tokens=False,
    )
    if added:
        logger.info("Tokenizer: %d new token(s) added (add_tokens / add_special_tokens)", added)
    return tokenizer


def _check_eos(tokenizer: PreTrainedTokenizerBase, folder: str) -> None:
    """Make the tokenizer's eos one the model ends its answers with (generation_config.json)."""
    model_eos = _model_eos_ids(Path(folder))
    eos = tokenizer.eos_token_id
    if eos is not None and (not model_eos or eos in model_eos):
        return
    if not model_eos:
        raise ModelError(
            f"{folder}: neither the tokenizer nor config.json names an "
            f"end-of-sequence token; generation could never stop"
        )
    token = tokenizer.convert_ids_to_tokens(model_eos[0])
    logger.warning(
        "%s: the tokenizer's end-of-sequence token is %r but the model's is %r "
        "(id %d); using the model's",
        folder,
        tokenizer.eos_token,
        token,
        model_eos[0],
    )
    tokenizer.eos_token = token


def _model_eos_ids(folder: Path) -> list[int]:
    for name in ("generation_config.json", "config.json"):
        try:
            eos = json.loads((folder / name).read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError):
            continue
        if eos is not None:
            return [eos] if isinstance(eos, int) else list(eos)
    return []


# The one output of a reward model's head (stage rm): its label, so the head loads as saved.
REWARD_LABEL = "reward"


def load_model(
    model_args: ModelArgs,
    *,
    dtype: torch.dtype = torch.float32,
    for_training: bool = True,
    compute_dtype: torch.dtype | None = None,
    cutoff_len: int | None = None,
    labels: Sequence[str] | None = None,
    pad_token_id: int | None = None,
    pooling: Pooling = "last",
) -> PreTrainedModel:
    """The base causal LM in `dtype` with the configured attention kernel.

    For training the KV cache is off: it only costs memory, and packed samples attend to each
    other with it on (FACTS.md). For inference the model is in eval mode with the cache on.
    ``quantization_bit`` loads the linear layers in 4/8 bits computing in `compute_dtype`
    (default: `dtype`); ``rope_scaling`` stretches RoPE to `cutoff_len` (see `models.rope`).
    ``adapter_name_or_path`` is not applied here: `apply_finetuning` continues it for
    training, `load_adapter` attaches it for inference.

    With `labels` (stage cls) it is the same network with a classification head over the
    last non-padding token, or the mean of the text's tokens (`pooling`, see `models.pooling`),
    instead (new, untrained weights unless the folder has them).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    folder = resolve_model_path(model_args)
    extra = quantization_kwargs(model_args, compute_dtype or dtype)
    config = rope_scaled_config(folder, model_args, cutoff_len)
    if config is not None:
        extra["config"] = config
    head = _classifier_head(labels, pad_token_id) if labels else {}
    if config is not None:
        for key, value in head.items():
            setattr(config, key, value)
    else:
        extra.update(head)
    auto = AutoModelForSequenceClassification if labels else AutoModelForCausalLM
    # A new head is expected to be missing; transformers' page-long report about it is not
    # needed (any other missing weight is an error below).
    with _transformers_errors_only() if labels else contextlib.nullcontext():
        try:
            loaded: Any = auto.from_pretrained(
                folder,
                dtype=dtype,
                attn_implementation=_attention(model_args.flash_attn),
                trust_remote_code=model_args.trust_remote_code,
                output_loading_info=True,
                **extra,
            )
            model, info = loaded  # output_loading_info: the model and what was missing
        except _LOAD_ERRORS as exc:
            raise ModelError(f"{folder}: the model cannot be loaded: {_first_line(exc)}") from None
    new_head = sorted(k for k in info["missing_keys"] if labels and k.split(".")[0] in HEADS)
    if new_head and for_training:
        logger.info(
            "new classification head '%s' for %d labels: %s",
            new_head[0].split(".")[0],
            len(labels or ()),
            ", ".join(labels or ()),
        )
    missing = sorted(set(info["missing_keys"]) - set(new_head))
    if missing:
        raise ModelError(
            f"{folder}: {len(missing)} weight tensor(s) missing from the checkpoint "
            f"(first: {missing[0]}); the folder is incomplete"
        )
    if labels and pooling == "mean":
        use_mean_pooling(model)
    if for_training and not labels and model_args.flash_attn == "auto":
        _attend_per_sample(model)
    _fit_vocabulary(model, model_args)
    model.config.use_cache = not for_training
    if not for_training:
        model.eval()
    return model


# New embedding rows come in multiples of this: matrix shapes that kernels handle well.
VOCAB_MULTIPLE = 64


def _fit_vocabulary(model: PreTrainedModel, model_args: ModelArgs) -> None:
    """Grow the embeddings to the tokenizer's size (resize_vocab, or tokens added now or by
    the adapter's training run, whose tokenizer is saved with it); new rows start at the
    mean of the others (transformers' mean_resizing)."""
    adapter = Path(model_args.adapter_name_or_path or "").expanduser()
    adapter_tokenizer = (
        bool(model_args.adapter_name_or_path) and (adapter / "tokenizer_config.json").is_file()
    )
    if not (model_args.resize_vocab or model_args.adds_tokens or adapter_tokenizer):
        return
    size = len(load_tokenizer(model_args))
    rows = int(model.get_input_embeddings().weight.shape[0])  # type: ignore[index]
    if size <= rows:
        return
    grown = model.resize_token_embeddings(
        size, pad_to_multiple_of=VOCAB_MULTIPLE, mean_resizing=True
    )
    logger.info(
        "Embeddings grown from %d to %d rows for the tokenizer's %d tokens (resize_vocab)",
        rows,
        grown.num_embeddings,
        size,
    )


def _classifier_head(labels: Sequence[str], pad_token_id: int | None) -> dict[str, object]:
    """Config values of a classification head: the label names (saved in config.json) and
    the padding id, which tells the head where each text's last real token is."""
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: index for index, name in enumerate(labels)},
        "pad_token_id": pad_token_id,
    }


@contextlib.contextmanager
def _transformers_errors_only() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def is_classifier(model: torch.nn.Module) -> bool:
    """A sequence-classification model (stage cls), bare or wrapped by peft."""
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    return type(base).__name__.endswith("ForSequenceClassification")


def _attend_per_sample(model: PreTrainedModel) -> None:
    """Packed rows attend sample by sample (`models.packed_attention`) in models that take
    transformers' attention functions; others keep sdpa's block-diagonal mask."""
    if getattr(model, "_supports_attention_backend", False):
        model.set_attn_implementation(PACKED_SDPA)
        logger.info(
            "Attention: sdpa, each packed sample on its own (flash_attn: sdpa for one "
            "masked call over the whole row)"
        )


def _attention(flash_attn: str) -> str:
    implementation = ATTENTION[flash_attn]
    if implementation == "flash_attention_2" and not (
        torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
    ):
        raise ConfigError(
            "flash_attn=fa2 needs a CUDA GPU and the flash-attn package "
            "(pip install flash-attn); use flash_attn=auto (sdpa) otherwise"
        )
    return implementation


def load_adapter(model: PreTrainedModel, adapter_path: str, *, trainable: bool) -> PeftModel:
    """Attach a saved LoRA adapter after checking that it was made for a model of this shape.

    peft skips adapter tensors whose layer does not exist and reports a size mismatch as a
    page of text; checking the saved shapes first turns both into one line.
    """
    from peft import PeftModel

    folder = Path(adapter_path).expanduser()
    if not folder.is_dir():
        raise ModelError(f"adapter_name_or_path '{adapter_path}': no such folder")
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(
            f"adapter_name_or_path '{adapter_path}': no adapter_config.json; "
            f"expected a folder saved by a LoRA training run"
        )
    saved_task = TASKS.get(str(_read_adapter_config(folder).get("task_type")))
    task = TASKS["SEQ_CLS" if is_classifier(model) else "CAUSAL_LM"]
    if saved_task is not None and saved_task != task:
        raise ModelError(
            f"adapter_name_or_path '{adapter_path}': trained for {saved_task}, not {task}"
        )
    saved_base = _read_adapter_config(folder).get("base_model_name_or_path")
    current_base = str(model.config.name_or_path)
    if saved_base and Path(saved_base).name != Path(current_base).name:
        # Only suspicious, not wrong: one model has many paths and hub ids; shapes decide.
        logger.warning(
            "adapter %s was trained on %s; applying it to %s", folder, saved_base, current_base
        )
    below = _stacked_on(folder)
    if below is not None:
        model = merged_adapter(model, below)
    _check_adapter_shapes(folder, model)
    try:
        return PeftModel.from_pretrained(model, folder, is_trainable=trainable)
    except _LOAD_ERRORS as exc:
        raise ModelError(
            f"adapter_name_or_path '{adapter_path}': cannot be loaded: {_first_line(exc)}"
        ) from None


def merged_adapter(model: PreTrainedModel, adapter_path: str) -> PreTrainedModel:
    """`model` with the adapter merged into its weights: what create_new_adapter trains a new
    adapter on, and what that adapter is applied to afterwards."""
    logger.info("merging the adapter in %s into the weights (create_new_adapter)", adapter_path)
    merged: PreTrainedModel = load_adapter(model, adapter_path, trainable=False).merge_and_unload()
    return merged


def _stacked_on(folder: Path) -> str | None:
    """The adapter a create_new_adapter run merged before training the one in `folder`
    (from the run's saved config), or None for an adapter trained on the base model."""
    saved = folder / CONFIG_NAME
    if not saved.is_file():
        return None
    settings = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    below = settings.get("adapter_name_or_path")
    return str(below) if settings.get("create_new_adapter") and below else None


def _read_adapter_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except ValueError:
        raise ModelError(
            f"adapter_name_or_path '{folder}': adapter_config.json is not valid JSON"
        ) from None


def _check_adapter_shapes(folder: Path, model: PreTrainedModel) -> None:
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelError(f"adapter_name_or_path '{folder}': no adapter_model.safetensors")
    from safetensors import safe_open

    modules = dict(model.named_modules())
    parameters = dict(model.named_parameters(remove_duplicate=False))
    try:
        with safe_open(str(weights), framework="pt") as saved:
            shapes = {key: tuple(saved.get_slice(key).get_shape()) for key in saved.keys()}
    except SafetensorError as exc:
        raise ModelError(
            f"adapter_name_or_path '{folder}': adapter_model.safetensors cannot be read: {exc}"
        ) from None
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        problem = _shape_problem(name, shape, modules, parameters)
        if problem:
            raise ModelError(
                f"adapter_name_or_path '{folder}': made for a different model ({problem})"
            )


def _shape_problem(
    name: str,
    shape: tuple[int, ...],
    modules: dict[str, torch.nn.Module],
    parameters: dict[str, torch.nn.Parameter],
) -> str | None:
    """Why one saved adapter tensor cannot sit on this model, or None when it fits."""
    if ".oft_" in name or ".token_adapter." in name:  # OFT's rotations, peft's token rows
        return None
    match = _LORA_KEY.match(name)
    if match is None:  # a module trained in full (modules_to_save): same name and shape
        if name not in parameters:
            return f"this model has no {name}"
        here = tuple(parameters[name].shape)
        return None if here == shape else f"{name} is {shape}, here {here}"
    module = modules.get(match["module"])
    if module is None:
        return f"this model has no {match['module']}"
    if isinstance(module, torch.nn.Linear):
        inputs, outputs = module.in_features, module.out_features
    elif isinstance(module, torch.nn.Embedding):
        inputs, outputs = module.num_embeddings, module.embedding_dim
    else:
        return None
    kind = match["kind"]
    size, expected = (shape[-1], inputs) if kind.endswith("A") else (shape[0], outputs)
    if size != expected:
        side = "inputs" if kind.endswith("A") else "outputs"
        return f"{match['module']} has {expected} {side} here, the adapter expects {size}"
    return None


def _first_line(exc: BaseException) -> str:
    """The first line, or plain words for transformers' shape-mismatch advice that does not
    apply here."""
    line = first_line(exc)
    if "ignore_mismatched_sizes" in line:
        return "weight shapes differ from those config.json describes"
    return line
