"""Packing: whole samples, no token lost, and each packed sample computed as if alone."""

from __future__ import annotations

import datasets
import pytest
import torch

from tuneforge.data import build_collator
from tuneforge.data.packing import first_fit_decreasing, pack

IGNORE = -100


def test_first_fit_decreasing_is_deterministic_and_fills_the_first_bin_that_fits():
    assert first_fit_decreasing([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]
    assert first_fit_decreasing([], 8) == []
    with pytest.raises(ValueError):
        first_fit_decreasing([9], 8)


def test_bins_hold_every_sample_once_and_never_overflow():
    lengths = [(i * 37) % 50 + 1 for i in range(300)]
    bins = first_fit_decreasing(lengths, 64)
    assert sorted(i for members in bins for i in members) == list(range(300))
    assert all(sum(lengths[i] for i in members) <= 64 for members in bins)
    assert len(bins) <= 2 * sum(lengths) / 64 + 1


def encoded(samples: list[list[int]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "input_ids": samples,
            "labels": [[IGNORE] + ids[1:] if k % 2 else list(ids) for k, ids in enumerate(samples)],
        }
    )


def test_pack_keeps_every_token_resets_positions_and_masks_first_labels():
    samples = [list(range(100 * k, 100 * k + n)) for k, n in enumerate([7, 3, 5, 2, 6, 4, 1])]
    packed = pack(encoded(samples), cutoff_len=10)
    assert all(len(row) <= 10 for row in packed["input_ids"])
    found = []
    for ids, labels, positions in zip(
        packed["input_ids"], packed["labels"], packed["position_ids"], strict=True
    ):
        starts = [i for i, p in enumerate(positions) if p == 0]
        assert starts[0] == 0
        for start, end in zip(starts, starts[1:] + [len(ids)], strict=True):
            sample = ids[start:end]
            assert positions[start:end] == list(range(len(sample)))
            assert labels[start] == IGNORE
            original = samples.index(sample)
            assert labels[start + 1 : end] == encoded(samples)["labels"][original][1:]
            found.append(sample)
    assert sorted(found) == sorted(samples)


def test_packed_samples_give_the_same_logits_as_alone(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    generator = torch.Generator().manual_seed(0)
    samples = [torch.randint(3, 1000, (n,), generator=generator).tolist() for n in (9, 6, 5, 3)]
    packed = pack(encoded(samples), cutoff_len=16)
    assert len(packed) == 2
    batch = build_collator(tokenizer, batching="packed")(list(packed))
    assert "attention_mask" not in batch
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=None,
            use_cache=False,
        ).logits
        unpacked = model(input_ids=batch["input_ids"], use_cache=False).logits
        checked = 0
        for row, positions in enumerate(batch["position_ids"].tolist()):
            starts = [i for i, p in enumerate(positions) if p == 0]
            for start, end in zip(starts, starts[1:] + [len(positions)], strict=True):
                ids = batch["input_ids"][row, start:end].tolist()
                if ids not in samples:
                    continue  # the padded tail
                alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
                torch.testing.assert_close(logits[row, start:end], alone, atol=1e-5, rtol=0)
                if start > 0:  # without position_ids, later samples would see earlier ones
                    assert not torch.allclose(unpacked[row, start:end], alone, atol=1e-3)
                checked += 1
    assert checked == len(samples)
