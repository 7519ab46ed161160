"""Training: stages (sft, pt), the Trainer they build, checkpoints and progress callbacks."""

from tuneforge.train.stages import STAGES, TrainResult, train

__all__ = ["STAGES", "TrainResult", "train"]
