"""The optimizers a LLaMA-Factory config names by key, each built by the package that owns it.

GaLore and APOLLO are transformers optimizer names (`low_rank_arguments` fills the
TrainingArguments that select them); LoRA+ is peft's optimizer helper; BAdam and Adam-mini
come from their own packages; Muon is torch's, which only takes 2-D weights, so the rest of
the model goes to AdamW beside it (`OptimizerPair`). Everything else uses ``optim``.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterable, Set
from typing import Any

import torch
from transformers import TrainingArguments

from tuneforge.config.schema import OptimArgs
from tuneforge.errors import ConfigError
from tuneforge.models.adapters import decoder_layers, decoder_linear_names

logger = logging.getLogger(__name__)

# key -> (the module it imports, the tuneforge extra that installs it)
PACKAGES = {
    "use_galore": ("galore_torch", "galore"),
    "use_apollo": ("apollo_torch", "apollo"),
    "use_badam": ("badam", "badam"),
    "use_adam_mini": ("adam_mini", "adam-mini"),
}


def check_installed(optimizer: OptimArgs) -> None:
    """One line naming the extra to install when the chosen optimizer's package is missing."""
    for key in optimizer.chosen:
        module, extra = PACKAGES.get(key, (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"{key}: the {module} package is missing; pip install 'tuneforge[{extra}]'"
            )


def low_rank_arguments(optimizer: OptimArgs, model: torch.nn.Module) -> dict[str, Any]:
    """The TrainingArguments that make transformers build GaLore or APOLLO, else none."""
    if optimizer.use_galore:
        name = "galore_adamw_layerwise" if optimizer.galore_layerwise else "galore_adamw"
        targets = decoder_linear_names(model, "galore_target", optimizer.galore_target)
        settings: dict[str, Any] = {
            "rank": optimizer.galore_rank,
            "update_proj_gap": optimizer.galore_update_interval,
            "scale": optimizer.galore_scale,
            "proj_type": optimizer.galore_proj_type,
        }
    elif optimizer.use_apollo:
        name = "apollo_adamw_layerwise" if optimizer.apollo_layerwise else "apollo_adamw"
        targets = decoder_linear_names(model, "apollo_target", optimizer.apollo_target)
        settings = {
            "rank": optimizer.apollo_rank,
            "proj": optimizer.apollo_proj,
            "scale_type": optimizer.apollo_scale_type,
            "update_proj_gap": optimizer.apollo_update_interval,
            "scale": optimizer.apollo_scale,
            "proj_type": optimizer.apollo_proj_type,
        }
    else:
        return {}
    logger.info("Optimizer: %s on %s (%s)", name, ", ".join(targets), _listed(settings))
    return {"optim": name, "optim_target_modules": targets, "optim_args": _listed(settings)}


def _listed(settings: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in settings.items())


def custom_optimizer(
    optimizer: OptimArgs, model: torch.nn.Module, args: TrainingArguments, decay: Set[str]
) -> torch.optim.Optimizer | None:
    """LoRA+, BAdam, Adam-mini or Muon when the config asks for one; None leaves the choice to
    the Trainer (``optim``, GaLore, APOLLO). `decay` names the weights that decay."""
    adam = {"betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon}
    lr, weight_decay = args.learning_rate, args.weight_decay
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if optimizer.loraplus_lr_ratio:
        from peft.optimizers import create_loraplus_optimizer

        logger.info(
            "Optimizer: LoRA+ (AdamW; LoRA B at %g x the learning rate, embeddings at %g)",
            optimizer.loraplus_lr_ratio,
            optimizer.loraplus_lr_embedding,
        )
        return create_loraplus_optimizer(
            model,  # type: ignore[arg-type]
            torch.optim.AdamW,
            lr=lr,
            loraplus_lr_ratio=optimizer.loraplus_lr_ratio,
            loraplus_lr_embedding=optimizer.loraplus_lr_embedding,
            weight_decay=weight_decay,
            **adam,
        )
    if optimizer.use_adam_mini:
        from adam_mini import Adam_mini

        config: Any = model.config
        logger.info("Optimizer: Adam-mini (one second moment per block)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes on which names it recognised
            return Adam_mini(
                named_parameters=trained,
                lr=lr,
                weight_decay=weight_decay,
                dim=config.hidden_size,
                n_heads=config.num_attention_heads,
                n_kv_heads=getattr(config, "num_key_value_heads", None),
                verbose=False,
                **adam,
            )
    if optimizer.use_muon:
        return _muon(model, trained, lr, weight_decay, decay, adam)
    if optimizer.use_badam:
        return _badam(optimizer, model, trained, lr, weight_decay, decay, adam)
    return None


def _groups(
    named: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float, decay: Set[str]
) -> list[dict[str, Any]]:
    """The Trainer's two groups: weights that decay, and biases and norms that do not."""
    named = list(named)
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def _muon(
    model: torch.nn.Module,
    trained: list[tuple[str, torch.nn.Parameter]],
    lr: float,
    weight_decay: float,
    decay: Set[str],
    adam: dict[str, Any],
) -> torch.optim.Optimizer:
    """Muon for the decoder layers' matrices, AdamW for embeddings, heads and vectors."""
    stack = decoder_layers(model)[0] + "."
    matrices = [(n, p) for n, p in trained if p.ndim == 2 and n.startswith(stack)]
    chosen = {id(p) for _, p in matrices}
    others = [(n, p) for n, p in trained if id(p) not in chosen]
    logger.info(
        "Optimizer: Muon on %d matrices of the decoder layers, AdamW on the other %d "
        "parameters (Muon's step scaled to AdamW's, so learning_rate means the same)",
        len(matrices),
        len(others),
    )
    muon = torch.optim.Muon(
        [p for _, p in matrices], lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"
    )
    if not others:
        return muon
    return OptimizerPair(
        muon, torch.optim.AdamW(_groups(others, weight_decay, decay), lr=lr, **adam)
    )


def _badam(
    optimizer: OptimArgs,
    model: torch.nn.Module,
    trained: list[tuple[str, torch.nn.Parameter]],
    lr: float,
    weight_decay: float,
    decay: Set[str],
    adam: dict[str, Any],
) -> torch.optim.Optimizer:
    """BAdam: AdamW on one block of layers at a time (layer) or a share of each weight
    (ratio); the blocks are the decoder layers, as BAdam infers them from the names."""
    from badam import BlockOptimizer, BlockOptimizerRatio

    named = list(model.named_parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns that fp32 weights cost memory: they train here
        if optimizer.badam_mode == "layer":
            interval = optimizer.badam_switch_interval
            logger.info(
                "Optimizer: BAdam, one decoder layer at a time, %s, switching every %s",
                optimizer.badam_switch_mode,
                f"{interval} steps" if interval > 0 else "never",
            )
            return BlockOptimizer(
                base_optimizer=torch.optim.AdamW(
                    _groups(trained, weight_decay, decay), lr=lr, **adam
                ),
                named_parameters_list=named,
                block_prefix_list=None,
                switch_block_every=interval if interval > 0 else 2**62,
                start_block=optimizer.badam_start_block,
                switch_mode=optimizer.badam_switch_mode,
                verbose=optimizer.badam_verbose,
            )
        logger.info(
            "Optimizer: BAdam, %.0f%% of each weight at a time (%s)",
            100 * optimizer.badam_update_ratio,
            optimizer.badam_mask_mode,
        )
        return BlockOptimizerRatio(
            param_groups=_groups(trained, weight_decay, decay),
            named_parameters_list=named,
            switch_every=optimizer.badam_switch_interval,
            update_ratio=optimizer.badam_update_ratio,
            mask_mode=optimizer.badam_mask_mode,
            verbose=optimizer.badam_verbose,
            lr=lr,
            **adam,
        )


class OptimizerPair(torch.optim.Optimizer):
    """Two optimizers stepped as one, so the Trainer, its schedule (which sets each group's
    lr) and its checkpoints see a single optimizer: Muon beside AdamW."""

    def __init__(self, first: torch.optim.Optimizer, second: torch.optim.Optimizer) -> None:
        self.pair = (first, second)
        params = [p for opt in self.pair for group in opt.param_groups for p in group["params"]]
        super().__init__(params, {})
        # The inner optimizers' own group dicts: a learning rate set here reaches them.
        self.param_groups = [group for opt in self.pair for group in opt.param_groups]

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        for opt in self.pair:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.pair:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"pair": [opt.state_dict() for opt in self.pair]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for opt, state in zip(self.pair, state_dict["pair"], strict=True):
            opt.load_state_dict(state)
        self.param_groups = [group for opt in self.pair for group in opt.param_groups]
