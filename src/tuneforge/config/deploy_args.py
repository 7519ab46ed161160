"""The keys of LLaMA-Factory's export (merge) and inference YAMLs that are not run keys.

An export YAML (``tuneforge export merge.yaml``) and an inference YAML (``tuneforge chat|api
infer.yaml``) are a run config's model keys (model, adapter, template, dtype, generation)
plus the keys of one section here. Kept apart from `config.schema` because a training config
has no use for them; `config.deploy` reads the two kinds of file. Names and meanings follow
LLaMA-Factory's ExportArguments and its inference engine keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# LLaMA-Factory gives export_size in GB; transformers' "GB" is 10**9 bytes.
GB = 10**9

# The inference engines LLaMA-Factory names, and the prefix of each one's own keys.
BACKENDS = ("huggingface", "vllm", "sglang")
ENGINE_PREFIXES: Mapping[str, str] = {"vllm_": "vllm", "sglang_": "sglang"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExportArgs(_Section):
    export_dir: str | None = Field(
        None,
        description="Where the merged model goes: a folder (Hugging Face format) or a file "
        "ending in .gguf. --out overrides it.",
    )
    export_size: float | None = Field(
        None,
        gt=0,
        description="Largest weight shard of the folder, in GB (fractions allowed); empty = "
        "transformers' default. A tensor bigger than this gets a shard of its own.",
    )
    export_device: Literal["cpu", "auto"] = Field(
        "cpu", description="Where the merge runs: cpu, or auto (a CUDA GPU when there is one)."
    )
    export_legacy_format: bool = Field(
        False, description="Write the folder's weights as pytorch_model*.bin, not safetensors."
    )

    @property
    def max_shard_bytes(self) -> int | None:
        return None if self.export_size is None else max(1, int(self.export_size * GB))


class InferArgs(_Section):
    infer_backend: Literal[BACKENDS] = Field(  # type: ignore[valid-type]
        "huggingface",
        description="What generates: huggingface (transformers, tuneforge's one generation "
        "path); vllm and sglang are LLaMA-Factory's CUDA engines.",
    )
    vllm_maxlen: int | None = Field(None, gt=0, description="vllm: longest prompt + reply.")
    vllm_gpu_util: float | None = Field(
        None, gt=0, le=1, description="vllm: share of GPU memory it may take."
    )
    vllm_enforce_eager: bool | None = Field(None, description="vllm: no CUDA graphs.")
    vllm_max_lora_rank: int | None = Field(None, gt=0, description="vllm: largest LoRA rank.")
    vllm_config: dict[str, Any] | str | None = Field(None, description="vllm: engine settings.")
    sglang_maxlen: int | None = Field(None, gt=0, description="sglang: longest prompt + reply.")
    sglang_mem_fraction: float | None = Field(
        None, gt=0, le=1, description="sglang: share of GPU memory it may take."
    )
    sglang_tp_size: int | None = Field(None, description="sglang: tensor-parallel GPUs.")
    sglang_config: dict[str, Any] | str | None = Field(None, description="sglang: engine settings.")
    sglang_lora_backend: str | None = Field(None, description="sglang: LoRA kernel backend.")


EXPORT_KEYS: frozenset[str] = frozenset(ExportArgs.model_fields)
INFER_KEYS: frozenset[str] = frozenset(InferArgs.model_fields)

# LLaMA-Factory's GPTQ export: calibrates on a dataset with auto-gptq/optimum. One line for
# all of them, with what tuneforge offers instead.
EXPORT_QUANTIZATION_KEYS = (
    "export_quantization_bit",
    "export_quantization_dataset",
    "export_quantization_nsamples",
    "export_quantization_maxlen",
)
EXPORT_QUANTIZATION = (
    "quantised export (GPTQ) is not available in tuneforge; for a smaller file export GGUF "
    "with 8-bit weights (export_dir: model.gguf and --quant q8_0), or export the merged "
    "folder and load it in 4 or 8 bits with quantization_bit: 4 (or 8) when you chat or "
    "evaluate; remove the key"
)
REFUSED_EXPORT_KEYS: Mapping[str, str] = {
    "export_hub_model_id": "tuneforge does not upload to the Hugging Face Hub; upload the "
    "exported folder yourself (huggingface-cli upload NAME FOLDER); remove the key",
}


# The command each kind of YAML is for.
COMMANDS: Mapping[str, str] = {
    "export": "`tuneforge export`",
    "inference": "`tuneforge chat` or `api`",
}


def yaml_kind(key: str) -> str | None:
    """Which kind of YAML a key belongs to (export or inference), or None for neither."""
    if key in EXPORT_KEYS or key in EXPORT_QUANTIZATION_KEYS or key in REFUSED_EXPORT_KEYS:
        return "export"
    if key in INFER_KEYS:
        return "inference"
    return None


def belongs_elsewhere(keys: Sequence[str], kind: str) -> str:
    """One line for the keys of the other kind of YAML found in a config (an export YAML
    given to chat, and the reverse; suggested for training configs too)."""
    names = ", ".join(keys)
    are = "is a key" if len(keys) == 1 else "are keys"
    return f"{names} {are} of {kind} YAMLs: use the file with {COMMANDS[kind]}"


def in_training_config(key: str) -> str | None:
    """The line for an export or inference key found in a training config (for
    `config.load`), or None for any other key."""
    kind = yaml_kind(key)
    if kind is None:
        return None
    command = "`tuneforge export merge.yaml`" if kind == "export" else COMMANDS[kind]
    return (
        f"'{key}' belongs in an {kind} YAML, read by {command} after training, not in a "
        f"training config; remove it here (docs/serve.md)"
    )
