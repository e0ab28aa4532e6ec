"""Numeric precision as one object: the autocast dtype, its context, the gradient scaler, and why.
auto goes by compute capability, not is_bf16_supported() (True on a T4, where bf16 is emulated):
from sm_80 bf16 (no scaler needed); below, fp16 with a GradScaler against underflow."""
import contextlib
from dataclasses import dataclass

import torch

from utils.torch_utils import cpu_has_bf16
from utils.train.settings import PRECISIONS as CHOICES, UsageError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BF16_CAPABILITY = (8, 0)  # Ampere and later: bf16 and TF32 tensor cores


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32", "bf16" or "fp16" (never "auto": resolve() decides)
    device_type: str  # "cpu" or "cuda": where autocast applies
    reason: str = "requested"  # why this precision, for provenance.json
    tf32: bool = False  # fp32 matmuls and convolutions may use TF32 tensor cores (CUDA sm_80+)

    @classmethod
    def resolve(cls, requested, device):
        """auto -> bf16 on a GPU of compute capability >= 8.0 (or a CPU with native bf16), fp16 with a
        gradient scaler on older GPUs (a T4), else fp32. UsageError for fp16 on a CPU (no fast fp16
        there) or an unknown name."""
        device = torch.device(device)
        if requested not in CHOICES:
            raise UsageError(f"Unknown precision {requested!r}: use {', '.join(CHOICES)}.")
        if requested == "fp16" and device.type == "cpu":
            raise UsageError("fp16 autocast is for GPUs: use --precision bf16 or fp32 on a CPU.")
        reason = "requested"
        if device.type == "cuda":
            sm = tuple(torch.cuda.get_device_capability(device))
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
        fp32 = self.name == "fp32"
        return contextlib.nullcontext() if fp32 else torch.autocast(self.device_type, dtype=DTYPES[self.name])

    @property
    def uses_scaler(self):
        """fp16 needs a gradient scaler: its small gradients underflow."""
        return self.name == "fp16"

    def make_scaler(self):  # disabled but for fp16
        return torch.amp.GradScaler(self.device_type, enabled=self.uses_scaler)

    def describe(self, model=None):
        """For provenance.json: what runs and why, TF32 as torch's switches stand now (cuDNN's allow_tf32
        is True by default: an fp32 LSTM runs in TF32 on sm_80+). bitwise_reproducible: False on CUDA,
        where attention's backward and cuDNN add with atomics in no fixed order (docs/gpu.md)."""
        ampere = self.device_type == "cuda" and tuple(torch.cuda.get_device_capability()) >= BF16_CAPABILITY
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
