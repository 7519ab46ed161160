"""How trl's trainers run one step of a preference stage, as the memory estimate reads it.

What differs from SFT, read from trl 1.16's code and measured on a CPU (docs/plan.md,
"Preference stages"):

- dpo and rm put chosen and rejected through the model as one batch of 2 x batch rows, with
  gradients; kto puts batch rows through it (their KL partners only without gradients).
- dpo and kto score the answers with trl's chunked log-prob head (`add_fused_lm_head`): the
  hidden states go through the output head in tiles of at most `TRL_TOKEN_TILE` positions x
  `TRL_VOCAB_TILE` words, so the logits of the whole batch are never held.
- their reference forward runs without gradients after the trained forward, while its
  activations wait for the backward pass. With LoRA and no ``ref_model`` the reference is the
  policy with its adapter switched off; otherwise a second model in the compute dtype.
- ORPO and SimPO (trl.experimental's ORPOTrainer and CPOTrainer) have no reference and take the
  model's whole logits, of every row, into their loss.
- rm's sequence-classification head has one output per position: no vocabulary logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from tuneforge.config.schema import FinetuneArgs

# dpo losses that compare the policy with no reference model.
REFERENCE_FREE_LOSSES = ("orpo", "simpo")
# trl's chunked log-prob head: positions per tile (trl.kernels.chunked_logprob's
# TOKEN_CHUNK_SIZE) and words per tile (trl.trainer.utils' _CHUNKED_LOGPROB_CHUNK_SIZE).
TRL_TOKEN_TILE = 4096
TRL_VOCAB_TILE = 32768
# Without Triton (on a CPU) the tile is folded by torch ops, whose float32 temporaries of the
# tile's size are alive at once: 3 in the forward (the float32 logits, their shift by the
# maximum, its exponential), 7 in the backward (logits, scaled logits, log-probabilities,
# probabilities, the gradient, the one-hot target and its difference) plus a boolean mask.
# With Triton the kernels work in the tile itself. Measured: docs/plan.md.
TRL_FORWARD_TEMPORARIES = 3
TRL_BACKWARD_TEMPORARIES = 7
# ORPO and SimPO: float32-sized tensors of rows x length x vocabulary alive at once in their
# loss's forward and backward, by (autocast, SFT term on the chosen rows); measured on CPUs
# (benchmarks/memory_estimate.py: fp32 on an AVX2 one, bf16 autocast on an AVX512-BF16 one).
# The SFT term copies the chosen rows' logits for its cross-entropy; under autocast the
# logits are bf16/fp16 and float32 copies of them are made for the loss.
FULL_LOGIT_TENSORS: Mapping[tuple[bool, bool], float] = MappingProxyType(
    {(False, False): 3.0, (False, True): 3.5, (True, False): 3.0, (True, True): 3.25}
)


@dataclass(frozen=True)
class PreferenceStep:
    """One training step of a preference stage: the rows it trains on per sample, how the
    answers are scored, and whether a reference forward runs beside the trained one."""

    rows_per_sample: int
    head: Literal["model", "chunked", "full"]
    sft_term: bool = False
    reference_forward: bool = False


def preference_step(finetune: FinetuneArgs) -> PreferenceStep | None:
    """The step of stage rm, dpo or kto as trl runs it; None for the other stages."""
    if finetune.stage == "rm":
        return PreferenceStep(rows_per_sample=2, head="model")
    if finetune.stage == "kto":
        return PreferenceStep(rows_per_sample=1, head="chunked", reference_forward=True)
    if finetune.stage != "dpo":
        return None
    if finetune.pref_loss in REFERENCE_FREE_LOSSES:
        # ORPO always adds the SFT term; SimPO when pref_ftx weighs it (trl's cpo_alpha).
        sft = finetune.pref_loss == "orpo" or finetune.pref_ftx > 0
        return PreferenceStep(rows_per_sample=2, head="full", sft_term=sft)
    return PreferenceStep(rows_per_sample=2, head="chunked", reference_forward=True)


def holds_reference_copy(finetune: FinetuneArgs) -> bool:
    """A second model is loaded as the reference: ``ref_model``, or full/freeze tuning,
    whose policy cannot switch its changes off."""
    step = preference_step(finetune)
    if step is None or not step.reference_forward:
        return False
    return finetune.ref_model is not None or not finetune.adapter
