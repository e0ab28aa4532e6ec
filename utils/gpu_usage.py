"""GPU memory as the course notebook reads it (MB). Without CUDA nothing is measured: NaN, never 0."""
import torch


def get_gpu_memory_usage():
    """Memory PyTorch has allocated on the current CUDA device, in MB. Without CUDA: NaN, so
    the notebook's arithmetic still runs and a CPU run never reports 0 MB as if measured."""
    if not torch.cuda.is_available():
        return float("nan")
    return torch.cuda.memory_allocated() / 2**20


def peak_gpu_memory_mb(reset=False):
    """Peak allocated CUDA memory since the last reset, in MB; None without CUDA."""
    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**20
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return peak
