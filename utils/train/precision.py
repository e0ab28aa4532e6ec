"""Numeric precision as one object: the autocast dtype, its context and the gradient scaler."""
import contextlib
from dataclasses import dataclass

import torch

from utils.torch_utils import cpu_has_bf16
from utils.train.settings import PRECISIONS as CHOICES

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32", "bf16" or "fp16" (never "auto": resolve() decides)
    device_type: str  # "cpu" or "cuda": where autocast applies

    @classmethod
    def resolve(cls, requested, device):
        """auto -> bf16 on CUDA with bf16 (or a CPU with native bf16), fp16 on older GPUs (a T4),
        else fp32. ValueError for fp16 on a CPU (no fast fp16 there) or an unknown name."""
        device = torch.device(device)
        if requested not in CHOICES:
            raise ValueError(f"Unknown precision {requested!r}: use {', '.join(CHOICES)}.")
        if requested == "fp16" and device.type == "cpu":
            raise ValueError("fp16 autocast is for GPUs: use --precision bf16 or fp32 on a CPU.")
        if requested == "auto":
            if device.type == "cuda":
                requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                requested = "bf16" if cpu_has_bf16() else "fp32"
        return cls(requested, device.type)

    def autocast(self):
        """Context for the forward pass in this precision (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.name])

    def make_scaler(self):
        """A gradient scaler for fp16 (whose small gradients underflow); disabled otherwise."""
        return torch.amp.GradScaler(self.device_type, enabled=(self.name == "fp16"))

    def __str__(self):
        return self.name


FP32_CPU = Precision("fp32", "cpu")
