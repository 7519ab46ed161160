"""Norms and histograms of what a run trains, per decoder layer.

The loss says whether the model fits the data; these say whether the trained weights move at
all, and where. For LoRA they are the A and B matrices and the update they add to each weight,
``dW = scale * B @ A`` (its norm comes from two r x r products, without building dW); for
full and freeze tuning, the change of each trained weight since training began, measured
against a copy of the trained weights taken on the CPU at the start.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast

import torch

logger = logging.getLogger(__name__)

_LAYER = re.compile(r"\.layers\.(\d+)\.")
# A copy of the trained weights may take at most this share of the free memory.
SNAPSHOT_MEMORY_SHARE = 0.25


@dataclass
class WeightStats:
    """``totals``: one number per measure; ``by_layer``: measure -> layer -> number;
    ``histograms``: tag (``lora_B/layer_03``) -> the values, on the CPU."""

    totals: dict[str, float] = field(default_factory=dict)
    by_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    histograms: dict[str, torch.Tensor] = field(default_factory=dict)


def layer_of(name: str) -> str:
    """``...layers.3.self_attn...`` -> ``layer_03``; anything outside the layers -> ``other``."""
    match = _LAYER.search(f".{name}")
    return f"layer_{int(match.group(1)):02d}" if match else "other"


def lora_factors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """(module name, A, B, scale) of every active LoRA pair in `model`; empty when not LoRA."""
    from peft.tuners.lora import LoraLayer

    pairs: list[tuple[str, torch.Tensor, torch.Tensor, float]] = []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
            elif adapter in module.lora_embedding_A:
                a = module.lora_embedding_A[adapter]
                b = module.lora_embedding_B[adapter]
            else:
                continue
            pairs.append(
                (name, cast(torch.Tensor, a), cast(torch.Tensor, b), float(module.scaling[adapter]))
            )
    return pairs


def delta_norm(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    """Frobenius norm of ``scale * B @ A``: ||BA||^2 = sum((B^T B) * (A A^T))."""
    a, b = a.detach().float(), b.detach().float()
    squared = ((b.T @ b) * (a @ a.T)).sum().clamp_min(0)
    return scale * float(squared.sqrt())


class WeightTracker:
    """Measures the trained weights of one model; `start` once, then `measure` any time."""

    def __init__(self) -> None:
        self.snapshot: dict[str, torch.Tensor] | None = None
        self.start_norm = 0.0

    def start(self, model: torch.nn.Module) -> None:
        """Copy the trained weights to the CPU, when that fits comfortably in free memory."""
        import psutil

        trained = _trained(model)
        size = sum(p.numel() * p.element_size() for p in trained.values())
        free = psutil.virtual_memory().available
        if size > SNAPSHOT_MEMORY_SHARE * free:
            logger.info(
                "Weight change is not tracked: a copy of the %.1f GB of trained weights "
                "would not fit comfortably in the %.1f GB of free memory; logging their "
                "norms instead",
                size / 2**30,
                free / 2**30,
            )
            self.snapshot = None
            return
        self.snapshot = {name: p.detach().to("cpu", copy=True) for name, p in trained.items()}
        self.start_norm = (
            sum(float(p.float().square().sum()) for p in self.snapshot.values()) ** 0.5
        )

    def measure(self, model: torch.nn.Module) -> WeightStats:
        stats = WeightStats()
        pairs = lora_factors(model)
        if pairs:
            _lora_stats(pairs, stats)
        self._change_stats(model, stats, histograms=not pairs)
        return stats

    def _change_stats(
        self, model: torch.nn.Module, stats: WeightStats, *, histograms: bool
    ) -> None:
        """Per-layer norm of the change since `start` (or of the weights, without a copy)."""
        measure = "change_norm" if self.snapshot is not None else "weight_norm"
        squares: dict[str, float] = defaultdict(float)
        values: dict[str, list[torch.Tensor]] = defaultdict(list)
        for name, param in _trained(model).items():
            current = param.detach().float().cpu()
            if self.snapshot is not None and name in self.snapshot:
                current = current - self.snapshot[name].float()
            layer = layer_of(name)
            squares[layer] += float(current.square().sum())
            if histograms:
                values[layer].append(current.flatten())
        if not squares:
            return
        stats.by_layer[measure] = {layer: value**0.5 for layer, value in sorted(squares.items())}
        total = sum(squares.values()) ** 0.5
        stats.totals[measure] = total
        if self.snapshot is not None:
            stats.totals["relative_change"] = total / self.start_norm if self.start_norm else total
        prefix = "change" if self.snapshot is not None else "weight"
        for layer, parts in sorted(values.items()):
            stats.histograms[f"{prefix}/{layer}"] = torch.cat(parts)


def _lora_stats(
    pairs: list[tuple[str, torch.Tensor, torch.Tensor, float]], stats: WeightStats
) -> None:
    squares: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    values: dict[str, list[torch.Tensor]] = defaultdict(list)
    for name, a, b, scale in pairs:
        layer = layer_of(name)
        squares["lora_A_norm"][layer] += float(a.detach().float().square().sum())
        squares["lora_B_norm"][layer] += float(b.detach().float().square().sum())
        squares["delta_norm"][layer] += delta_norm(a, b, scale) ** 2
        values[f"lora_A/{layer}"].append(a.detach().float().cpu().flatten())
        values[f"lora_B/{layer}"].append(b.detach().float().cpu().flatten())
    for measure, by_layer in squares.items():
        stats.by_layer[measure] = {layer: value**0.5 for layer, value in sorted(by_layer.items())}
        stats.totals[measure] = sum(by_layer.values()) ** 0.5
    stats.histograms.update({tag: torch.cat(parts) for tag, parts in sorted(values.items())})


def _trained(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
