"""The one generation path: the CLI chat, the demo, evaluation and the API server use it.

A trained output folder carries its resolved config and a tokenizer whose chat template is
the one used in training, so loading it here renders prompts exactly as they were trained.
`ChatModel.generate` runs a batch of rows in one ``model.generate`` call; the CLI streams one
row, the API server batches the requests that arrive together.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteriaList

from tuneforge.config.load import load_config, validate_section
from tuneforge.config.schema import GenerationArgs, RunConfig
from tuneforge.data import Template, get_template
from tuneforge.errors import ModelError
from tuneforge.infer.decoding import Row, RowTracker
from tuneforge.layout import CONFIG_NAME, complete_checkpoints
from tuneforge.models import inference_dtype, load_adapter, load_model, load_tokenizer

logger = logging.getLogger(__name__)

Message = dict[str, str]


@dataclass
class ChatModel:
    """A model ready to answer, with the template it was trained with.

    The model is not thread-safe: `generate` holds a lock, so callers on several threads take
    turns (the API server batches instead of relying on that).
    """

    model: Any
    tokenizer: Any
    template: Template
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """Prompt token ids: the conversation rendered by the template, ready for the answer."""
        return self.template.encode_prompt(messages)

    def generate(self, rows: Sequence[Row], gen: GenerationArgs) -> None:
        """Generate every row in one batch (left-padded); the rows share the sampling settings
        in `gen` but each keeps its own token limit and stop strings."""
        pad = self.tokenizer.pad_token_id
        width = max(len(row.prompt_ids) for row in rows)
        ids = [[pad] * (width - len(row.prompt_ids)) + row.prompt_ids for row in rows]
        mask = [[0] * (width - len(row.prompt_ids)) + [1] * len(row.prompt_ids) for row in rows]
        stop_ids = self.template.stop_token_ids
        tracker = RowTracker(rows, self.tokenizer, stop_ids)
        kwargs = {**gen.to_kwargs(), "max_new_tokens": max(row.max_new_tokens for row in rows)}
        device = self.model.device
        with self._lock, torch.inference_mode():
            self.model.generate(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                stopping_criteria=StoppingCriteriaList([tracker]),
                eos_token_id=list(stop_ids),
                pad_token_id=pad,
                **kwargs,
            )
        tracker.finish_all()

    def stream(
        self,
        messages: Sequence[Message],
        gen: GenerationArgs | None = None,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated; closing the iterator stops it."""
        gen = gen or GenerationArgs()
        pieces: queue.Queue[str | Exception | None] = queue.Queue()
        row = Row(self.encode(messages), gen.max_new_tokens, tuple(stop), on_text=pieces.put)

        def work() -> None:
            try:
                self.generate([row], gen)
            except Exception as exc:  # handed to the reading thread, which raises it
                pieces.put(exc)
            finally:
                pieces.put(None)

        worker = threading.Thread(target=work, name="tuneforge-generate", daemon=True)
        worker.start()
        try:
            while (piece := pieces.get()) is not None:
                if isinstance(piece, Exception):
                    raise piece
                yield piece
        finally:
            row.cancelled = True
            worker.join()

    def reply(self, messages: Sequence[Message], gen: GenerationArgs | None = None) -> str:
        """The whole reply at once."""
        gen = gen or GenerationArgs()
        row = Row(self.encode(messages), gen.max_new_tokens)
        self.generate([row], gen)
        return row.text.strip()


def generation_settings(
    gen: GenerationArgs,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: int | None = None,
    repetition_penalty: float | None = None,
) -> GenerationArgs:
    """`gen` with the values a user or a request gave; temperature 0 means greedy decoding,
    any other temperature samples (as in OpenAI's API)."""
    changes: dict[str, Any] = {}
    if temperature is not None:
        changes["do_sample"] = temperature > 0
        if temperature != 0:  # a negative one is reported by the validation below
            changes["temperature"] = temperature
    if top_p is not None:
        changes["top_p"] = top_p
    if max_new_tokens is not None:
        changes["max_new_tokens"] = max_new_tokens
    if repetition_penalty is not None:
        changes["repetition_penalty"] = repetition_penalty
    if not changes:
        return gen
    return validate_section(GenerationArgs, {**gen.model_dump(exclude_unset=True), **changes})


def chat_config(adapter: str | None = None, config: RunConfig | None = None) -> RunConfig:
    """The config a chat (or the API, or an export) needs.

    `adapter` may be a LoRA output folder, the folder of a full/freeze run or of a merged
    export (these carry tuneforge_config.yaml, used unless `config` is given), a plain peft
    adapter folder (its adapter_config.json names the base model) or a plain Hugging Face
    model folder.
    """
    if adapter is None:
        return config if config is not None else load_config({"do_train": False})
    folder = Path(adapter)
    is_adapter = (folder / "adapter_config.json").is_file()
    if not folder.is_dir():
        raise ModelError(f"adapter '{adapter}': no such folder")
    weights = folder
    if (folder / CONFIG_NAME).is_file() and not (is_adapter or (folder / "config.json").is_file()):
        weights = _last_checkpoint(folder)
        is_adapter = (weights / "adapter_config.json").is_file()
    if not (is_adapter or (weights / "config.json").is_file()):
        raise ModelError(
            f"adapter '{adapter}': no adapter_config.json (nor config.json); expected "
            f"a LoRA training output, a full-model folder or a merged export"
        )
    if config is not None:
        cfg = config.model_copy(deep=True)
    elif (folder / CONFIG_NAME).is_file():
        cfg = load_config(folder / CONFIG_NAME)
    else:
        base = _adapter_base(folder) if is_adapter else None
        cfg = load_config({"do_train": False, **({"model_name_or_path": base} if base else {})})
    if is_adapter:
        cfg.model.adapter_name_or_path = str(weights)
    else:  # a whole model: a full or freeze run, a merged export or a plain folder
        cfg.model.model_name_or_path, cfg.model.adapter_name_or_path = str(weights), None
    return cfg


def _last_checkpoint(run: Path) -> Path:
    """The weights of a run that was interrupted (it saved no final model): its last complete
    checkpoint, said in the log so the partial model is never taken for the finished one."""
    complete = complete_checkpoints(run)
    if not complete:
        raise ModelError(
            f"adapter '{run}': the run there has not finished and has no complete "
            f"checkpoint; resume it (resume_from_checkpoint: true) or train again"
        )
    logger.warning(
        "%s has not finished (no final model): using its last complete checkpoint, %s",
        run,
        complete[-1].name,
    )
    return complete[-1]


def _adapter_base(folder: Path) -> str | None:
    """The base model a plain peft adapter names (``base_model_name_or_path``)."""
    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
    except (OSError, ValueError):
        return None  # load_adapter reports the unreadable file with its name
    return base or None


def load_chat_model(cfg: RunConfig) -> ChatModel:
    """Load the base model (and the adapter in ``adapter_name_or_path``) for generation."""
    adapter = cfg.model.adapter_name_or_path
    tokenizer = load_tokenizer(cfg.model)  # an adapter's own tokenizer carries its chat template
    model = load_model(
        cfg.model,
        dtype=inference_dtype(cfg.model),
        for_training=False,
        cutoff_len=cfg.data.cutoff_len,
    )  # the RoPE scaling it was trained with
    if adapter:
        model = load_adapter(model, adapter, trainable=False)
    model.eval()
    template = get_template(cfg.data.template, tokenizer, cfg.data.default_system)
    return ChatModel(model=model, tokenizer=tokenizer, template=template)
