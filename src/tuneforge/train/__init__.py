"""Training: stages (sft, pt), the Trainer they build, checkpoints and progress callbacks.

Import from the modules (`tuneforge.train.stages`); this package stays empty so that the
public function `tuneforge.train` is not shadowed by it.
"""
