"""The memory plan of the preference stages: chosen + rejected rows, the reference model and
its forward, trl's chunked log-prob head (against what it really allocates) and the breakdown
`tuneforge plan` prints."""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

import tuneforge
from tuneforge.models import Hardware
from tuneforge.planning.memory import FP32, estimate, loss_bytes, reference_forward_bytes, workload
from tuneforge.planning.preference_step import TRL_TOKEN_TILE, TRL_VOCAB_TILE
from tuneforge.planning.report import make_plan
from tuneforge.planning.shape import model_shape

CPU_FP32 = Hardware("cpu", False, "test CPU")
CPU_BF16 = Hardware("cpu", True, "test CPU")
# The log-prob outputs trl's DPOTrainer asks its fused head for.
DPO_OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")


@pytest.fixture()
def plan_of(tiny_model_dir):
    """plan_of(**keys): the estimate (shape, workload, memory) of the tiny model under keys."""

    def plan(hardware=CPU_FP32, **keys):
        cfg = tuneforge.load_config(
            {
                "model_name_or_path": str(tiny_model_dir),
                "dataset": "x",
                "cutoff_len": 128,
                "per_device_train_batch_size": 2,
                "bf16": hardware.native_bf16,
                **keys,
            }
        )
        shape = model_shape(cfg)
        work = workload(cfg, hardware)
        return shape, work, estimate(shape, work)

    return plan


def test_dpo_trains_on_twice_the_rows_of_sft(plan_of):
    _, sft_work, sft = plan_of()
    _, dpo_work, dpo = plan_of(stage="dpo")
    assert dpo_work.tokens == 2 * sft_work.tokens == 2 * 2 * 128  # chosen + rejected
    assert dpo.activations == pytest.approx(2 * sft.activations, abs=2)
    assert dpo.peak - sft.peak >= sft.activations  # the doubled rows, and the reference on top
    assert dpo.weights == sft.weights and dpo.optimizer_states == sft.optimizer_states


def test_lora_dpo_keeps_no_second_copy_of_the_weights_full_dpo_does(plan_of, wide_tiny_model_dir):
    shape, _, lora = plan_of(stage="dpo")
    assert shape.reference is None and lora.reference_weights == 0
    assert lora.reference_forward > 0  # the policy with its adapter off, without gradients

    full_shape, _, full = plan_of(stage="dpo", finetuning_type="full")
    assert full.reference_weights == FP32 * full_shape.total_params  # float32 compute here
    _, _, full_bf16 = plan_of(CPU_BF16, stage="dpo", finetuning_type="full")
    assert full_bf16.reference_weights == 2 * full_shape.total_params  # the compute dtype
    assert full.static == full.weights + full.reference_weights + full.gradients + (
        full.optimizer_states
    )

    other, _, named = plan_of(stage="dpo", ref_model=str(wide_tiny_model_dir))
    assert other.reference is not None and other.reference.hidden_size == 64
    assert named.reference_weights == FP32 * other.reference.total_params > lora.weights


@pytest.mark.parametrize("loss", ["orpo", "simpo"])
def test_orpo_and_simpo_have_no_reference(plan_of, loss):
    shape, work, memory = plan_of(stage="dpo", pref_loss=loss, finetuning_type="full")
    assert shape.reference is None and memory.reference_weights == 0
    assert memory.reference_forward == 0 and work.rows == 4
    # They take the whole logits into the loss: more than trl's tiles would hold.
    assert memory.logits > FP32 * work.tokens * shape.output_size


def test_kto_trains_its_rows_once_and_runs_the_reference(plan_of):
    _, sft_work, sft = plan_of()
    _, work, kto = plan_of(stage="kto")
    assert work.tokens == sft_work.tokens and kto.activations == sft.activations
    assert kto.reference_forward > 0 and kto.reference_weights == 0


def test_reward_model_scores_pairs_with_one_output(plan_of):
    shape, work, rm = plan_of(stage="rm")
    assert shape.output_size == 1 and work.rows == 4
    assert rm.logits < FP32 * work.tokens * shape.hidden_size  # no vocabulary logits
    assert rm.reference_weights == rm.reference_forward == 0


class LiveBytes(TorchDispatchMode):
    """The peak of the bytes of tensors that ops create while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.sizes: dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and not tensor._is_view():
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.sizes:
                    self.sizes[key] = storage.nbytes()
                    self.live += self.sizes[key]
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(tensor, self._free, key)
        return out


@pytest.mark.parametrize("hardware", [CPU_FP32, CPU_BF16], ids=["fp32", "bf16"])
def test_trl_log_prob_head_holds_what_the_estimate_counts(plan_of, hardware):
    from trl.kernels import ChunkedLogProbFunction

    shape, work, _ = plan_of(hardware, stage="dpo")
    d, vocab = shape.hidden_size, shape.output_size
    torch.manual_seed(0)
    # The decoder's output with one position more: trl drops the last one, as it does.
    states = torch.randn(work.rows, work.seq_len + 1, d, requires_grad=True)
    weight = torch.randn(vocab, d) * 0.02
    targets = torch.randint(0, vocab, (work.tokens,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=work.autocast)

    def log_probs(outputs: tuple[str, ...]) -> torch.Tensor:
        hidden = states[:, :-1].reshape(-1, d)
        return ChunkedLogProbFunction.apply(
            hidden, weight, None, targets, 1.0, TRL_VOCAB_TILE, None, 1.0, outputs
        )[0]

    with autocast, LiveBytes() as trained:
        log_probs(DPO_OUTPUTS).sum().backward()
    with autocast, torch.no_grad(), LiveBytes() as reference:
        log_probs(("log_probs",))
    saved_by_policy = FP32 * work.tokens * d
    assert work.tokens < TRL_TOKEN_TILE and vocab > TRL_VOCAB_TILE  # one tile of 32,768 words
    assert trained.peak == pytest.approx(loss_bytes(shape, work), rel=0.03)
    assert reference.peak + saved_by_policy == pytest.approx(
        reference_forward_bytes(shape, work), rel=0.03
    )


def test_tile_sizes_are_trls():
    from trl.kernels import chunked_logprob
    from trl.trainer import utils

    assert chunked_logprob.TOKEN_CHUNK_SIZE == TRL_TOKEN_TILE
    assert utils._CHUNKED_LOGPROB_CHUNK_SIZE == TRL_VOCAB_TILE


def test_plan_names_the_preference_parts(tiny_config, device_of):
    device_of(64)
    full = make_plan(
        tuneforge.load_config({**tiny_config, "stage": "dpo", "finetuning_type": "full"}),
        with_data=False,
        hardware=CPU_FP32,
    ).text()
    assert "batch 4 x 2 rows (chosen + rejected) x 64 tokens" in full
    for part in ("reference weights", "reference forward", "trl log-prob tiles: 512 x 32,768"):
        assert part in full
    assert "max(logits, reference forward)" in full and "weights + reference weights" in full

    orpo = make_plan(
        tuneforge.load_config({**tiny_config, "stage": "dpo", "pref_loss": "orpo"}),
        with_data=False,
        hardware=CPU_FP32,
    ).text()
    assert "whole logits: 3.5 x 4 B x 512 tokens" in orpo
    assert "reference" not in orpo.split("Advice:")[0]
