"""The optimizers, by name: a fifth optimizer is one entry here. Importing this module imports no torch
(the report and the flags' checks read `uses`). The search grids' reasons: docs/study.md."""
import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OptimizerSpec:
    build: Callable  # (torch.optim module, params, settings, **options) -> optimizer
    uses: tuple  # the settings it reads: a typed flag that it does not read is refused, the report shows only these
    grid: tuple  # the learning rates the study's search tries (utils.study.tuning), ascending
    fused: bool = False  # torch has a fused CUDA kernel for it (fused=True is passed on CUDA only then)


OPTIMIZERS = {
    "sgd": OptimizerSpec(lambda o, p, s, **kw: o.SGD(p, lr=s.lr, weight_decay=s.weight_decay, **kw),
                         ("lr", "weight_decay"), (0.01, 0.03, 0.1, 0.3, 1.0), fused=True),
    "momentum": OptimizerSpec(lambda o, p, s, **kw: o.SGD(p, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                                                          **kw), ("lr", "momentum", "weight_decay"),
                              (0.001, 0.003, 0.01, 0.03, 0.1), fused=True),
    # The course gives Adam no weight decay.
    "adam": OptimizerSpec(lambda o, p, s, **kw: o.Adam(p, lr=s.lr, **kw), ("lr",), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                          fused=True),
    "adamw": OptimizerSpec(lambda o, p, s, **kw: o.AdamW(p, lr=s.lr, weight_decay=s.weight_decay, **kw),
                           ("lr", "weight_decay"), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), fused=True),
}


def users_of(setting):
    """The optimizers whose entry reads `setting`: the flags' help and the check of unused flags."""
    return [name for name, spec in OPTIMIZERS.items() if setting in spec.uses]


def make_optimizer(settings, model, fused=None):
    """settings.optimizer's optimizer over model's learnable parameters; KeyError names the choices.
    On CUDA an entry with a fused kernel gets it (the unfused step under a GradScaler waits for the
    host every step); the CPU keeps the default, the course's. fused=True: the fused kernel anywhere."""
    import torch.optim

    if settings.optimizer not in OPTIMIZERS:
        raise KeyError(f"Unknown optimizer {settings.optimizer!r}: choose from {', '.join(OPTIMIZERS)}.")
    spec = OPTIMIZERS[settings.optimizer]
    params = [p for p in model.parameters() if p.requires_grad]
    fused = spec.fused and (fused if fused is not None else bool(params) and params[0].is_cuda)
    return spec.build(torch.optim, params, settings, **({"fused": True} if fused else {}))


def scheduled_lr(settings, step, total):
    """The lr of 0-based step `step` of `total`: linear warmup, then --lr (constant) or a cosine to 0."""
    warmup = settings.warmup_steps
    if step < warmup:
        return settings.lr * (step + 1) / warmup
    if settings.lr_schedule == "constant":
        return settings.lr
    progress = (step - warmup) / max(total - warmup, 1)
    return settings.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def load_optimizer_state(optimizer, state):
    """optimizer.load_state_dict(state), keeping the kernel this device chose: torch places each `step`
    counter by the SAVED group's `fused` flag, so a CPU state continued on CUDA would leave `step` on
    the CPU and the fused kernel would refuse it."""
    groups = [dict(saved, **({"fused": group["fused"]} if "fused" in group else {}))
              for saved, group in zip(state["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict(dict(state, param_groups=groups))
