"""What a config needs from this machine: optional packages, the DeepSpeed/FSDP settings
files, and a CUDA GPU for the options that only run on one.

Kept apart from `load_config`, which judges the config alone, so that a config is valid or not
whatever machine reads it (a laptop, the cluster, the WebUI's server). The commands that run a
config call `check_environment` before they load anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.config.scale import missing_extra, read_engine_config, sharded_quantization
from tuneforge.errors import ConfigError, Problem

if TYPE_CHECKING:
    from tuneforge.config.schema import RunConfig


def check_environment(cfg: RunConfig, origin: str = "config") -> None:
    """Raise one `ConfigError` with every problem this machine has with `cfg`."""
    training = cfg.train.do_train  # the engine's files and the kernels matter to training only
    problems = [
        *(_engine_file_problems(cfg) if training else []),
        *_package_problems(cfg),
        *(_gpu_problems(cfg) if training else []),
    ]
    if problems:
        raise ConfigError(*problems, origin=origin)


def _package_problems(cfg: RunConfig) -> list[Problem]:
    """The optional packages the config's keys need, each with the extra that installs it."""
    train, bits = cfg.train, cfg.model.quantization_bit
    needs: list[tuple[str, str, str, str]] = []  # key, what needs it, module, extra
    if bits is not None:
        needs.append(("quantization_bit", f"quantization_bit={bits}", "bitsandbytes", "qlora"))
    if train.optim == "adamw_bnb_8bit":
        needs.append(("optim", "optim=adamw_bnb_8bit", "bitsandbytes", "qlora"))
    needs += [
        ("report_to", f"report_to={reporter}", reporter, "monitor")
        for reporter in ("wandb", "mlflow")
        if reporter in train.report_to
    ]
    if train.do_train and train.deepspeed:
        needs.append(("deepspeed", "deepspeed", "deepspeed", "deepspeed"))
    if train.do_train and train.enable_liger_kernel:
        needs.append(("enable_liger_kernel", "enable_liger_kernel", "liger_kernel", "liger"))
    return [
        Problem(key, missing)
        for key, feature, module, extra in needs
        if (missing := missing_extra(feature, module, extra))
    ]


def _engine_file_problems(cfg: RunConfig) -> list[Problem]:
    """The DeepSpeed and FSDP settings files: there, readable, and not ZeRO-3 under QLoRA."""
    train = cfg.train
    problems: list[Problem] = []
    settings: dict[str, dict[str, Any]] = {}
    for key, path in (("deepspeed", train.deepspeed), ("fsdp_config", train.fsdp_config)):
        if path:
            try:
                settings[key] = read_engine_config(key, path)
            except ConfigError as exc:
                problems.extend(Problem(key, line) for line in exc.lines)
    zero = settings.get("deepspeed", {}).get("zero_optimization")
    bits = cfg.model.quantization_bit
    if bits is not None and isinstance(zero, dict) and zero.get("stage") == 3:
        problems.append(sharded_quantization(bits, "DeepSpeed ZeRO-3"))
    return problems


def _gpu_problems(cfg: RunConfig) -> list[Problem]:
    """Options that run on a CUDA GPU only, on a machine without one."""
    if not cfg.train.enable_liger_kernel:
        return []
    import torch  # here: judging a config alone must not import it

    if torch.cuda.is_available():
        return []
    return [
        Problem(
            "enable_liger_kernel",
            "enable_liger_kernel: Liger's Triton kernels need a CUDA GPU and this machine has "
            "none; remove the key",
        )
    ]
