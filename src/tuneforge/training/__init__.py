"""Training: the stages (sft, pt, cls), the Trainer they build, checkpoints and progress
callbacks. Named `training` so that the public function `tuneforge.train` keeps its name."""
