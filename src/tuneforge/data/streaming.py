"""``streaming: true``: the training data read, converted, shuffled, tokenised and packed as
training consumes it, never whole.

Each file is streamed by `datasets` and converted by the same `RowConverter` as the whole-file
path; a bad row raises the same one-line DataError (file and row) when the stream reaches it.
Rows are mixed (`mix_strategy`), shuffled through a buffer of ``buffer_size`` rows, encoded by
the same encoders and packed a window of samples at a time by the same packer.

`TrainStream` is what the trainer gets: it starts the stream again when it ends, reshuffled
(a new pass), so that one endless pass is all transformers sees. Its resume then skips the
batches already trained by reading past them, across the passes too; transformers' own
restart at the end of an iterable would resume those passes from their start.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count, islice
from pathlib import Path
from typing import Any

import datasets
import torch

from tuneforge.config.schema import RunConfig
from tuneforge.data import files, formats, registry
from tuneforge.data.encode import ENCODED_FEATURES, ConversationEncoder, TextEncoder
from tuneforge.data.mixing import mix
from tuneforge.data.packing import PACKED_FEATURES, PackWindow
from tuneforge.data.templates import Template
from tuneforge.errors import DataError
from tuneforge.messages import first_line

logger = logging.getLogger(__name__)

# Samples the statistics and the resume fingerprint are taken from (the stream's first).
PEEK_ROWS = 256
# Samples packed together: first-fit-decreasing sorts one window at a time.
PACK_WINDOW = 1000


@dataclass(frozen=True)
class _Source:
    """One file (or hub dataset) to stream, in plain values: `datasets` copies it."""

    where: str
    file: str | None
    hub: dict[str, Any] | None
    cache_dir: str | None
    fmt: formats.RowFormat


def stream_dataset(spec: registry.DatasetSpec, cfg: RunConfig) -> tuple[Any, str]:
    """One registered dataset as a stream of conversations (texts for ``pt``), with
    max_samples applied (its first rows), and how its rows were read."""
    if spec.num_samples is not None:
        raise DataError(
            f"dataset '{spec.name}': num_samples draws a random subset, which a stream "
            f"cannot; use max_samples (the first rows) or turn streaming off"
        )
    stage, cache_dir = cfg.finetune.stage, cfg.model.cache_dir
    features = formats.TEXT_FEATURES if stage == "pt" else formats.CONVERSATION_FEATURES
    parts, description = [], ""
    for source in _sources(spec, cache_dir):
        first = next(iter(_open(source)), None)
        if first is None:
            continue
        fmt = formats.resolve_format(spec, source.where, datasets.Dataset.from_list([first]), stage)
        description = description or fmt.describe()
        plain = dataclasses.replace(fmt, columns=dict(fmt.columns), tags=dict(fmt.tags))
        parts.append(
            datasets.IterableDataset.from_generator(
                _conversations,
                features=features,
                gen_kwargs={"source": dataclasses.replace(source, fmt=plain)},
            )
        )
    if not parts:
        raise DataError(f"dataset '{spec.name}': has no rows")
    rows = datasets.concatenate_datasets(parts)
    if cfg.data.max_samples is not None:
        rows = rows.take(cfg.data.max_samples)
    return rows, description


def head_files(
    spec: registry.DatasetSpec, cache_dir: str | None, limit: int
) -> Iterator[tuple[str, datasets.Dataset]]:
    """(where, rows) as `files.iter_files` yields them, but only the dataset's first `limit`
    rows, streamed: what ``tuneforge plan`` measures of a stream."""
    for source in _sources(spec, cache_dir):
        rows = list(islice(_open(source), limit))
        if rows:
            yield source.where, datasets.Dataset.from_list(rows)
        limit -= len(rows)
        if limit <= 0:
            return


def _sources(spec: registry.DatasetSpec, cache_dir: str | None) -> list[_Source]:
    placeholder = formats.RowFormat("text", {})
    if spec.hub_id is not None:
        hub = {
            key: getattr(spec, key)
            for key in ("name", "hub_id", "subset", "folder", "split", "revision")
        }
        return [_Source(f"{spec.hub_id} (hub)", None, hub, cache_dir, placeholder)]
    assert spec.path is not None
    return [
        _Source(str(file), str(file), None, cache_dir, placeholder)
        for file in files.data_files(spec.path)
    ]


def _open(source: _Source) -> Iterator[dict[str, Any]]:
    """The source's rows as `datasets` streams them; a parse error names the file."""
    if source.hub is not None:
        spec = registry.DatasetSpec(**source.hub)
        rows = iter(files.load_hub(spec, source.cache_dir, streaming=True))
    else:
        rows = iter(files.stream_file(Path(str(source.file)), source.cache_dir))
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as err:  # datasets wraps parser errors in several exception types
            if source.file is None:
                raise DataError(f"{source.where}: cannot read ({first_line(err)})") from None
            raise files.read_error(Path(source.file), err) from None
        yield row


def _conversations(source: _Source) -> Iterator[dict[str, Any]]:
    """Generator of `stream_dataset`: each row converted, the first bad one refused."""
    convert = formats.RowConverter(source.fmt, source.where)
    for index, row in enumerate(_open(source)):
        converted = convert(row, index)
        error = converted.pop("error")
        if error:
            raise DataError(error)
        yield converted


def stream_training_rows(parts: list[Any], cfg: RunConfig) -> tuple[Any, datasets.Dataset | None]:
    """The mixed stream without its first ``val_size`` rows, shuffled; and those rows, held
    out for validation (None without val_size)."""
    data = cfg.data
    rows = mix(parts, data.mix_strategy, data.interleave_probs, cfg.train.seed)
    held_out = None
    if data.val_size and not data.eval_dataset:
        count_ = int(data.val_size)
        held_out = datasets.Dataset.from_list(list(rows.take(count_)), features=rows.features)
        if len(held_out) < count_:
            raise DataError(
                f"val_size: {count_} rows asked for validation, and the stream holds only "
                f"{len(held_out)}; lower val_size or add data"
            )
        rows = rows.skip(count_)
    return rows.shuffle(seed=cfg.train.seed, buffer_size=data.buffer_size), held_out


def encode_stream(rows: Any, cfg: RunConfig, tokenizer: Any, template: Template | None) -> Any:
    """The stream of conversations (texts) -> input_ids/labels, as `encode` does a dataset,
    dropping samples with nothing to train; packed a window at a time with `packing`."""
    data = cfg.data
    encoder: Any = (
        TextEncoder(tokenizer, data.cutoff_len)
        if template is None
        else ConversationEncoder(template, data.cutoff_len, data.train_on_prompt, data.mask_history)
    )
    encoded = (
        rows.map(
            encoder,
            batched=True,
            remove_columns=list(rows.features),
            features=ENCODED_FEATURES,
        )
        .filter(_trains)
        .select_columns(["input_ids", "labels"])
    )
    if not cfg.packing:
        return encoded
    return encoded.map(
        PackWindow(data.cutoff_len),
        batched=True,
        batch_size=PACK_WINDOW,
        remove_columns=["input_ids", "labels"],
        features=PACKED_FEATURES,
    )


def _trains(row: dict[str, Any]) -> bool:
    return bool(row["trained"] > 0)


class TrainStream(torch.utils.data.IterableDataset):
    """The training rows, pass after pass without end (each pass reshuffled: the shuffle's
    epoch is the pass number), so the trainer's step count, not the data, ends training.

    Only the first dataloader worker reads it (a stream is one sequence; several readers
    would each yield all of it). `head_lengths` are the token counts of its first rows, the
    data fingerprint a resumed run must match."""

    def __init__(self, rows: Any, head_lengths: tuple[int, ...]) -> None:
        super().__init__()
        self.rows = rows
        self.head_lengths = head_lengths

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.id > 0:
            return
        for number in count():
            self.rows.set_epoch(number)
            empty = True
            for row in self.rows:
                empty = False
                yield row
            if empty:
                raise DataError("the training stream holds no rows with anything to train")
            logger.info("Training stream: pass %d done, starting pass %d", number + 1, number + 2)
