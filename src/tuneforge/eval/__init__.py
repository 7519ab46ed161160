"""Show whether fine-tuning worked: generation metrics (base vs tuned), classification
metrics beside a TF-IDF baseline, and batched inference.

Entry points live in `tuneforge.eval.evaluate` (``evaluate``, ``predict``); this package
imports nothing eagerly so that the config layer can read metric names cheaply.
"""
