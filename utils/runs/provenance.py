"""What a run was: code version, software, hardware, processes, parameter counts, embeddings, data."""
import functools
import os
import platform
import subprocess

import torch

from utils.data.embeddings import file_sha256
from utils.torch_utils import cpu_model_name


def data_identity(splits):
    """{split: {"path", "sha256"}} of the wiki.<split>.npz files a run reads (part of its identity)."""
    identity = {}
    for name, dataset in splits.items():
        path = os.path.abspath(os.path.join(dataset.root, f"wiki.{name}.npz"))
        version = os.stat(path)
        identity[name] = {"path": path, "sha256": _sha256(path, version.st_ino, version.st_size, version.st_mtime_ns)}
    return identity


@functools.lru_cache(maxsize=None)
def _sha256(path, inode, size, mtime_ns):
    """Once per process and version of a file (a few MB each): a file replaced or rewritten is hashed again."""
    return file_sha256(path)


def git_commit():
    """The project's commit (with '+dirty' when the tree has changes), or 'unknown'."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def device_name(device):
    """The GPU's or the CPU's model name (e.g. "NVIDIA H200", "AMD EPYC 9B14")."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model_name()


def count_parameters(model):
    """(learnable, frozen) parameter counts; the tied matrix counts once."""
    learnable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return learnable, frozen


def provenance(settings, model, device, precision, embeddings, dist, devices):
    """embeddings: describe_embeddings()'s dict; devices: every process's device_name, by rank."""
    learnable, frozen = count_parameters(model)
    return {
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device.type,
        "device_name": device_name(device),
        "devices": devices,
        "cpu_threads": torch.get_num_threads(),
        **precision.describe(model),  # precision, precision_reason, tf32, recurrence_precision
        "init": settings.init,  # course: the constructors' own weights; stable: the kit's starts
        "params_learnable": learnable,
        "params_frozen": frozen,
        "embeddings": embeddings,
        "max_batches": settings.max_batches,
        "distributed": dist.describe(),
        "memory_note": None if device.type == "cuda" else "GPU memory not measured on CPU (reported as NaN/null)",
    }
