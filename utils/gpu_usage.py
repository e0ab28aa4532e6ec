"""GPU memory as the course notebook reads it (MB). Without CUDA nothing is measured: NaN, never 0."""
import torch


def _cuda_device(device):
    """The CUDA device to read (the current one when None), or None when there is none to read."""
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    return device if device.type == "cuda" else None


def get_gpu_memory_usage(device=None):
    """MB PyTorch has allocated on `device` (default: the current CUDA device); NaN on a CPU, so the
    notebook's arithmetic still runs and a CPU run never reports 0 MB as if measured."""
    device = _cuda_device(device)
    if device is None:
        return float("nan")
    return torch.cuda.memory_allocated(device) / 2**20


def peak_gpu_memory_mb(reset=False, device=None):
    """Peak allocated MB on `device` since the last reset; None on a CPU."""
    device = _cuda_device(device)
    if device is None:
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return peak
