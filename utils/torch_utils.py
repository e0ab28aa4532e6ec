"""Seeding and device helpers used by the notebook and run_exp.py."""
import random

import numpy as np
import torch


def seed_experiment(seed):
    """Seed python, numpy and torch (CPU and CUDA) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def to_device(tensors, device, non_blocking=False):
    """Move a tensor, or a dict/list/tuple of tensors, to `device`."""
    if isinstance(tensors, torch.Tensor):
        return tensors.to(device, non_blocking=non_blocking)
    if isinstance(tensors, dict):
        return {k: to_device(v, device, non_blocking) for k, v in tensors.items()}
    if isinstance(tensors, (list, tuple)):
        return type(tensors)(to_device(t, device, non_blocking) for t in tensors)
    raise TypeError(f"to_device expects tensors or dicts/lists of tensors, got {type(tensors).__name__}.")


def rng_state():
    """Every RNG state a run depends on, for exact resume."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
