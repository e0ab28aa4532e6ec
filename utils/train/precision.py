"""Numeric precision as one object: the autocast dtype, its context, the gradient scaler, why it was
chosen, and the watch that stops a run whose fp16 scaler or loss has stalled.

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
# Steps in a row after which a run is stalled: every one skipped by the fp16 scaler (each halves
# the scale, so 2^-100 of it is left: no real gradient needs that), or every one with bit for bit
# the same loss (a model stuck at one output). A healthy run does neither for even a few steps.
STALL_STEPS = 100


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


class TrainingStalled(RuntimeError):
    """Raised by StallWatch.check with a one-line reason (the loop turns it into TrainingDiverged)."""


class StallWatch:
    """Counts, on the device (no host sync per step), steps in a row that the gradient scaler
    skipped and steps in a row whose loss equals the previous one; check() reads them (one sync)."""

    def __init__(self, device, limit=STALL_STEPS):
        self.limit = limit
        self.skipped = torch.zeros((), dtype=torch.long, device=device)  # scaler-skipped steps in a row
        self.unchanged = torch.zeros((), dtype=torch.long, device=device)  # steps in a row with the same loss
        self.worst = torch.zeros(2, dtype=torch.long, device=device)  # the longest of each run so far
        self.last_loss = self.last_scale = None

    @torch.no_grad()
    def add(self, loss, scaler=None):
        loss = loss.detach()
        if self.last_loss is not None:
            self.unchanged = torch.where(loss == self.last_loss, self.unchanged + 1, 0)
        self.last_loss = loss.clone()
        scale = scale_tensor(scaler)
        if scale is not None:
            if self.last_scale is not None:  # update() halves the scale exactly when it skipped the step
                self.skipped = torch.where(scale < self.last_scale, self.skipped + 1, 0)
            self.last_scale = scale.clone()
        self.worst = torch.maximum(self.worst, torch.stack([self.skipped, self.unchanged]))

    def check(self):
        """Raise TrainingStalled with the reason when either run reached the limit."""
        skipped, unchanged = self.worst.tolist()
        if skipped >= self.limit:
            raise TrainingStalled(f"the fp16 gradient scaler skipped {skipped} steps in a row (the gradients "
                                  "overflow fp16), so nothing is learned: rerun with --precision bf16 (on an "
                                  "sm_80+ GPU) or --precision fp32.")
        if unchanged >= self.limit:
            raise TrainingStalled(f"the loss stayed exactly the same for {unchanged} steps in a row, so nothing is "
                                  "learned: rerun with --precision bf16 or --precision fp32, or another --lr.")


def scale_tensor(scaler):
    """The scaler's current scale as a device tensor (get_scale() would wait for the device), or None
    when no scaler is in use."""
    if scaler is None or not scaler.is_enabled():
        return None
    return scaler._scale  # set by the first scaler.scale(); updated in place by scaler.update()
