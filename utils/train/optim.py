"""The optimizers, by name: one table entry each. An unknown name is a KeyError, never a fallback.

A fifth optimizer is one entry here: its builder and the settings it reads (the report shows
momentum, say, only for optimizers that use it). It is built over the learnable parameters
only, so the frozen tied embedding gets no optimizer state. Importing this module imports no
torch (the report reads `uses`).
"""
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OptimizerSpec:
    build: Callable  # (torch.optim module, params, settings) -> optimizer
    uses: tuple  # the settings it reads, besides the parameters


OPTIMIZERS = {
    "sgd": OptimizerSpec(lambda o, p, s: o.SGD(p, lr=s.lr, weight_decay=s.weight_decay), ("lr", "weight_decay")),
    "momentum": OptimizerSpec(lambda o, p, s: o.SGD(p, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay),
                              ("lr", "momentum", "weight_decay")),
    # The course gives Adam no weight decay.
    "adam": OptimizerSpec(lambda o, p, s: o.Adam(p, lr=s.lr), ("lr",)),
    "adamw": OptimizerSpec(lambda o, p, s: o.AdamW(p, lr=s.lr, weight_decay=s.weight_decay), ("lr", "weight_decay")),
}


def make_optimizer(settings, model):
    """settings.optimizer's optimizer over model's learnable parameters; KeyError names the choices."""
    import torch.optim

    if settings.optimizer not in OPTIMIZERS:
        raise KeyError(f"Unknown optimizer {settings.optimizer!r}: choose from {', '.join(OPTIMIZERS)}.")
    params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS[settings.optimizer].build(torch.optim, params, settings)
