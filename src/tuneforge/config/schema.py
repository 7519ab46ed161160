"""The run configuration: one pydantic model per concern, flat LLaMA-Factory key names.

A YAML file is flat (``lora_rank: 8``, ``cutoff_len: 1024``); `config.load` routes each key to
the model that owns it. Models never change a value the user gave: defaults that depend on
other keys (``lora_alpha`` = 2 x rank, packing for ``pt``) are resolved by properties or by the
code that uses them, so the saved config is exactly what the user asked for. They are frozen:
a changed config is a new one, made by `config.replace`, which validates it as a whole.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneforge.config.choices import TEMPLATE_NAMES, TOOL_FORMAT_NAMES

DEFAULT_MODEL = "smollm2-135m-instruct"
# cls: the head's learning rate as a multiple of learning_rate, unless cls_head_lr says: a
# random head must travel far, a fitted one (the probe's, an adapter's) only adjust
# (measured: docs/classification.md).
CLS_FRESH_HEAD_LR_FACTOR = 10.0
CLS_FITTED_HEAD_LR_FACTOR = 0.1

PREFERENCE_STAGES = ("rm", "dpo", "kto")
# LLaMA-Factory's pref_loss values, and trl's other DPO losses.
PREF_LOSSES = (
    "sigmoid",
    "ipo",
    "hinge",
    "orpo",
    "simpo",
    "robust",
    "exo_pair",
    "nca_pair",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
)
# Stage names other tools use, and what to write in tuneforge instead.
MOVED_STAGES = {
    "ppo": "stage ppo is not available: trl no longer ships PPO; use stage dpo or kto "
    "(offline preference tuning), or train a reward model with stage rm",
    "orpo": "write stage: dpo with pref_loss: orpo",
    "simpo": "write stage: dpo with pref_loss: simpo",
}

# transformers' FSDPOption values, the words LLaMA-Factory configs write in ``fsdp``.
FSDP_OPTIONS = (
    "full_shard",
    "shard_grad_op",
    "no_shard",
    "hybrid_shard",
    "hybrid_shard_zero2",
    "offload",
    "auto_wrap",
)


def _split_commas(value: object) -> object:
    """LLaMA-Factory writes lists as comma-separated strings (``dataset: a,b``)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelArgs(_Section):
    model_name_or_path: str = Field(
        DEFAULT_MODEL,
        description="Built-in alias, local Hugging Face folder or hub id. "
        "Default: the embedded SmolLM2-135M-Instruct.",
    )
    adapter_name_or_path: str | None = Field(
        None, description="A LoRA adapter folder to start from (training) or to apply (chat)."
    )
    cache_dir: str | None = Field(
        None, description="Where hub downloads and processed datasets are cached."
    )
    model_revision: str = Field("main", description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Allow model code from the model folder.")
    use_fast_tokenizer: bool = Field(True, description="Use the Rust tokenizer when available.")
    add_tokens: list[str] | None = Field(
        None, description="Words added to the tokenizer as new (non-special) tokens."
    )
    add_special_tokens: list[str] | None = Field(
        None,
        description="Special tokens added to the tokenizer (kept whole, e.g. <tool_call>); "
        "their embeddings are new rows that train.",
    )
    resize_vocab: bool = Field(
        False,
        description="Grow the embeddings to the tokenizer's size; on by itself when tokens are "
        "added (new rows start at the mean embedding and train, in full beside LoRA).",
    )
    flash_attn: Literal["auto", "disabled", "sdpa", "fa2"] = Field(
        "auto",
        description="Attention kernel: auto = sdpa, packed samples each on their own; "
        "sdpa = one masked call per row; disabled = eager; fa2 needs CUDA.",
    )
    infer_dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weights dtype for chat/eval; auto picks what the device runs fast."
    )
    quantization_bit: Literal[4, 8] | None = Field(
        None,
        description="QLoRA: load the base weights in 4 or 8 bits (bitsandbytes) and train "
        "LoRA adapters on them; empty = unquantised.",
    )
    quantization_method: Literal["bnb"] = Field(
        "bnb", description="Quantisation library; bitsandbytes (bnb) is the one supported."
    )
    quantization_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type: nf4 (QLoRA's NormalFloat, better) or fp4."
    )
    double_quantization: bool = Field(
        True, description="4-bit: quantise the quantisation constants too (~0.4 bit/weight less)."
    )
    rope_scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = Field(
        None,
        description="Stretch RoPE for contexts longer than the model was trained on; the "
        "factor defaults to cutoff_len / the model's context.",
    )
    rope_factor: float | None = Field(
        None, ge=1, description="RoPE scaling factor; empty = ceil(cutoff_len / model context)."
    )

    _lists = field_validator("add_tokens", "add_special_tokens", mode="before")(_split_commas)

    @property
    def adds_tokens(self) -> bool:
        """The tokenizer grows: the embeddings must grow with it."""
        return bool(self.add_tokens or self.add_special_tokens)


class DataArgs(_Section):
    dataset: list[str] | None = Field(
        None, description="Dataset names from dataset_info.json, comma-separated."
    )
    eval_dataset: list[str] | None = Field(
        None, description="Datasets used only for validation (instead of val_size)."
    )
    dataset_dir: str = Field("data", description="Folder holding dataset_info.json and data files.")
    template: str | None = Field(
        None,
        description="Chat template: empty = the tokenizer's own; or chatml, llama3, qwen, "
        "alpaca, default, empty.",
    )
    default_system: str | None = Field(
        None, description="System prompt used when a sample has none (training and chat)."
    )
    tool_format: str | None = Field(
        None,
        description="How tool calls are written: qwen (hermes <tool_call> tags) or llama3 "
        "(Llama 3.1 JSON); empty = the template's own (hermes where it has none).",
    )
    cutoff_len: int = Field(2048, gt=0, description="Maximum tokens per sample after encoding.")
    val_size: float = Field(
        0.0,
        ge=0,
        description="Validation split: a share in [0, 1) or a whole number of samples.",
    )
    max_samples: int | None = Field(
        None, gt=0, description="Use at most this many samples per dataset."
    )
    packing: bool | None = Field(
        None,
        description="Pack samples into rows of cutoff_len (no attention across them, no compute "
        "on padding); false = one padded sample per row. Default: on for pt; for sft each "
        "batch's samples in one row without padding (with flash_attn auto or fa2).",
    )
    label_names: list[str] | None = Field(
        None,
        description="cls: the class names in id order; empty = the sorted labels of the "
        "training data. Saved with the result.",
    )
    train_on_prompt: bool = Field(False, description="Also compute the loss on prompt tokens.")
    mask_history: bool = Field(False, description="Train only on the last assistant turn.")
    overwrite_cache: bool = Field(False, description="Re-tokenise instead of using the cache.")
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = Field(
        "concat",
        description="Several datasets: concat (one after another, then shuffled), or "
        "interleave rows by interleave_probs until the first runs out (interleave_under) "
        "or until the last does, repeating the others (interleave_over).",
    )
    interleave_probs: list[float] | None = Field(
        None,
        description="interleave_*: the chance of drawing each dataset, in dataset order "
        "(default: equal).",
    )
    tokenized_path: str | None = Field(
        None,
        description="sft/pt: save the tokenised data in this folder once and reuse it while "
        "the data files and settings are unchanged (a changed one is refused with the reason).",
    )
    preprocessing_num_workers: int | None = Field(
        None, gt=0, description="Processes used to tokenise the data (not with streaming)."
    )
    streaming: bool = Field(
        False,
        description="sft/pt: read and tokenise the data as training consumes it, never whole "
        "(for data larger than memory or disk cache); needs max_steps, and val_size as a "
        "number of rows or eval_dataset.",
    )
    buffer_size: int = Field(
        16384,
        ge=1,
        description="streaming: rows held in the shuffle buffer (each row drawn at random "
        "from it); 1 keeps each file's order.",
    )

    _lists = field_validator(
        "dataset", "eval_dataset", "label_names", "interleave_probs", mode="before"
    )(_split_commas)

    @field_validator("interleave_probs")
    @classmethod
    def _probabilities(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (min(value) < 0 or abs(sum(value) - 1) > 1e-6):
            raise ValueError(
                f"chances of 0 or more that add up to 1 (these add up to {sum(value):g})"
            )
        return value

    @field_validator("template")
    @classmethod
    def _named_template(cls, value: str | None) -> str | None:
        if value is not None and value not in TEMPLATE_NAMES:
            raise ValueError(
                f"allowed: {', '.join(TEMPLATE_NAMES)}, or leave it empty for the tokenizer's own"
            )
        return value

    @field_validator("tool_format")
    @classmethod
    def _named_tool_format(cls, value: str | None) -> str | None:
        if value is not None and value not in TOOL_FORMAT_NAMES:
            raise ValueError(
                f"allowed: {', '.join(TOOL_FORMAT_NAMES)} (LLaMA-Factory's default, glm4 and "
                f"mistral formats are not built), or leave it empty for the template's own"
            )
        return value

    @field_validator("val_size")
    @classmethod
    def _share_or_count(cls, value: float) -> float:
        if value >= 1 and not float(value).is_integer():
            raise ValueError("must be a share in [0, 1) or a whole number of samples")
        return value


class FinetuneArgs(_Section):
    stage: Literal["sft", "pt", "cls", "rm", "dpo", "kto"] = Field(
        "sft",
        description="sft: supervised chat fine-tuning; pt: continued pre-training on text; "
        "cls: sequence classification (text -> label); rm: a reward model on preference "
        "pairs; dpo: preference tuning on pairs (pref_loss picks DPO, IPO, ORPO, SimPO, ...); "
        "kto: preference tuning on answers marked good or bad.",
    )
    finetuning_type: Literal["lora", "oft", "full", "freeze"] = Field(
        "lora",
        description="lora: small adapters; oft: orthogonal fine-tuning (a learned rotation of "
        "each weight, peft's OFT); full: every weight; freeze: the last layers only.",
    )
    lora_rank: int = Field(8, ge=1, description="LoRA rank r; 8-64 is typical.")
    lora_alpha: int | None = Field(
        None, ge=1, description="LoRA scale numerator; default 2 x rank."
    )
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_target: list[str] = Field(
        ["all"], description="Modules that get LoRA: 'all' (every linear layer) or names."
    )
    additional_target: list[str] | None = Field(
        None, description="Extra modules trained in full and saved with the adapter."
    )
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA scaling (alpha / sqrt(r)).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    pissa_init: bool = Field(
        False,
        description="PiSSA: start LoRA from the principal singular vectors of each weight (the "
        "rest stays frozen), which often learns faster than LoRA's zero start.",
    )
    pissa_iter: int = Field(
        16, ge=-1, description="PiSSA: iterations of the fast SVD; -1 for an exact SVD (slow)."
    )
    pissa_convert: bool = Field(
        False,
        description="PiSSA: save the result as a plain LoRA adapter of the original model "
        "(rank 2r), so any LoRA loader uses it; otherwise loaders redo the SVD.",
    )
    create_new_adapter: bool = Field(
        False,
        description="With adapter_name_or_path: merge that adapter into the model and train a "
        "new one on top (eval, chat and export apply both, the saved one first).",
    )
    oft_rank: int = Field(
        0, ge=0, description="oft: blocks per rotation (0: set by oft_block_size instead)."
    )
    oft_block_size: int = Field(
        32, ge=0, description="oft: size of each rotation block (0: set by oft_rank instead)."
    )
    oft_target: list[str] = Field(
        ["all"], description="oft: modules that get OFT: 'all' (every linear layer) or names."
    )
    module_dropout: float = Field(
        0.0, ge=0, lt=1, description="oft: chance of skipping a block's rotation in a step."
    )
    use_dft_loss: bool = Field(
        False,
        description="sft/pt: Dynamic Fine-Tuning loss, each token's cross-entropy weighted by "
        "its own probability (held constant): less overfitting to rare tokens.",
    )
    compute_accuracy: bool = Field(
        False,
        description="sft/pt: report eval_accuracy, the share of target tokens the model "
        "ranks first, at each validation.",
    )
    print_param_status: bool = Field(
        False,
        description="Log every parameter's name, shape, dtype, device and whether it trains.",
    )
    freeze_trainable_layers: int = Field(
        2, description="freeze: train the last n layers (n > 0) or the first -n layers (n < 0)."
    )
    freeze_trainable_modules: list[str] = Field(
        ["all"], description="freeze: modules trained inside those layers ('all' or names)."
    )
    freeze_extra_modules: list[str] | None = Field(
        None, description="freeze: modules outside the layers to train too (e.g. embed_tokens)."
    )
    use_llama_pro: bool = Field(
        False,
        description="LLaMA Pro: train only the layers `tuneforge expand` inserted (freeze, or "
        "LoRA on them); freeze_trainable_layers is their number (--num-expand).",
    )

    pref_beta: float = Field(
        0.1,
        gt=0,
        description="dpo/kto: how far the policy may move from the reference model (higher = "
        "closer); 0.1 is usual. For ORPO it weighs the odds-ratio term.",
    )
    pref_loss: Literal[PREF_LOSSES] = Field(  # type: ignore[valid-type]
        "sigmoid",
        description="dpo: sigmoid (DPO), ipo, hinge, robust, orpo (no reference model), simpo "
        "(no reference model, length-normalised), or another of trl's DPO losses.",
    )
    pref_ftx: float = Field(
        0.0, ge=0, description="dpo: weight of the SFT loss on the chosen answer mixed in."
    )
    simpo_gamma: float = Field(0.5, ge=0, description="pref_loss simpo: the target reward margin.")
    dpo_label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="dpo: the assumed share of flipped preference labels (robust / cDPO).",
    )
    kto_chosen_weight: float = Field(
        1.0, gt=0, description="kto: weight of the loss on good (desirable) answers."
    )
    kto_rejected_weight: float = Field(
        1.0, gt=0, description="kto: weight of the loss on bad (undesirable) answers."
    )
    ref_model: str | None = Field(
        None,
        description="dpo/kto: the reference model; empty = the policy's starting point (with "
        "LoRA the same weights with the new adapter switched off: no second copy).",
    )
    ref_model_adapters: str | None = Field(
        None, description="dpo/kto: a LoRA adapter applied to ref_model."
    )

    cls_head_init: Literal["probe", "random"] | None = Field(
        None,
        description="cls: probe (default) fits the head on the frozen model's features before "
        "training (a logistic regression, seconds), so fine-tuning starts from a working "
        "classifier; random starts from a random head. Default with adapter_name_or_path: "
        "the adapter's own head.",
    )
    cls_pooling: Literal["last", "mean"] | None = Field(
        None,
        description="cls: what the head reads: last (default) the last token that is not "
        "padding, as transformers does; mean the average over the text's tokens.",
    )
    cls_head_lr: float | None = Field(
        None,
        gt=0,
        description=f"cls: the head's learning rate; default {CLS_FITTED_HEAD_LR_FACTOR:g} x "
        f"learning_rate for a fitted head (the probe's: a larger step undoes it), "
        f"{CLS_FRESH_HEAD_LR_FACTOR:g} x for cls_head_init: random (it starts far off).",
    )

    _lists = field_validator(
        "lora_target",
        "oft_target",
        "additional_target",
        "freeze_trainable_modules",
        "freeze_extra_modules",
        mode="before",
    )(_split_commas)

    @field_validator("freeze_trainable_layers")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be 0 (n > 0: last n layers, n < 0: first -n layers)")
        return value

    @field_validator("stage", mode="before")
    @classmethod
    def _moved_stage(cls, value: object) -> object:
        if isinstance(value, str) and value in MOVED_STAGES:
            raise ValueError(MOVED_STAGES[value])
        return value

    @property
    def preference(self) -> bool:
        """The stages that learn from preferences (pairs or marked answers)."""
        return self.stage in PREFERENCE_STAGES

    @property
    def adapter(self) -> bool:
        """The methods that train a peft adapter beside the frozen model."""
        return self.finetuning_type in ("lora", "oft")

    @property
    def resolved_lora_alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank

    @property
    def resolved_cls_pooling(self) -> Literal["last", "mean"]:
        return self.cls_pooling or "last"


class TrainArgs(_Section):
    do_train: bool = Field(True, description="Run training (the train command implies it).")
    do_eval: bool = Field(False, description="Evaluate on the validation data at the end.")
    do_predict: bool = Field(
        False,
        description="After training, generate answers for the validation data and score "
        "them against the base model (as `tuneforge eval`).",
    )
    output_dir: str = Field("saves/run", description="Where checkpoints and the result go.")
    overwrite_output_dir: bool = Field(False, description="Replace a finished run in output_dir.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate; LoRA 1e-4..5e-4.")
    num_train_epochs: float = Field(3.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many steps (-1: use epochs).")
    per_device_train_batch_size: int = Field(4, ge=1, description="Samples (rows) per step.")
    per_device_eval_batch_size: int = Field(8, ge=1, description="Samples per validation batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Batches per optimizer step.")
    lr_scheduler_type: Literal[
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "constant",
        "constant_with_warmup",
        "inverse_sqrt",
        "cosine_with_min_lr",
        "warmup_stable_decay",
    ] = Field("cosine", description="Learning-rate schedule after warm-up.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps spent warming up.")
    warmup_steps: float = Field(
        0,
        ge=0,
        description="Warm-up steps (overrides warmup_ratio); below 1, a share of the steps, "
        "as transformers reads it.",
    )
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0: off).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    neftune_noise_alpha: float | None = Field(
        None,
        gt=0,
        description="NEFTune: uniform noise of this scale / sqrt(length x hidden) on the input "
        "embeddings while training (5 is the paper's usual value); none at evaluation. With "
        "packed or padding-free rows the length is the row's, so the noise per token is "
        "smaller.",
    )
    optim: Literal["adamw_torch", "adamw_torch_fused", "adamw_bnb_8bit", "sgd", "adafactor"] = (
        Field(
            "adamw_torch",
            description="Optimizer; adamw_bnb_8bit keeps AdamW's moments in 8 bits "
            "(bitsandbytes): 2 instead of 8 bytes per trained parameter.",
        )
    )
    bf16: bool | None = Field(
        None, description="bf16 mixed precision; empty = use it where the hardware runs it fast."
    )
    fp16: bool | None = Field(None, description="fp16 mixed precision (CUDA only).")
    group_by_length: bool = Field(
        False, description="Batch samples of similar length together: less padding, faster."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30% slower."
    )
    fused_loss: bool = Field(
        True,
        description="Causal LMs: compute the loss and its gradients a chunk of positions at a "
        "time, never holding all logits (same loss, far less memory); false = the model's own.",
    )
    logging_steps: int = Field(10, ge=1, description="Log loss and learning rate every n steps.")
    eval_strategy: Literal["no", "steps", "epoch"] | None = Field(
        None,
        description="When to validate; default: every eval_steps when there is validation data.",
    )
    eval_steps: int | None = Field(None, ge=1, description="Validate every n steps.")
    save_strategy: Literal["no", "steps", "epoch"] = Field(
        "steps", description="When to checkpoint."
    )
    save_steps: int = Field(500, ge=1, description="Checkpoint every n steps.")
    save_total_limit: int | None = Field(None, ge=1, description="Keep at most n checkpoints.")
    save_only_model: bool = Field(
        False, description="Checkpoints without optimizer state (smaller, cannot resume exactly)."
    )
    early_stopping_steps: int | None = Field(
        None, ge=1, description="Stop after n validations without improvement; keep the best."
    )
    metric_for_best_model: str = Field(
        "eval_loss",
        description="What 'improvement' means for early stopping: eval_loss, or "
        "for cls eval_accuracy / eval_macro_f1.",
    )
    seed: int = Field(42, description="Random seed for data order, dropout and initialisation.")
    resume_from_checkpoint: bool | str | None = Field(
        None, description="true: the last complete checkpoint in output_dir; or a checkpoint path."
    )
    report_to: list[Literal["none", "tensorboard", "wandb", "mlflow"]] = Field(
        ["tensorboard"],
        description="Where metrics go besides trainer_log.jsonl: tensorboard, "
        "wandb, mlflow (several allowed; wandb/mlflow need the 'monitor' extra) or none.",
    )
    weight_stats_steps: int | None = Field(
        None,
        ge=1,
        description="Log norms and histograms of the trained weights (LoRA A/B, or "
        "the change of full/freeze weights) every n steps; default: at each validation, or at "
        "each logging step when there is no validation data.",
    )
    plot_loss: bool = Field(False, description="Write training_loss.png at the end.")
    dataloader_num_workers: int = Field(0, ge=0, description="Data-loading worker processes.")
    ddp_timeout: int = Field(1800, ge=1, description="Seconds a process waits for the others.")
    deepspeed: str | None = Field(
        None,
        description="DeepSpeed config file (JSON/YAML), e.g. examples/deepspeed/ds_z3_config.json; "
        "used with --nproc or a launcher.",
    )
    fsdp: bool | str | None = Field(
        None, description="PyTorch FSDP: true, or options such as 'full_shard auto_wrap'."
    )
    fsdp_config: str | None = Field(
        None, description="FSDP settings file (JSON/YAML), e.g. examples/fsdp/fsdp_full_shard.yaml."
    )
    enable_liger_kernel: bool = Field(
        False, description="Liger's fused Triton kernels (CUDA; pip install 'tuneforge[liger]')."
    )

    _lists = field_validator("report_to", mode="before")(_split_commas)

    @field_validator("fsdp")
    @classmethod
    def _fsdp_options(cls, value: bool | str | None) -> bool | str | None:
        if isinstance(value, str):
            unknown = [word for word in value.split() if word not in FSDP_OPTIONS]
            if unknown or not value.split():
                raise ValueError(f"allowed: true, or words from {', '.join(FSDP_OPTIONS)}")
        return value


class OptimArgs(_Section):
    """The optimizers LLaMA-Factory names by key: each comes from the package that owns it
    (training/optimizers.py); at most one of them per run. Default: TrainArgs.optim."""

    loraplus_lr_ratio: float | None = Field(
        None,
        gt=0,
        description="LoRA+: the learning rate of LoRA's B matrices as a multiple of A's "
        "(peft's LoRA+ optimizer; 16 is the paper's choice).",
    )
    loraplus_lr_embedding: float = Field(
        1e-6, gt=0, description="LoRA+: the learning rate of LoRA adapters on embeddings."
    )
    use_galore: bool = Field(
        False,
        description="GaLore: full fine-tuning with the gradients of the target layers "
        "projected to a low rank, so Adam's state is small (pip install 'tuneforge[galore]').",
    )
    galore_target: list[str] = Field(
        ["all"], description="GaLore: linear layers projected ('all' or names)."
    )
    galore_rank: int = Field(16, ge=1, description="GaLore: rank of the projected gradients.")
    galore_update_interval: int = Field(
        200, ge=1, description="GaLore: steps between recomputing the projection."
    )
    galore_scale: float = Field(2.0, gt=0, description="GaLore: scale of the projected update.")
    galore_proj_type: Literal["std", "reverse_std", "right", "left", "full"] = Field(
        "std", description="GaLore: which side of the gradient is projected."
    )
    galore_layerwise: bool = Field(
        False, description="GaLore: update each layer during backward (less memory)."
    )
    use_apollo: bool = Field(
        False,
        description="APOLLO: full fine-tuning with AdamW's scaling estimated in a low-rank "
        "space, SGD-like memory (pip install 'tuneforge[apollo]').",
    )
    apollo_target: list[str] = Field(
        ["all"], description="APOLLO: linear layers it applies to ('all' or names)."
    )
    apollo_rank: int = Field(16, ge=1, description="APOLLO: rank of the auxiliary space.")
    apollo_update_interval: int = Field(
        200, ge=1, description="APOLLO: steps between new random projections."
    )
    apollo_scale: float = Field(32.0, gt=0, description="APOLLO: scale of the update.")
    apollo_proj: Literal["svd", "random"] = Field(
        "random", description="APOLLO: projection from an SVD or random."
    )
    apollo_proj_type: Literal["std", "right", "left"] = Field(
        "std", description="APOLLO: which side of the gradient is projected."
    )
    apollo_scale_type: Literal["channel", "tensor"] = Field(
        "channel", description="APOLLO: one scale per channel or per tensor."
    )
    apollo_layerwise: bool = Field(
        False, description="APOLLO: update each layer during backward (less memory)."
    )
    apollo_scale_front: bool = Field(
        False, description="APOLLO: limit norm growth before scaling the gradient."
    )
    use_badam: bool = Field(
        False,
        description="BAdam: full fine-tuning one block (layer) at a time, Adam state for that "
        "block only (pip install 'tuneforge[badam]').",
    )
    badam_mode: Literal["layer", "ratio"] = Field(
        "layer", description="BAdam: whole layers in turn, or a share of every weight."
    )
    badam_start_block: int | None = Field(
        None, ge=0, description="BAdam layer mode: the block trained first."
    )
    badam_switch_mode: Literal["ascending", "descending", "random", "fixed"] = Field(
        "ascending", description="BAdam layer mode: the order in which blocks take turns."
    )
    badam_switch_interval: int = Field(50, description="BAdam: steps per block (-1: never switch).")
    badam_update_ratio: float = Field(
        0.05, gt=0, le=1, description="BAdam ratio mode: share of each weight updated."
    )
    badam_mask_mode: Literal["adjacent", "scatter"] = Field(
        "adjacent", description="BAdam ratio mode: updated entries side by side or scattered."
    )
    badam_verbose: int = Field(
        0, ge=0, le=2, description="BAdam: 0 quiet, 1 the block names, 2 the parameters."
    )
    use_adam_mini: bool = Field(
        False,
        description="Adam-mini: one second-moment value per block instead of per weight, "
        "about half of AdamW's state (pip install 'tuneforge[adam-mini]').",
    )
    use_muon: bool = Field(
        False,
        description="Muon (torch.optim.Muon) for the 2-D weights of the decoder layers, AdamW "
        "for embeddings, head and 1-D weights; the learning rate means what AdamW's does.",
    )

    _lists = field_validator("galore_target", "apollo_target", mode="before")(_split_commas)

    @field_validator("badam_switch_interval")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("steps per block: a positive number, or -1 to never switch")
        return value

    @property
    def chosen(self) -> list[str]:
        """The keys that choose an optimizer, in the order a user reads them."""
        keys = ("use_galore", "use_apollo", "use_badam", "use_adam_mini", "use_muon")
        named = [key for key in keys if getattr(self, key)]
        return (["loraplus_lr_ratio"] if self.loraplus_lr_ratio else []) + named


class GenerationArgs(_Section):
    do_sample: bool = Field(False, description="Sample (true) or decode greedily (false).")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature (with do_sample).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling share (with do_sample).")
    top_k: int = Field(50, ge=0, description="Sample from the k most likely tokens (0: all).")
    max_new_tokens: int = Field(512, ge=1, description="Longest reply in tokens.")
    repetition_penalty: float = Field(1.0, gt=0, description="Above 1 discourages repeats.")

    def to_kwargs(self) -> dict[str, object]:
        """Keyword arguments for `generate`, without sampling knobs when decoding greedily."""
        kwargs: dict[str, object] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "do_sample": self.do_sample,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs


class EvalArgs(_Section):
    metric_tokenize: Literal["auto", "words", "jieba"] = Field(
        "auto",
        description="How BLEU/ROUGE split text: words, jieba (Chinese word segmentation), "
        "or auto (jieba for each sample whose reference is mostly Chinese).",
    )
    tfidf_baseline: bool = Field(
        True,
        description="cls: also train a TF-IDF + logistic-regression baseline on the same "
        "split and report it beside the model.",
    )


SECTIONS: dict[str, type[_Section]] = {
    "model": ModelArgs,
    "data": DataArgs,
    "finetune": FinetuneArgs,
    "train": TrainArgs,
    "optimizer": OptimArgs,
    "generation": GenerationArgs,
    "eval": EvalArgs,
}


PACKED_BY_DEFAULT = ("pt",)
Batching = Literal["padded", "packed", "padding_free"]


class RunConfig(BaseModel):
    """Everything one run needs. Read a key from the section that owns it:
    ``cfg.data.cutoff_len``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelArgs = ModelArgs()
    data: DataArgs = DataArgs()
    finetune: FinetuneArgs = FinetuneArgs()
    train: TrainArgs = TrainArgs()
    optimizer: OptimArgs = OptimArgs()
    generation: GenerationArgs = GenerationArgs()
    eval: EvalArgs = EvalArgs()

    def flat(self, *, only_set: bool = False) -> dict[str, object]:
        """The flat key: value view users write in YAML."""
        out: dict[str, object] = {}
        for name in SECTIONS:
            section = getattr(self, name)
            out.update(section.model_dump(exclude_unset=only_set, mode="json"))
        return out

    @property
    def packing(self) -> bool:
        """Rows filled with whole samples up to cutoff_len: pt's default, and sft's when its
        default cannot be padding-free. Safe: each sample keeps its own positions and attends
        only to itself (`models.packed_attention`), so it only removes padding."""
        if self.data.packing is not None:
            return self.data.packing
        return self.finetune.stage in PACKED_BY_DEFAULT or (
            self.finetune.stage == "sft" and not self.padding_free
        )

    @property
    def padding_free(self) -> bool:
        """sft's default: each batch's samples back to back in one row, no padding. A step
        holds the samples it would unpacked (same updates), and only their tokens (memory as
        the batch's real length, not batch x cutoff_len). Needs attention that splits a row
        at its restarting positions (per-sample sdpa, flash-attention 2), not a row-wide mask,
        whose cost grows with the square of the row."""
        return (
            self.data.packing is None
            and self.finetune.stage == "sft"
            and self.model.flash_attn in ("auto", "fa2")
        )

    @property
    def batching(self) -> Batching:
        """How the collator lays out a batch (`data.collator`)."""
        if self.padding_free:
            return "padding_free"
        return "packed" if self.packing else "padded"


def field_owner() -> dict[str, str]:
    """Map every flat key to the section that owns it."""
    return {key: name for name, model in SECTIONS.items() for key in model.model_fields}
