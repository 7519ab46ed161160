"""A model's shape from its config.json: parameter counts and what trains, without weights.

The network is built on PyTorch's meta device (shapes, no storage), so a 70B config costs
seconds and no memory, and the run's own `apply_finetuning` marks what trains. The counts are
the ones training will print, LoRA targets, freeze layers and classification heads included,
and a misspelt ``lora_target`` fails here, before any weights load.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from tuneforge.config.load import replace
from tuneforge.config.schema import RunConfig
from tuneforge.errors import ModelError
from tuneforge.messages import first_line
from tuneforge.models import ALIASES, REWARD_LABEL, apply_finetuning, resolve_model_path
from tuneforge.planning.preference_step import holds_reference_copy

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

Role = Literal["attn_in", "attn_out", "mlp_in", "mlp_out"]

# Labels assumed for a cls plan whose config does not list them (the data decides later).
DEFAULT_NUM_LABELS = 2
# Stages whose model is a sequence classifier: cls, and rm's one-output reward head.
CLASSIFIER_STAGES = ("cls", "rm")


@dataclass(frozen=True)
class Linear:
    """One matrix multiply of a decoder layer and how it trains."""

    role: Role
    in_features: int
    out_features: int
    trains: bool
    lora_rank: int = 0

    @property
    def params(self) -> int:
        return self.in_features * self.out_features

    @property
    def keeps_input(self) -> bool:
        """Its input is saved for backward: the weight's or the adapter's gradient needs it."""
        return self.trains or self.lora_rank > 0


@dataclass(frozen=True)
class Layer:
    """One decoder layer: its matrix multiplies, and whether its norms or anything else train."""

    linears: tuple[Linear, ...]
    norms_train: bool

    @property
    def trains(self) -> bool:
        return self.norms_train or any(linear.keeps_input for linear in self.linears)

    def role(self, role: Role) -> tuple[Linear, ...]:
        return tuple(linear for linear in self.linears if linear.role == role)


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs to know about a model and its finetuning."""

    name: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    output_size: int
    total_params: int
    embedding_params: int
    trainable_shapes: tuple[tuple[int, ...], ...]
    embeddings_train: bool
    head_trains: bool
    layers: tuple[Layer, ...]
    # A preference stage's reference model, when it is a second model beside this one.
    reference: ModelShape | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def body_params(self) -> int:
        """Parameters of the transformer body: all but the embeddings and an untied head."""
        return self.total_params - self.embedding_params

    @property
    def trainable_params(self) -> int:
        return sum(math.prod(shape) for shape in self.trainable_shapes)

    @property
    def largest_trainable(self) -> int:
        return max((math.prod(shape) for shape in self.trainable_shapes), default=0)


def read_model_config(cfg: RunConfig) -> PretrainedConfig:
    """The model's config.json (an alias or local folder, else a hub id's config alone)."""
    from transformers import AutoConfig

    args = cfg.model
    name = args.model_name_or_path
    local = name in ALIASES or Path(name).expanduser().exists()
    source = resolve_model_path(args) if local else name
    try:
        config = AutoConfig.from_pretrained(
            source,
            revision=args.model_revision,
            cache_dir=args.cache_dir,
            trust_remote_code=args.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        where = (
            "its config.json cannot be read"
            if local
            else ("no such folder, and its config.json cannot be fetched from the Hugging Face hub")
        )
        raise ModelError(f"model_name_or_path '{name}': {where} ({first_line(exc)})") from None
    if cfg.finetune.stage == "cls":
        config.num_labels = len(cfg.data.label_names or ()) or DEFAULT_NUM_LABELS
    if cfg.finetune.stage == "rm":
        config.num_labels = len((REWARD_LABEL,))
    return config


def build_meta_model(cfg: RunConfig, config: PretrainedConfig) -> PreTrainedModel:
    """The bare network on the meta device: every parameter's shape, no storage."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = (
        AutoModelForSequenceClassification
        if cfg.finetune.stage in CLASSIFIER_STAGES
        else (AutoModelForCausalLM)
    )
    with torch.device("meta"):
        try:
            return auto.from_config(config, trust_remote_code=cfg.model.trust_remote_code)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"model_name_or_path '{cfg.model.model_name_or_path}': cannot "
                f"build a {config.model_type} model from its config.json "
                f"({first_line(exc)})"
            ) from None


def model_shape(
    cfg: RunConfig, base: PreTrainedModel | None = None, config: PretrainedConfig | None = None
) -> ModelShape:
    """The shape of the configured model with the configured finetuning applied.

    `base` (from `build_meta_model`) is copied, not changed, so one build serves the
    what-if variants of a plan.
    """
    config = config if config is not None else read_model_config(cfg)
    base = base if base is not None else build_meta_model(cfg, config)
    with torch.device("meta"), warnings.catch_warnings():
        # A saved adapter's weights land on meta parameters: a no-op torch warns about.
        warnings.filterwarnings("ignore", message=".*meta parameter.*")
        model = apply_finetuning(copy.deepcopy(base), cfg.finetune, cfg.model)
    shape = describe(model, config, cfg.model.model_name_or_path)
    if not holds_reference_copy(cfg.finetune):
        return shape
    return dataclasses.replace(shape, reference=_reference_shape(cfg, base, config))


def _reference_shape(cfg: RunConfig, base: PreTrainedModel, config: PretrainedConfig) -> ModelShape:
    """The reference model as training loads it: ``ref_model``, else the base once more."""
    name = cfg.finetune.ref_model
    if name is None:
        return describe(base, config, cfg.model.model_name_or_path)
    ref_cfg = replace(cfg, model_name_or_path=name, adapter_name_or_path=None)
    ref_config = read_model_config(ref_cfg)
    return describe(build_meta_model(ref_cfg, ref_config), ref_config, name)


def describe(model: Any, config: PretrainedConfig, name: str) -> ModelShape:
    """Read a (meta or real) model's parameter counts, layers and what trains; `model` is a
    transformers model, bare or wrapped by peft (its attributes are read by name)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = int(text.hidden_size)
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    unique = {id(p): p for p in model.parameters()}.values()
    embeddings = list(base.get_input_embeddings().parameters())
    output = base.get_output_embeddings()
    head = list(output.parameters()) if output is not None else []
    if any(p is q for p in head for q in embeddings):
        head = []
    score = next(
        (
            getattr(base, name)
            for name in ("score", "classifier")
            if getattr(base, name, None) is not None
        ),
        None,
    )
    head_module = output if output is not None else score
    return ModelShape(
        name=name,
        model_type=str(getattr(text, "model_type", type(base).__name__)),
        hidden_size=hidden,
        intermediate_size=int(getattr(text, "intermediate_size", 4 * hidden)),
        num_heads=heads,
        num_kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=head_dim,
        vocab_size=int(text.vocab_size),
        output_size=int(config.num_labels or 0) if score is not None else int(text.vocab_size),
        total_params=sum(p.numel() for p in unique),
        embedding_params=sum(p.numel() for p in [*embeddings, *head]),
        trainable_shapes=tuple(tuple(p.shape) for p in unique if p.requires_grad),
        embeddings_train=any(p.requires_grad for p in embeddings),
        head_trains=head_module is not None
        and any(p.requires_grad for p in head_module.parameters()),
        layers=tuple(_layer(layer, hidden) for layer in base.get_decoder().layers),
    )


def _layer(layer: Any, hidden: int) -> Layer:
    """Sort a decoder layer's linears into attention / MLP inputs and outputs."""
    found: list[tuple[str, Any]] = []
    inside_lora: set[str] = set()
    for name, module in layer.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside_lora):
            continue
        if hasattr(module, "base_layer") and hasattr(module, "r"):
            inside_lora.add(name)
            found.append((name, module))
        elif isinstance(module, torch.nn.Linear):
            found.append((name, module))
    linears = []
    for block in ("attn", "mlp"):
        members = [(n, m) for n, m in found if _is_attention(n) == (block == "attn")]
        outputs = [n for n, m in members if _features(m)[1] == hidden]
        last_output = outputs[-1] if outputs else None
        for name, module in members:
            inputs, outputs_ = _features(module)
            role: Role = f"{block}_{'out' if name == last_output else 'in'}"  # type: ignore[assignment]
            weight = module.base_layer.weight if hasattr(module, "base_layer") else module.weight
            rank = sum(module.r.values()) if hasattr(module, "r") else 0
            linears.append(Linear(role, inputs, outputs_, weight.requires_grad, rank))
    in_linear = {id(p) for _, m in found for p in m.parameters()}
    norms_train = any(p.requires_grad for p in layer.parameters() if id(p) not in in_linear)
    return Layer(tuple(linears), norms_train)


def _is_attention(name: str) -> bool:
    return any(word in name.lower() for word in ("attn", "attention"))


def _features(module: Any) -> tuple[int, int]:
    linear = module.base_layer if hasattr(module, "base_layer") else module
    return int(linear.in_features), int(linear.out_features)
