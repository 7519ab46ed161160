"""Shipping a tuned model: merge a LoRA adapter into its base, save a Hugging Face folder or GGUF.

Import from the modules (`tuneforge.export.pipeline`); this package stays empty so that the
public function `tuneforge.export` is not shadowed by it.
"""
