"""Peak training memory from a model's shape and the run's settings, component by component.

tuneforge keeps the weights in float32 and trains in mixed precision by autocast, so full
fine-tuning with AdamW holds 4 (weights) + 4 (gradients) + 8 (AdamW's two moments) = 16 bytes
per parameter: the same 16 bytes as the classic recipe of 2 (fp16 weights) + 2 (fp16
gradients) + 4 (fp32 master weights) + 8 (moments). For a 7B model that is 112 GB before a
single activation. On top of the static part come the tensors autograd saves for the backward
pass, counted here tensor by tensor as a Llama-style decoder layer saves them (checked against
``saved_tensors_hooks`` in the tests and against measured peaks in
``benchmarks/memory_estimate.py``; see docs/plan.md):

- the forward/backward peak: activations + autocast's bf16/fp16 copies of the fp32 weights +
  logits and loss (three float32 batch x length x vocabulary tensors in the loss's backward;
  with ``fused_loss``, two chunks of logits and the gradient of the hidden states instead);
- the update peak: gradients + the optimizer step's temporaries.

The preference stages (rm, dpo, kto) run the same network on more rows, score the answers
with trl's chunked log-prob head, and may hold a reference model and run its forward pass
beside the trained one (`preference_step` says how trl does each).

On a GPU the two peaks do not add up: gradients are freed after each optimizer step, and
activations are freed as the backward pass produces gradients (unless gradients are
accumulated over several batches). On a CPU glibc's malloc keeps freed buffers resident, so
the update comes on top of the forward pass's high-water mark (see `CPU_HEAP_RETENTION`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tuneforge.config.schema import RunConfig
from tuneforge.models import Hardware, choose_precision
from tuneforge.models.load import ATTENTION
from tuneforge.models.quantization import quantized_bytes_per_weight
from tuneforge.planning.preference_step import (
    FULL_LOGIT_TENSORS,
    TRL_BACKWARD_TEMPORARIES,
    TRL_FORWARD_TEMPORARIES,
    TRL_TOKEN_TILE,
    TRL_VOCAB_TILE,
    PreferenceStep,
    preference_step,
)
from tuneforge.planning.shape import Layer, Linear, ModelShape
from tuneforge.training.fused_loss import CHUNK_ROWS

FP32 = 4
INDEX_BYTES = 8
# Float32 tensors of batch x length x output size alive at once in the loss's backward pass:
# the saved log-softmax, its incoming gradient and its outgoing gradient.
LOSS_TENSORS = 3
# With fused_loss: float32 chunks of positions x vocabulary alive at once (the logits and
# logsumexp's temporary), and float32 copies of the hidden states (the trained positions and
# their gradient) kept until the backward pass.
FUSED_CHUNKS = 2
FUSED_HIDDEN_COPIES = 2
# Memory a run takes besides the model, its training state and activations, measured with
# benchmarks/memory_estimate.py: on a CPU the tokenizer, the data and the trainer's buffers;
# on a GPU the allocator's rounding and cuBLAS workspaces (the CUDA context, ~0.5 GB, is
# already outside what `torch.cuda.mem_get_info` calls free).
RUNTIME_BYTES: Mapping[str, int] = MappingProxyType(
    {"cpu": 80 * 2**20, "mps": 80 * 2**20, "cuda": 300 * 2**20}
)
# On a CPU, glibc's malloc keeps the buffers freed during a step resident: its mmap threshold
# adapts to the tensor sizes it sees, so mid-sized tensors come from the heap, whose free
# space is not given back. Above the live tensors, resident memory then grows by the larger
# of the forward pass's freed buffers (about this share of the activations) and the update
# (gradients + optimizer step), which cannot reuse them. Measured with
# benchmarks/memory_estimate.py; with a fixed MALLOC_MMAP_THRESHOLD_ the live tensors alone
# match the measured peak within 2% (docs/plan.md). With gradient checkpointing the backward
# pass recomputes each layer's full activations, so the heap sees the same buffers as without
# it: the share applies to the activations a step without checkpointing would save (measured
# 2026-12-07, float32: without this the estimate was 19-30% under).
CPU_HEAP_RETENTION = 0.7


@dataclass(frozen=True)
class DeviceMemory:
    """What the device the run trains on holds, and how much of it is free now."""

    description: str
    total: int
    available: int


def device_memory(hardware: Hardware) -> DeviceMemory:
    """GPU memory on CUDA; system RAM on a CPU (and on Apple's unified memory)."""
    if hardware.device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        return DeviceMemory(hardware.description, total, free)
    import psutil

    ram = psutil.virtual_memory()
    where = "unified memory" if hardware.device == "mps" else "RAM"
    return DeviceMemory(f"{hardware.description}, {where}", ram.total, ram.available)


@dataclass(frozen=True)
class Workload:
    """What the estimate needs besides the model: batch, precision, kernels, optimizer."""

    batch_size: int
    seq_len: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    attention: str
    optimizer: str
    compute_bytes: int
    quantization_bit: int | None
    double_quantization: bool
    device: str
    fused_loss: bool = False
    preference: PreferenceStep | None = None

    @property
    def rows(self) -> int:
        """Sequences through the trained forward per step: dpo and rm add the rejected ones."""
        return self.batch_size * (self.preference.rows_per_sample if self.preference else 1)

    @property
    def tokens(self) -> int:
        return self.rows * self.seq_len

    @property
    def autocast(self) -> bool:
        return self.compute_bytes < FP32


def workload(cfg: RunConfig, hardware: Hardware) -> Workload:
    """The run's settings as the estimate reads them; the precision is chosen as training
    chooses it, for the same hardware."""
    precision = choose_precision(cfg.train, hardware)
    return Workload(
        batch_size=cfg.train.per_device_train_batch_size,
        seq_len=cfg.data.cutoff_len,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        attention=ATTENTION[cfg.model.flash_attn],
        optimizer=cfg.train.optim,
        compute_bytes=precision.compute_dtype.itemsize,
        quantization_bit=cfg.model.quantization_bit,
        double_quantization=cfg.model.double_quantization,
        device=hardware.device,
        fused_loss=cfg.train.fused_loss
        and not cfg.train.enable_liger_kernel
        and cfg.finetune.stage in ("sft", "pt"),
        preference=preference_step(cfg.finetune),
    )


@dataclass(frozen=True)
class Optimizer:
    """An optimizer's state per trainable tensor and the temporaries of one step."""

    label: str
    state: Callable[[tuple[int, ...]], float]
    step: Callable[[ModelShape, str], float]


def _adam_step(shape: ModelShape, device: str) -> float:
    """torch's AdamW: on a GPU the foreach path makes one float32 temporary of all trainable
    parameters (sqrt of the second moment); on a CPU it steps tensor by tensor, with two
    temporaries of the largest one."""
    if device == "cuda":
        return FP32 * shape.trainable_params
    return 2 * FP32 * shape.largest_trainable


def _bnb_state(tensor: tuple[int, ...]) -> float:
    """bitsandbytes 8-bit AdamW: two uint8 moments plus an fp32 scale per 256 values; tensors
    under 4,096 values keep float32 moments."""
    count = math.prod(tensor)
    return 2 * FP32 * count if count < 4096 else 2 * (1 + FP32 / 256) * count


def _adafactor_state(tensor: tuple[int, ...]) -> float:
    """Adafactor (no first moment): a float32 row and column factor per matrix."""
    if len(tensor) < 2:
        return FP32 * math.prod(tensor)
    return FP32 * (math.prod(tensor[:-1]) + tensor[-1])


OPTIMIZERS: Mapping[str, Optimizer] = MappingProxyType(
    {
        "adamw_torch": Optimizer("AdamW, 2 x fp32", lambda t: 2 * FP32 * math.prod(t), _adam_step),
        "adamw_torch_fused": Optimizer(
            "fused AdamW, 2 x fp32", lambda t: 2 * FP32 * math.prod(t), lambda s, d: 0
        ),
        "adamw_bnb_8bit": Optimizer(
            "8-bit AdamW, 2 x 1 B", _bnb_state, lambda s, d: FP32 * s.largest_trainable
        ),
        "adafactor": Optimizer(
            "Adafactor, factored", _adafactor_state, lambda s, d: 3 * FP32 * s.largest_trainable
        ),
        "sgd": Optimizer("SGD, no state", lambda t: 0.0, lambda s, d: 0),
    }
)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per component; `peak` is what the device must hold at the worst moment."""

    weights: int
    gradients: int
    optimizer_states: int
    activations: int
    weight_copies: int
    logits: int
    optimizer_step: int
    runtime: int
    heap_retention: int = 0
    recomputes: bool = False
    accumulates: bool = False
    reference_weights: int = 0
    reference_forward: int = 0

    @property
    def static(self) -> int:
        """Weights (a reference model's too), gradients and optimizer states: what does not
        depend on the batch."""
        return self.weights + self.reference_weights + self.gradients + self.optimizer_states

    @property
    def forward_backward(self) -> int:
        """Saved activations, weight copies, and the larger of the loss's backward and the
        reference forward, which both run while the activations are held."""
        return self.activations + self.weight_copies + max(self.logits, self.reference_forward)

    @property
    def held_gradients(self) -> int:
        """Gradients alive through the forward pass: those of earlier accumulated batches."""
        return self.gradients if self.accumulates else 0

    @property
    def update(self) -> int:
        """What the optimizer step adds: the gradients (unless already held) and temporaries."""
        return self.gradients - self.held_gradients + self.optimizer_step

    @property
    def resident_heap(self) -> bool:
        """Freed memory stays resident (a CPU): the update adds to the forward pass."""
        return self.heap_retention > 0

    @property
    def peak(self) -> int:
        fixed = (
            self.weights
            + self.reference_weights
            + self.optimizer_states
            + self.runtime
            + self.held_gradients
        )
        if self.resident_heap:
            # Recomputing layers in backward refills the heap while the gradients are made.
            backward = self.heap_retention + (self.update - self.optimizer_step) * self.recomputes
            return fixed + self.forward_backward + max(backward, self.update)
        return fixed + max(self.forward_backward, self.update)


def estimate(shape: ModelShape, work: Workload) -> MemoryEstimate:
    """Peak memory of one training step of `shape` under `work`."""
    optimizer = OPTIMIZERS[work.optimizer]
    gradients = FP32 * shape.trainable_params
    activations, copies = _saved_for_backward(shape, work)
    return MemoryEstimate(
        weights=round(_weight_bytes(shape, work)),
        gradients=gradients,
        optimizer_states=round(sum(optimizer.state(t) for t in shape.trainable_shapes)),
        activations=round(activations),
        weight_copies=round(copies),
        logits=loss_bytes(shape, work),
        optimizer_step=round(optimizer.step(shape, work.device)),
        runtime=RUNTIME_BYTES[work.device],
        heap_retention=round(_freed_in_step(shape, work) * CPU_HEAP_RETENTION)
        if work.device == "cpu"
        else 0,
        recomputes=work.gradient_checkpointing,
        accumulates=work.gradient_accumulation_steps > 1,
        reference_weights=round(
            _weight_bytes(shape.reference, work, float_bytes=work.compute_bytes)
            if shape.reference
            else 0
        ),
        reference_forward=reference_forward_bytes(shape, work),
    )


def _freed_in_step(shape: ModelShape, work: Workload) -> float:
    """The activations that pass through the heap in one step: with gradient checkpointing
    those of the recomputed layers, as many as without it."""
    if work.gradient_checkpointing:
        work = dataclasses.replace(work, gradient_checkpointing=False)
    return _saved_for_backward(shape, work)[0]


def loss_bytes(shape: ModelShape, work: Workload) -> int:
    """The logits and the loss: whole float32 logits and their gradients, or with the fused
    loss a chunk at a time (plus a gradient buffer for the head when it trains); for dpo and
    kto trl's chunked log-prob head, for ORPO and SimPO their whole logits."""
    step = work.preference
    if step is not None and step.head == "chunked":
        return _trl_head_bytes(shape, work)
    if step is not None and step.head == "full":
        tensors = FULL_LOGIT_TENSORS[(work.autocast, step.sft_term)]
        return round(tensors * FP32 * work.tokens * shape.output_size)
    if not work.fused_loss:
        return LOSS_TENSORS * FP32 * work.tokens * shape.output_size
    chunk = min(work.tokens, CHUNK_ROWS)
    return (
        FUSED_CHUNKS * FP32 * chunk * shape.output_size
        + FUSED_HIDDEN_COPIES * FP32 * work.tokens * shape.hidden_size
        + _head_gradient(shape)
    )


def _head_gradient(shape: ModelShape) -> int:
    """A float32 gradient buffer for the output head, when it trains (a fused head fills it
    chunk by chunk)."""
    head = (shape.output_size, shape.hidden_size)
    return FP32 * math.prod(head) if head in shape.trainable_shapes else 0


def _trl_tile(shape: ModelShape, work: Workload, temporaries: int) -> int:
    """One tile of trl's chunked log-prob head: the projection in the compute dtype, and on
    a CPU the float32 temporaries torch's fallback makes of it (with a boolean mask in the
    backward)."""
    elements = min(work.tokens, TRL_TOKEN_TILE) * min(shape.output_size, TRL_VOCAB_TILE)
    if work.device != "cpu":  # Triton kernels fold the tile in place
        return work.compute_bytes * elements
    mask = 1 if temporaries == TRL_BACKWARD_TEMPORARIES else 0
    return (work.compute_bytes + FP32 * temporaries + mask) * elements


def _weight_tile(shape: ModelShape, work: Workload) -> int:
    """Under autocast the head's weights of one tile, cast to the compute dtype."""
    rows = min(shape.output_size, TRL_VOCAB_TILE)
    return work.compute_bytes * rows * shape.hidden_size if work.autocast else 0


def _trl_head_bytes(shape: ModelShape, work: Workload) -> int:
    """trl's chunked log-prob head of the trained forward: the float32 hidden states it
    saves, and in its backward their gradient, one tile and the head's gradient."""
    hidden = FP32 * work.tokens * shape.hidden_size
    return (
        2 * hidden
        + _trl_tile(shape, work, TRL_BACKWARD_TEMPORARIES)
        + _weight_tile(shape, work)
        + _head_gradient(shape)
    )


def reference_forward_bytes(shape: ModelShape, work: Workload) -> int:
    """The reference forward (no gradients), run after the trained forward: on top of the
    activations, the hidden states the trained head saved, and its own peak: its float32
    hidden states and one tile of the log-prob head (more than one decoder layer's working
    set). 0 when the stage has no reference."""
    if not (work.preference and work.preference.reference_forward):
        return 0
    hidden = FP32 * work.tokens * shape.hidden_size
    return 2 * hidden + _trl_tile(shape, work, TRL_FORWARD_TEMPORARIES) + _weight_tile(shape, work)


def _weight_bytes(shape: ModelShape, work: Workload, *, float_bytes: int = FP32) -> float:
    """Weights in float32 (a reference model: the compute dtype); with quantization_bit the
    decoder layers' linears in 4/8 bits."""
    if work.quantization_bit is None:
        return float_bytes * shape.total_params
    per_weight = quantized_bytes_per_weight(
        work.quantization_bit, double_quantization=work.double_quantization
    )
    quantized = sum(linear.params for layer in shape.layers for linear in layer.linears)
    return float_bytes * (shape.total_params - quantized) + per_weight * quantized


def _saved_for_backward(shape: ModelShape, work: Workload) -> tuple[float, float]:
    """(activations, autocast weight copies) held when the backward pass starts.

    Nothing is saved for layers before the first one that trains (or, with gradient
    checkpointing, anything but each layer's input plus one layer being recomputed).
    """
    tokens = work.tokens
    grad_in = shape.embeddings_train or work.gradient_checkpointing
    per_layer: list[tuple[float, float]] = []
    for layer in shape.layers:
        if not (grad_in or layer.trains):
            continue
        per_layer.append(
            (
                _layer_bytes(shape, layer, work, grad_in=grad_in),
                _layer_copies(layer, work, grad_in=grad_in),
            )
        )
        grad_in = True
    head = _head_bytes(shape, work, grad_in=grad_in)
    head_copy = work.autocast * work.compute_bytes * shape.hidden_size * shape.output_size
    if work.gradient_checkpointing and per_layer:
        # Each layer keeps its input; one layer at a time is recomputed in backward. Copies
        # of trained weights stay in autocast's cache for the step; frozen ones are remade.
        inputs = FP32 * shape.hidden_size * len(per_layer)
        recompute = max(per_layer)
        cached = sum(
            _layer_copies(layer, work, grad_in=True, trained_only=True) for layer in shape.layers
        )
        return tokens * (inputs + head + recompute[0]), recompute[1] + cached + head_copy
    activations = sum(saved for saved, _ in per_layer) + head
    return tokens * activations, sum(copies for _, copies in per_layer) + head_copy


def _layer_bytes(shape: ModelShape, layer: Layer, work: Workload, *, grad_in: bool) -> float:
    """Bytes per token one decoder layer saves for backward (see docs/plan.md, "Activations").

    Residual-stream tensors are float32 (the weights' dtype); what matrix multiplies produce
    is in the compute dtype. Under autocast every consumer of a float32 input saves its own
    low-precision copy of it, and peft's LoRA path always makes its own copy.
    """
    c, d = work.compute_bytes, shape.hidden_size
    q_dim = shape.num_heads * shape.head_dim
    kv_dim = shape.num_kv_heads * shape.head_dim
    attn_in, attn_out = layer.role("attn_in"), layer.role("attn_out")
    mlp_in, mlp_out = layer.role("mlp_in"), layer.role("mlp_out")
    total = 0.0
    if grad_in:  # pre-attention norm: its input and 1/rms
        total += FP32 * d + FP32
    if layer.norms_train:
        total += 2 * FP32 * d  # each norm's normalised input, for the norm weight's gradient
    total += _inputs_saved(attn_in, d, work, float_input=True)
    total += sum(c * linear.lora_rank for linear in layer.linears)
    eager = work.attention == "eager"
    if eager:  # q, k and v repeated to every head, and the attention probabilities
        total += c * 3 * q_dim + (FP32 + c * work.autocast) * shape.num_heads * work.seq_len
    else:  # sdpa / flash: q, k, v, the output and the log-sum-exp per head
        total += c * (2 * q_dim + 2 * kv_dim) + FP32 * shape.num_heads
    total += _inputs_saved(attn_out, q_dim, work, float_input=False, shared=not eager)
    total += FP32 * d + FP32  # residual into the post-attention norm, and its 1/rms
    total += _inputs_saved(mlp_in, d, work, float_input=True)
    intermediate = sum(linear.out_features for linear in mlp_in)
    gated = intermediate >= 2 * shape.intermediate_size
    total += c * (intermediate + (shape.intermediate_size if gated else 0))
    total += _inputs_saved(mlp_out, shape.intermediate_size, work, float_input=False)
    return total


def _inputs_saved(
    linears: tuple[Linear, ...],
    width: int,
    work: Workload,
    *,
    float_input: bool,
    shared: bool = False,
) -> float:
    """Bytes per token the linears sharing one input save of it.

    In float32 the input tensor itself is saved, once for all of them; under autocast a float32
    input is cast (and saved) once per consumer. `shared` inputs are already saved by the op
    that made them (the output of sdpa and flash attention).
    """
    c = work.compute_bytes
    base = [linear for linear in linears if linear.trains]
    lora = [linear for linear in linears if linear.lora_rank]
    if not work.autocast:
        return 0.0 if shared or not (base or lora) else FP32 * width
    own = len(base) if float_input else (0 if shared or not base else 1)
    return c * width * (own + len(lora))


def _layer_copies(
    layer: Layer, work: Workload, *, grad_in: bool, trained_only: bool = False
) -> float:
    """Autocast's low-precision copies of one layer's float32 weights, kept for backward.

    A trained weight's copy (LoRA's included) is cached for the step; a frozen one is saved
    when its input needs a gradient. 4/8-bit weights are de-quantised on the fly, never kept.
    """
    if not work.autocast:
        return 0.0
    adapters = sum(
        linear.lora_rank * (linear.in_features + linear.out_features) for linear in layer.linears
    )
    kept = [
        linear
        for linear in layer.linears
        if linear.trains or (not trained_only and (grad_in or linear.role != "attn_in"))
    ]
    if work.quantization_bit is not None:
        kept = [linear for linear in kept if linear.trains]
    return work.compute_bytes * (adapters + sum(linear.params for linear in kept))


def _head_bytes(shape: ModelShape, work: Workload, *, grad_in: bool) -> float:
    """Bytes per token saved by the embeddings, the final norm, the output head and the loss
    (the log-softmax itself is in `MemoryEstimate.logits`)."""
    d = shape.hidden_size
    total = INDEX_BYTES * (1 + shape.embeddings_train)  # labels, and token ids
    if grad_in:
        total += FP32 * d + FP32
    if shape.head_trains:  # the final norm's normalised input and the head's input
        total += FP32 * d + (work.compute_bytes if work.autocast else FP32) * d
    return total
