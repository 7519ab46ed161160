"""Training data: registry, row formats, chat templates, encoding, packing and batching.

A training stage calls `prepare_datasets`; chat, evaluation and the API render prompts with
`get_template`, the same path training used.
"""

from tuneforge.data.collator import build_collator
from tuneforge.data.formats import Conversation, Message
from tuneforge.data.prepare import PreparedData, prepare_datasets
from tuneforge.data.stats import DataStats
from tuneforge.data.templates import NAMED_TEMPLATES, Template, get_template, template_mismatch

__all__ = [
    "NAMED_TEMPLATES",
    "Conversation",
    "DataStats",
    "Message",
    "PreparedData",
    "Template",
    "build_collator",
    "get_template",
    "prepare_datasets",
    "template_mismatch",
]
