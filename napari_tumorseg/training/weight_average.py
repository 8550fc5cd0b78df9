"""An exponential moving average of a model's weights, the model a run validates and keeps.

Why: a run that selects its epoch on one source's validation cases picks a noisy point of a
trajectory whose later epochs over-fit that source; an average over the recent trajectory
sits in a flatter region of the loss, which is known to transfer better to unseen sources
(Izmailov et al. 2018, SWA; Cha et al. 2021, SWAD: weight averaging for domain
generalisation). The average costs one multiply-add per weight and step.

BatchNorm's running statistics are averaged like the weights (they follow the averaged
trajectory's features closely enough at these decays; timm's ModelEma does the same);
integer buffers (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class WeightAverage:
    """``decay`` in (0, 1): the share of the average kept at each step. The first steps use
    a smaller one, ``(1 + t) / (10 + t)``, so the random initial weights are forgotten fast."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.steps = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def step_decay(self) -> float:
        return min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.step_decay()
        live = model.state_dict()
        for name, avg in self.module.state_dict().items():
            cur = live[name].detach()
            if avg.is_floating_point():
                avg.mul_(d).add_(cur.to(avg.dtype), alpha=1.0 - d)
            else:
                avg.copy_(cur)
        self.steps += 1

    def state_dict(self) -> dict:
        """For a checkpoint (weights_only-safe): the averaged weights and the step count."""
        return {"decay": self.decay, "steps": self.steps,
                "weights": {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.module.load_state_dict(state["weights"], strict=True)
