"""Seeding, devices and RNG state: used by the course notebook, the engine and the models."""
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
    """Every RNG state a run depends on, in types torch.load(weights_only=True) reads (exact resume)."""
    name, keys, *rest = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, keys.tolist(), *rest), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_has_bf16():
    """True where the CPU has native bf16 instructions (AVX512-BF16 or AMX); without them
    bf16 matmuls are emulated and slower than fp32 (measured on an AVX2-only EPYC: ~7x slower)."""
    try:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    return supported and any(flag in _cpuinfo() for flag in ("avx512_bf16", "amx_bf16"))


def cpu_model_name():
    """The CPU's model name from /proc/cpuinfo (e.g. "AMD EPYC 9B14"), else what platform knows."""
    import platform

    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()
