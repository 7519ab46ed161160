"""See how a run went: live logging and warnings, a report per run, run comparison, forgetting.

`TrainingMonitor` is wired into every training run by `train.trainer.build_trainer`;
`write_report`, `write_comparison` and `check_forgetting` back the ``tuneforge report``,
``compare`` and ``forgetting`` commands.
"""
