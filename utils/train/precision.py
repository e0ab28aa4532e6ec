"""Numeric precision as one object: the autocast dtype, its context, the gradient scaler, and why it was chosen.

auto decides by the GPU's compute capability, not by torch.cuda.is_bf16_supported(): that says
True on a T4 (sm_75), where bf16 is emulated without tensor cores (fp32 speed or worse). From
sm_80 (A100, L4, H100) bf16 has tensor cores and fp32's range, so it needs no scaler; below,
fp16 runs on the tensor cores and a GradScaler keeps its small gradients from underflowing.
"""
import contextlib
from dataclasses import dataclass

import torch

from utils.torch_utils import cpu_has_bf16
from utils.train.settings import PRECISIONS as CHOICES

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BF16_CAPABILITY = (8, 0)  # Ampere and later: bf16 and TF32 tensor cores


def _capability(device):
    major, minor = torch.cuda.get_device_capability(device)
    return (major, minor)


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32", "bf16" or "fp16" (never "auto": resolve() decides)
    device_type: str  # "cpu" or "cuda": where autocast applies
    reason: str = "requested"  # why this precision, for provenance.json
    tf32: bool = False  # fp32 matmuls and convolutions may use TF32 tensor cores (CUDA sm_80+)

    @classmethod
    def resolve(cls, requested, device):
        """auto -> bf16 on a GPU of compute capability >= 8.0 (or a CPU with native bf16), fp16 with a
        gradient scaler on older GPUs (a T4), else fp32. ValueError for fp16 on a CPU (no fast fp16
        there) or an unknown name."""
        device = torch.device(device)
        if requested not in CHOICES:
            raise ValueError(f"Unknown precision {requested!r}: use {', '.join(CHOICES)}.")
        if requested == "fp16" and device.type == "cpu":
            raise ValueError("fp16 autocast is for GPUs: use --precision bf16 or fp32 on a CPU.")
        reason = "requested"
        if device.type == "cuda":
            sm = _capability(device)
            tag = f"sm_{sm[0]}{sm[1]}"
            if requested == "auto":
                requested = "bf16" if sm >= BF16_CAPABILITY else "fp16"
                reason = (f"auto: {tag} >= sm_80 has bf16 tensor cores" if requested == "bf16" else
                          f"auto: {tag} < sm_80 has no bf16 tensor cores (emulated bf16 is slow): fp16 with a "
                          "gradient scaler")
            elif requested == "bf16" and sm < BF16_CAPABILITY:
                reason = f"requested (on {tag} bf16 is emulated, without tensor cores)"
            tf32 = requested == "fp32" and sm >= BF16_CAPABILITY
            return cls(requested, "cuda", reason + ("; TF32 matmuls allowed" if tf32 else ""), tf32)
        if requested == "auto":
            native = cpu_has_bf16()
            requested = "bf16" if native else "fp32"
            reason = "auto: CPU with native bf16" if native else "auto: CPU without native bf16 (emulated is slower)"
        return cls(requested, device.type, reason)

    def configure(self):
        """Set the process-wide switches this precision implies (TF32 for fp32 on sm_80+)."""
        if self.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def autocast(self):
        """Context for the forward pass in this precision (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.name])

    @property
    def uses_scaler(self):
        """fp16 needs a gradient scaler: its small gradients underflow."""
        return self.name == "fp16"

    def make_scaler(self):
        """A gradient scaler for fp16; disabled otherwise."""
        return torch.amp.GradScaler(self.device_type, enabled=self.uses_scaler)

    def describe(self, model=None):
        """For provenance.json: what runs and why, with TF32 as torch's switches stand now (configure()
        sets them for fp32; cuDNN's allow_tf32 is True by default, so an fp32 recurrence runs cuDNN's
        LSTM in TF32 on sm_80+ under every precision). tf32: fp32 matmuls may use TF32. bitwise_reproducible:
        False on CUDA, where flash and memory-efficient attention's backward and cuDNN add with atomics
        in no fixed order, so two runs (and a resumed run against an uninterrupted one) agree only to
        within that run-to-run difference (docs/gpu.md)."""
        ampere = self.device_type == "cuda" and _capability(torch.cuda.current_device()) >= BF16_CAPABILITY
        recurrence = getattr(model, "recurrence_precision", None)
        if recurrence and self.name == "fp16" and self.device_type == "cuda":
            recurrence = "fp16"  # fp16 autocast, with its scaler, runs the LSTM's recurrence in fp16
        elif recurrence == "fp32" and ampere and torch.backends.cudnn.allow_tf32:
            recurrence = "tf32"
        return {"precision": self.name, "precision_reason": self.reason,
                "tf32": ampere and torch.backends.cuda.matmul.allow_tf32, "recurrence_precision": recurrence,
                "bitwise_reproducible": self.device_type != "cuda"}

    def __str__(self):
        return self.name
