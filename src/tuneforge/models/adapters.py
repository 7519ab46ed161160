"""Which parameters train: LoRA (plain, rsLoRA, DoRA, PiSSA), OFT, freeze (the last or first
layers, or LLaMA Pro's expanded ones), full.

Every module name the user gives is checked against the model before anything changes, and a
wrong one is reported with the names that exist: a typo in ``lora_target`` or
``freeze_trainable_modules`` must not become a run that trains nothing, or everything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.config.schema import FinetuneArgs, ModelArgs
from tuneforge.errors import ConfigError
from tuneforge.models.load import (
    HEADS,
    is_classifier,
    load_adapter,
    load_tokenizer,
    merged_adapter,
)
from tuneforge.models.quantization import is_quantized, prepare_quantized_for_training

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)


def apply_finetuning(
    model: PreTrainedModel, finetune_args: FinetuneArgs, model_args: ModelArgs
) -> PreTrainedModel | PeftModel:
    """Mark the parameters that train (wrapping the model in a PeftModel for LoRA)."""
    kind = finetune_args.finetuning_type
    if model_args.adapter_name_or_path and not finetune_args.adapter:
        raise ConfigError(
            f"adapter_name_or_path needs finetuning_type=lora or oft (it is {kind}); "
            f"merge the adapter into the model first to train it in {kind} mode"
        )
    tuned: PreTrainedModel | PeftModel = model
    if finetune_args.adapter:
        tuned = _adapter(model, finetune_args, model_args)
    elif kind == "freeze":
        _freeze(model, finetune_args)
        for name in classifier_heads(model):  # a new head must learn whatever else is frozen
            model.get_submodule(name).requires_grad_(True)
    else:
        model.requires_grad_(True)
    logger.info("%s fine-tuning: %s", kind, trainable_summary(tuned))
    if finetune_args.print_param_status:
        for line in param_status(tuned):
            logger.info(line)
    return tuned


def _adapter(model: PreTrainedModel, args: FinetuneArgs, model_args: ModelArgs) -> PeftModel:
    """A new LoRA or OFT adapter, or the saved one continued with its own settings."""
    from peft import LoraConfig, OFTConfig, TaskType, get_peft_model

    if is_quantized(model):
        prepare_quantized_for_training(model)  # in place
    if model_args.adapter_name_or_path and args.create_new_adapter:
        model = merged_adapter(model, model_args.adapter_name_or_path)
    elif model_args.adapter_name_or_path:
        logger.info(
            "continuing the adapter in %s with its own saved settings",
            model_args.adapter_name_or_path,
        )
        return load_adapter(model, model_args.adapter_name_or_path, trainable=True)
    extra = _full_names(model, "additional_target", args.additional_target or [])
    new_rows = _new_token_rows(model, model_args) if not args.additional_target else {}
    if new_rows and args.finetuning_type == "oft":  # OFT has no row-wise token training
        extra, new_rows = _embedding_names(model), {}
    tied = {id(model.get_input_embeddings()), id(model.get_output_embeddings())}
    heads = classifier_heads(model)  # trained in full beside the adapters, saved with them
    common: dict[str, Any] = {
        "task_type": TaskType.SEQ_CLS if heads else TaskType.CAUSAL_LM,
        "modules_to_save": [*extra, *heads] or None,
    }
    if args.finetuning_type == "oft":
        config: LoraConfig | OFTConfig = OFTConfig(
            r=args.oft_rank,
            oft_block_size=args.oft_block_size,
            module_dropout=args.module_dropout,
            target_modules=_lora_targets(model, args.oft_target, key="oft_target"),
            **common,
        )
    else:
        targets = _lora_targets(model, args.lora_target)
        if args.use_llama_pro and targets == "all-linear":  # peft picks layers from a list only
            targets = decoder_linear_names(model)
        config = LoraConfig(
            r=args.lora_rank,
            lora_alpha=args.resolved_lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=targets,
            use_rslora=args.use_rslora,
            use_dora=args.use_dora,
            init_lora_weights=_lora_init(args),  # type: ignore[arg-type]
            trainable_token_indices=new_rows or None,
            **_llama_pro_lora(model, args),
            # A trained copy of a tied embedding must stay tied to the output head.
            ensure_weight_tying=bool(getattr(model.config, "tie_word_embeddings", False))
            and any(id(model.get_submodule(name)) in tied for name in extra),
            **common,
        )
    return get_peft_model(model, config)


def _new_token_rows(model: torch.nn.Module, model_args: ModelArgs) -> dict[str, list[int]]:
    """The embedding rows of the tokens add_tokens / add_special_tokens added, which peft
    trains row by row (its trainable tokens) beside LoRA: nothing else of the embeddings."""
    if not model_args.adds_tokens:
        return {}
    tokenizer = load_tokenizer(model_args)
    tokens = [*(model_args.add_tokens or []), *(model_args.add_special_tokens or [])]
    ids: list[int] = tokenizer.convert_tokens_to_ids(tokens)  # type: ignore[assignment]
    name = _embedding_names(model)[0].rpartition(".")[2]
    logger.info("New tokens: their %d embedding rows train beside the adapter", len(ids))
    return {name: sorted(set(ids))}


def _embedding_names(model: torch.nn.Module) -> list[str]:
    """The full names of the input embeddings and (when not tied to them) the output head."""
    modules = {id(module): name for name, module in model.named_modules()}
    embeddings: Any = model.get_input_embeddings()  # type: ignore[operator]
    head: Any = model.get_output_embeddings()  # type: ignore[operator]
    parts = [embeddings]
    if head is not None and head.weight is not embeddings.weight:
        parts.append(head)
    return [modules[id(part)] for part in parts if id(part) in modules]


def _lora_init(args: FinetuneArgs) -> bool | str:
    """peft's name for the start: B = 0 (LoRA's), or PiSSA's principal components."""
    if not args.pissa_init:
        return True
    logger.info(
        "LoRA starts from PiSSA: each weight's top %d singular directions (%s SVD)",
        args.lora_rank,
        "exact" if args.pissa_iter == -1 else f"fast, {args.pissa_iter} iterations",
    )
    return "pissa" if args.pissa_iter == -1 else f"pissa_niter_{args.pissa_iter}"


def _llama_pro_lora(model: torch.nn.Module, args: FinetuneArgs) -> dict[str, Any]:
    """use_llama_pro: LoRA on the expanded layers only (peft matches the layer index)."""
    if not args.use_llama_pro:
        return {}
    stack_name, stack = decoder_layers(model, "use_llama_pro", "turn use_llama_pro off")
    return {
        "layers_to_transform": llama_pro_layers(len(stack), args.freeze_trainable_layers),
        "layers_pattern": stack_name.rpartition(".")[2],
    }


def llama_pro_layers(count: int, expanded: int) -> list[int]:
    """The layers `tuneforge expand` inserted when `expanded` of the `count` are its copies:
    the last of each group of count / expanded (0-based: stride - 1, 2 x stride - 1, ...)."""
    if expanded < 1 or count % expanded:
        raise ConfigError(
            f"use_llama_pro: freeze_trainable_layers={expanded} must be the number of expanded "
            f"layers and divide the model's {count} decoder layers; set it to the "
            f"--num-expand the model was expanded with (tuneforge expand)"
        )
    stride = count // expanded
    return list(range(stride - 1, count, stride))


def classifier_heads(model: torch.nn.Module) -> list[str]:
    """The classification head of a stage-cls model (``score`` for Llama-likes), else none."""
    return [name for name in HEADS if is_classifier(model) and hasattr(model, name)]


def _full_names(model: torch.nn.Module, key: str, names: list[str]) -> list[str]:
    """Short names -> the full names of the modules so called.

    peft matches ``modules_to_save`` as a plain suffix, so "norm" would also train every
    ``input_layernorm``; full names train exactly the modules the user named.
    """
    _check_names(key, names, _module_names(model.named_modules()))
    return [
        full
        for full, module in model.named_modules()
        if full.rpartition(".")[2] in names and any(True for _ in module.parameters())
    ]


def _lora_targets(
    model: torch.nn.Module, names: list[str], key: str = "lora_target"
) -> str | list[str]:
    """``all`` -> peft's every-linear-layer-but-the-output-head; names are checked."""
    if "all" in names:
        if len(names) > 1:
            raise ConfigError(
                f"{key}: 'all' already covers every linear layer; "
                "give 'all' or module names, not both"
            )
        return "all-linear"
    layers = (
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding))
    )
    _check_names(key, names, _module_names(layers), also="all")
    return names


def _freeze(model: torch.nn.Module, args: FinetuneArgs) -> None:
    """Train the chosen modules of the last n (or first -n, or with use_llama_pro the n
    expanded) decoder layers, plus extras."""
    stack_name, stack = decoder_layers(model)
    count, n = len(stack), args.freeze_trainable_layers
    if args.use_llama_pro:
        chosen: Iterable[int] = llama_pro_layers(count, n)
        logger.info("use_llama_pro: training the expanded layers %s", ", ".join(map(str, chosen)))
    elif abs(n) > count:
        raise ConfigError(
            f"freeze_trainable_layers={n}: the model has {count} decoder layers; "
            f"use 1..{count} (the last n) or -1..-{count} (the first n)"
        )
    else:
        chosen = range(count - n, count) if n > 0 else range(-n)
    inside = args.freeze_trainable_modules
    if inside != ["all"]:
        _check_names(
            "freeze_trainable_modules", inside, _module_names(stack[0].named_modules()), also="all"
        )
    outside = [
        (name, module)
        for name, module in model.named_modules()
        if name != stack_name
        and not name.startswith(stack_name + ".")
        and any(True for _ in module.parameters(recurse=False))
    ]
    extra = args.freeze_extra_modules or []
    _check_names("freeze_extra_modules", extra, _module_names(outside))

    model.requires_grad_(False)
    for index in chosen:
        for name, module in stack[index].named_modules():
            if inside == ["all"] or name.rpartition(".")[2] in inside:
                module.requires_grad_(True)
    for name, module in outside:
        if name.rpartition(".")[2] in extra:
            module.requires_grad_(True)


def decoder_layers(
    model: torch.nn.Module,
    key: str = "finetuning_type=freeze",
    remedy: str = "use finetuning_type=lora or full",
) -> tuple[str, torch.nn.ModuleList]:
    """The ModuleList holding the decoder layers: the one as long as the config's layer count."""
    count = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return name, module
    raise ConfigError(f"{key}: cannot find the decoder layers of {type(model).__name__}; {remedy}")


def decoder_linear_names(
    model: torch.nn.Module, key: str = "", names: list[str] | None = None
) -> list[str]:
    """The short names of the linear layers inside a decoder layer (q_proj ... down_proj):
    what 'all' means for galore_target and apollo_target. A given name may also be a block
    (mlp, self_attn), meaning the linear layers inside it, as LLaMA-Factory reads it."""
    _, stack = decoder_layers(model)
    linear = {
        name: name.rpartition(".")[2]
        for name, module in stack[0].named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    if not names or names == ["all"]:
        return sorted(set(linear.values()))
    blocks = {part for name in linear for part in name.split(".")[:-1]}
    _check_names(key, names, set(linear.values()) | blocks, also="all")
    chosen = {
        short
        for name, short in linear.items()
        if short in names or any(part in names for part in name.split(".")[:-1])
    }
    return sorted(chosen)


def _module_names(named: Iterable[tuple[str, torch.nn.Module]]) -> set[str]:
    """The short names (last dotted part) a user writes: q_proj, mlp, embed_tokens."""
    short = (
        name.rpartition(".")[2]
        for name, module in named
        if name and any(True for _ in module.parameters())
    )
    return {name for name in short if not name.isdigit()}


def _check_names(key: str, names: list[str], valid: set[str], also: str | None = None) -> None:
    unknown = [name for name in names if name not in valid]
    if unknown:
        allowed = ([also] if also else []) + sorted(valid)
        raise ConfigError(
            f"{key}: no module named {', '.join(map(repr, unknown))} in this "
            f"model; valid: {', '.join(allowed)}"
        )


def prepare_for_training(
    model: PreTrainedModel | PeftModel, *, gradient_checkpointing: bool
) -> PreTrainedModel | PeftModel:
    """Turn off the KV cache and, when asked, recompute activations in the backward pass.

    Non-reentrant checkpointing works with frozen inputs, but models with their own
    checkpointing code may still use the reentrant kind, which returns no gradients to the
    adapters unless the embeddings' output requires grad; hence the input hook.
    """
    model.config.use_cache = False
    if not gradient_checkpointing:
        return model
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if not any(p.requires_grad for p in model.get_input_embeddings().parameters()):
        model.enable_input_require_grads()
    return model


def param_status(model: torch.nn.Module) -> list[str]:
    """One line per parameter (LLaMA-Factory's `print_param_status`): name, shape, dtype,
    device and whether it trains, to check what a freeze or LoRA setting really selected."""
    return [
        f"{name}: {tuple(p.shape)} {str(p.dtype).removeprefix('torch.')} {p.device} "
        f"{'trainable' if p.requires_grad else 'frozen'}"
        for name, p in model.named_parameters()
    ]


def trainable_summary(model: torch.nn.Module) -> str:
    """``trainable params: 460,800 / 134,975,808 (0.34%)``; tied weights count once."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    share = 100 * trainable / total if total else 0.0
    return f"trainable params: {trainable:,} / {total:,} ({share:.2f}%)"
