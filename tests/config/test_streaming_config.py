"""``streaming: true``: what a stream cannot do is refused when the config is read, one line a
key and every problem at once; a LLaMA-Factory streaming config reads as written."""

from __future__ import annotations

import pytest
import yaml

from tuneforge.config import load_config
from tuneforge.errors import ConfigError

STREAMED = {"dataset": "x", "streaming": True, "max_steps": 100}


def problems(raw: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    return {problem.key: problem.message for problem in info.value.problems}


def test_only_stages_sft_and_pt_stream():
    assert problems({**STREAMED, "stage": "dpo"}) == {
        "streaming": "streaming applies to stages sft and pt (the stage is dpo)"
    }


def test_a_stream_with_steps_and_a_row_count_is_valid():
    cfg = load_config({**STREAMED, "val_size": 50, "buffer_size": 128, "packing": True})
    assert cfg.data.streaming and cfg.data.buffer_size == 128 and cfg.data.val_size == 50
    assert load_config({"dataset": "x"}).data.buffer_size == 16384


def test_every_thing_a_stream_cannot_do_is_refused_at_once_one_line_each():
    found = problems(
        {
            "dataset": "x",
            "streaming": True,
            "stage": "pt",
            "tokenized_path": "cache/tok",
            "val_size": 0.1,
            "group_by_length": True,
        }
    )
    assert found == {
        "max_steps": "streaming needs max_steps > 0: a stream has no length, so "
        "num_train_epochs cannot be turned into steps (LLaMA-Factory requires the same)",
        "tokenized_path": "tokenized_path saves the whole tokenised dataset, which a stream "
        "never holds; remove tokenized_path or streaming",
        "val_size": "val_size=0.1 is a share, and a stream's length is unknown; with "
        "streaming give a whole number of rows (taken from the start of the stream), or use "
        "eval_dataset",
        "group_by_length": "group_by_length sorts the whole dataset by length, which a stream "
        "cannot; remove group_by_length or streaming",
    }


def test_buffer_size_is_at_least_one_and_only_with_streaming():
    assert problems({**STREAMED, "buffer_size": 0}) == {
        "buffer_size": "buffer_size=0: Input should be greater than or equal to 1"
    }
    assert problems({"dataset": "x", "buffer_size": 64}) == {
        "buffer_size": "buffer_size applies with streaming: true only"
    }


def test_evaluation_alone_needs_no_steps():
    assert load_config({"dataset": "x", "streaming": True, "do_train": False}).data.streaming


# Keys of hiyouga/LLaMA-Factory examples/train_lora/qwen3_lora_sft.yaml, with the data keys a
# streaming run sets there (streaming, buffer_size, max_steps, val_size as a row count).
LLAMAFACTORY_STREAMING = """
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
dataset: identity
template: qwen
cutoff_len: 1024
streaming: true
buffer_size: 128
max_steps: 1000
val_size: 100
preprocessing_num_workers: 16
dataloader_num_workers: 4
output_dir: saves/qwen3-4b/lora/sft
logging_steps: 10
save_steps: 500
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
lr_scheduler_type: cosine
warmup_ratio: 0.1
"""


def test_a_llamafactory_streaming_config_loads(tmp_path):
    path = tmp_path / "stream.yaml"
    path.write_text(LLAMAFACTORY_STREAMING)
    cfg = load_config(path)
    assert (cfg.data.streaming, cfg.data.buffer_size, cfg.train.max_steps) == (True, 128, 1000)
    assert yaml.safe_load(LLAMAFACTORY_STREAMING)["val_size"] == cfg.data.val_size
