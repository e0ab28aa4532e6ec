"""Choosing a numeric precision: autocast dtype and gradient scaling per device."""
import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16():
    """True where the CPU has native bf16 instructions (AVX512-BF16 or AMX); without them
    bf16 matmuls are emulated and slower than fp32 (measured on AVX2-only EPYC: ~5x slower)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and _cpu_flags_have_bf16()
    except (AttributeError, RuntimeError):
        return False


def _cpu_flags_have_bf16():
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested, device):
    """auto -> bf16 on CUDA with bf16 (or a bf16 CPU), fp16 on older GPUs (e.g. a T4), else fp32."""
    device = torch.device(device)
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            raise ValueError("fp16 autocast is for GPUs: use --precision bf16 or fp32 on a CPU.")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast(precision, device):
    """Context manager running the forward pass in `precision` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def make_scaler(precision, device):
    """A gradient scaler for fp16 (whose small gradients underflow); disabled otherwise."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=(precision == "fp16"))
