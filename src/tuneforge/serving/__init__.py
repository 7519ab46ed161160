"""The OpenAI-compatible API server over the one generation path (`tuneforge.infer`)."""
