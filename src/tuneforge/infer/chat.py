"""The one generation path: the CLI chat, the demo, evaluation and the API server use it.

A trained output folder carries its resolved config and a tokenizer whose chat template is
the one used in training, so loading it here renders prompts exactly as they were trained.
`ChatModel.generate` runs a batch of rows in one ``model.generate`` call; the CLI streams one
row, the API server batches the requests that arrive together.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteriaList

from tuneforge.config.load import validate_section
from tuneforge.config.schema import GenerationArgs
from tuneforge.data import Message, Template, get_template
from tuneforge.data.tools import ParsedReply
from tuneforge.infer.decoding import Row, RowTracker
from tuneforge.infer.resolve import ResolvedModel
from tuneforge.models import inference_dtype, load_adapter, load_model, load_tokenizer


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

    def encode(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        prefill: str = "",
    ) -> list[int]:
        """Prompt token ids: the conversation (and `tools`) rendered by the template, ready
        for the answer, which starts with `prefill` when one is given (see `tool_prefill`)."""
        ids = self.template.encode_prompt(messages, tools=[dict(t) for t in tools or ()] or None)
        if prefill:
            ids += self.tokenizer(prefill, add_special_tokens=False)["input_ids"]
        return ids

    def tool_prefill(self, tool_choice: str | None) -> str:
        """How the answer starts for a tool choice: ``required`` opens a call, a function name
        opens a call to it (its name already written), ``auto``/``none``/None add nothing."""
        if tool_choice in (None, "auto", "none"):
            return ""
        name = None if tool_choice == "required" else tool_choice
        return self.template.tool_format.call_prefix(name)

    def read_reply(self, text: str) -> ParsedReply:
        """The reply's text and tool calls, read in the format the template writes calls."""
        return self.template.tool_format.parse(text)

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
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated; closing the iterator stops it."""
        gen = gen or GenerationArgs()
        pieces: queue.Queue[str | Exception | None] = queue.Queue()
        row = Row(self.encode(messages, tools), gen.max_new_tokens, tuple(stop), on_text=pieces.put)

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

    def reply(
        self,
        messages: Sequence[Message],
        gen: GenerationArgs | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | None = None,
    ) -> str:
        """The whole reply at once (with `tools`, read it with `read_reply`)."""
        gen = gen or GenerationArgs()
        prefill = self.tool_prefill(tool_choice) if tools else ""
        row = Row(self.encode(messages, tools, prefill), gen.max_new_tokens)
        self.generate([row], gen)
        return (prefill + row.text).strip()

    def replies(
        self, conversations: Sequence[Sequence[Message]], gen: GenerationArgs | None = None
    ) -> list[str]:
        """Each conversation's reply, generated together in one batch (faster than one
        `reply` after another)."""
        gen = gen or GenerationArgs()
        rows = [Row(self.encode(messages), gen.max_new_tokens) for messages in conversations]
        if rows:
            self.generate(rows, gen)
        return [row.text.strip() for row in rows]


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


def load_chat_model(model: ResolvedModel) -> ChatModel:
    """Load the resolved weights (and adapter) for generation, with the template and RoPE
    scaling of the run's config."""
    cfg, args = model.config, model.load_args()
    tokenizer = load_tokenizer(args)  # an adapter's own tokenizer carries its chat template
    weights = load_model(
        args, dtype=inference_dtype(args), for_training=False, cutoff_len=cfg.data.cutoff_len
    )
    net: Any = weights
    if model.adapter:
        net = load_adapter(weights, model.adapter, trainable=False)
        if args.quantization_bit is None:  # LoRA's extra matmuls cost every token otherwise
            net = net.merge_and_unload()
    net.eval()
    template = get_template(
        cfg.data.template, tokenizer, cfg.data.default_system, cfg.data.tool_format
    )
    return ChatModel(model=net, tokenizer=tokenizer, template=template)
