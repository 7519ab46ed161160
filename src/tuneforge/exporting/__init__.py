"""Shipping a tuned model: merge a LoRA adapter into its base, save a Hugging Face folder or
GGUF. Named `exporting` so that the public function `tuneforge.export` keeps its name."""
