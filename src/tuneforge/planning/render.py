"""The text of ``tuneforge plan``: the model, the memory breakdown with its arithmetic, whether
it fits, the changes that would make it fit, the advice table and the data summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.planning.advice import human_count
from tuneforge.planning.memory import FP32, LOSS_TENSORS, OPTIMIZERS, Workload
from tuneforge.planning.preference_step import FULL_LOGIT_TENSORS, TRL_TOKEN_TILE, TRL_VOCAB_TILE
from tuneforge.planning.shape import ModelShape
from tuneforge.training.fused_loss import CHUNK_ROWS

if TYPE_CHECKING:
    from tuneforge.planning.report import Plan

GB = 1e9
# The classic mixed-precision AdamW recipe, bytes per parameter: what the 16 B is made of.
CLASSIC_RECIPE = "2 (fp16 weights) + 2 (fp16 gradients) + 4 (fp32 master weights) + 8 (moments)"


def render_plan(plan: Plan) -> str:
    lines = [
        *_model_lines(plan),
        "",
        *_memory_lines(plan),
        "",
        *_fit_lines(plan),
        "",
        *_advice_lines(plan),
    ]
    if plan.data is not None:
        lines += ["", "Data:", *("  " + line for line in plan.data.text().splitlines())]
    if plan.data_note:
        lines.append(f"  ({plan.data_note})")
    return "\n".join(lines)


def _model_lines(plan: Plan) -> list[str]:
    shape, work = plan.shape, plan.workload
    share = shape.trainable_params / shape.total_params if shape.total_params else 0.0
    quant = f", base in {work.quantization_bit} bits" if work.quantization_bit else ""
    rows = (
        f"batch {work.batch_size} x 2 rows (chosen + rejected)"
        if work.rows != work.batch_size
        else f"batch {work.batch_size}"
    )
    return [
        f"Model: {shape.name} ({shape.model_type}, {shape.num_layers} layers, hidden "
        f"{shape.hidden_size}): {human_count(shape.total_params)} parameters = body "
        f"{human_count(shape.body_params)} + embeddings/head {human_count(shape.embedding_params)}",
        f"Trains: {human_count(shape.trainable_params)} parameters ({share:.2%}){quant}",
        f"Step: {rows} x {work.seq_len} tokens (cutoff_len), "
        f"{work.gradient_accumulation_steps} accumulation step(s), {work.attention} attention, "
        f"gradient checkpointing {'on' if work.gradient_checkpointing else 'off'}",
        f"Precision: {plan.precision}",
    ]


def _memory_lines(plan: Plan) -> list[str]:
    shape, work, memory = plan.shape, plan.workload, plan.estimate
    c = "bf16/fp16" if work.autocast else "none (float32 compute)"
    c_name = "bf16/fp16" if work.autocast else "float32"
    rows = [
        (
            "weights",
            f"{human_count(shape.total_params)} parameters, float32"
            + (
                f", layers' linears in {work.quantization_bit} bits"
                if work.quantization_bit
                else " (4 B each)"
            ),
            memory.weights,
        ),
        *(
            [
                (
                    "reference weights",
                    f"a second model, {human_count(shape.reference.total_params)} parameters "
                    f"in {c_name}",
                    memory.reference_weights,
                )
            ]
            if shape.reference
            else []
        ),
        ("gradients", f"{human_count(shape.trainable_params)} trained x 4 B", memory.gradients),
        (
            "optimizer states",
            f"{OPTIMIZERS[work.optimizer].label} per trained parameter",
            memory.optimizer_states,
        ),
        (
            "activations",
            f"saved for backward, {work.tokens:,} tokens x {shape.num_layers} layers",
            memory.activations,
        ),
        ("weight copies", f"autocast copies: {c}", memory.weight_copies),
        ("logits and loss", _loss_how(shape, work), memory.logits),
        *(
            [
                (
                    "reference forward",
                    "no gradients, beside activations: hidden states + 1 tile",
                    memory.reference_forward,
                )
            ]
            if work.preference and work.preference.reference_forward
            else []
        ),
        (
            "heap retention",
            "CPU: freed forward buffers glibc keeps resident",
            memory.heap_retention,
        ),
        ("optimizer step", "temporaries of one update", memory.optimizer_step),
        ("runtime", f"{work.device}: framework buffers, tokenizer, data", memory.runtime),
    ]
    lines = ["Memory (GB = 10^9 bytes):"]
    lines += [f"  {name:<17} {how:<58} {size / GB:>8.2f}" for name, how, size in rows]
    loss = "max(logits, reference forward)" if memory.reference_forward else "logits"
    forward = f"activations + copies + {loss} {memory.forward_backward / GB:.2f}"
    update = f"{'step' if memory.accumulates else 'gradients + step'} {memory.update / GB:.2f}"
    if memory.resident_heap:
        total = (
            f"{forward} + max(heap retention {memory.heap_retention / GB:.2f}, {update}); "
            f"on a CPU freed memory stays resident"
        )
    else:
        total = f"max({forward}, {update})"
    held = " + gradients (accumulated)" if memory.accumulates else ""
    reference = " + reference weights" if memory.reference_weights else ""
    lines.append(f"  peak = weights{reference} + optimizer states + runtime{held} + {total}")
    lines.append(f"       = {memory.peak / GB:.2f} GB")
    lines += _static_lines(plan)
    return lines


def _loss_how(shape: ModelShape, work: Workload) -> str:
    """How the logits and loss are held: whole, tuneforge's fused chunks, trl's log-prob
    tiles (dpo, kto) or ORPO/SimPO's whole logits."""
    outputs = f"{shape.output_size:,} outputs"
    step = work.preference
    if step is not None and step.head == "chunked":
        tile = f"{min(work.tokens, TRL_TOKEN_TILE):,} x {min(shape.output_size, TRL_VOCAB_TILE):,}"
        return f"trl log-prob tiles: {tile} of {work.tokens:,} x {shape.output_size:,}"
    if step is not None and step.head == "full":
        tensors = FULL_LOGIT_TENSORS[(work.autocast, step.sft_term)]
        return f"whole logits: {tensors:g} x {FP32} B x {work.tokens:,} tokens x {outputs}"
    if work.fused_loss:
        return (
            f"fused: chunks of {min(work.tokens, CHUNK_ROWS):,} of the {work.tokens:,} "
            f"positions x {outputs}"
        )
    return f"{LOSS_TENSORS} x {FP32} B x {work.tokens:,} tokens x {outputs}"


def _static_lines(plan: Plan) -> list[str]:
    """The static part per parameter, and why full fine-tuning with AdamW costs 16 B."""
    shape, memory = plan.shape, plan.estimate
    per_param = memory.static / shape.total_params if shape.total_params else 0.0
    reference = " + reference weights" if memory.reference_weights else ""
    lines = [
        f"  static (weights{reference} + gradients + optimizer states) = "
        f"{memory.static / GB:.2f} GB = {per_param:.1f} B per parameter"
    ]
    full_adam = shape.trainable_params == shape.total_params and plan.workload.optimizer.startswith(
        "adamw_torch"
    )
    if full_adam:
        lines += [
            "  full fine-tuning with AdamW: 4 (fp32 weights) + 4 (gradients) + 8 (two fp32 "
            "moments) = 16 B per parameter,",
            f"  the same 16 B as the classic mixed-precision recipe {CLASSIC_RECIPE};",
            f"  the transformer body's {human_count(shape.body_params)} parameters x 16 B = "
            f"{16 * shape.body_params / GB:.1f} GB (a 7B model: 7e9 x 16 B = 112 GB), the "
            f"{human_count(shape.embedding_params)} of embeddings and output head "
            f"{16 * shape.embedding_params / GB:.1f} GB",
        ]
    return lines


def _fit_lines(plan: Plan) -> list[str]:
    device, memory = plan.device, plan.estimate
    verdict = "fits" if plan.fits else "does NOT fit"
    lines = [
        f"Device: {device.description}: {device.total / GB:.1f} GB, "
        f"{device.available / GB:.1f} GB available -> {verdict} "
        f"({memory.peak / device.available:.0%} of what is available)"
    ]
    if plan.fixes:
        lines.append("Changes that would make it fit (each on its own, then all together):")
        for fix in plan.fixes:
            mark = "fits" if fix.estimate.peak <= device.available else "not enough"
            lines.append(
                f"  {fix.estimate.peak / GB:>8.2f} GB  {mark:<10}  {fix.change}: {fix.why}"
            )
    return lines


def _advice_lines(plan: Plan) -> list[str]:
    lines = ["Advice:", f"  {'':<5} {'setting':<21} {'in the config':<36} {'advised':<28} why"]
    for row in plan.advice:
        lines.append(
            f"  {'ok' if row.ok else 'check':<5} {row.setting:<21} {row.value:<36} "
            f"{row.advised:<28} {row.why}"
        )
    return lines
