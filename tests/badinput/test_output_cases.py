"""Bad output_dir, checkpoint and resume inputs (output_dir under a regular file, resume from
a folder not named checkpoint-N, overwriting a finished run, ...).

These belong to the training code's owners (src/tuneforge/train/); add them here with the
`project` fixture and `Project.rejects`, like the cases beside this file.
"""
