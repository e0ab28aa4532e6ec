"""What a run was: code version, software, hardware, parameter counts and embeddings used."""
import hashlib
import os
import platform

import torch

from utils.run_args import get
from utils.run_logs import git_commit


def sha256_of(path, block=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_embeddings_file(path):
    """Path, sha256 and how the file was made (the builder's sidecar, when there is one)."""
    try:
        from utils.build_embeddings import describe_embeddings
    except ImportError:
        return {"path": os.path.abspath(path), "sha256": sha256_of(path), "kind": "unknown"}
    return describe_embeddings(path)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def count_parameters(model):
    """(learnable, frozen) parameter counts; the tied matrix counts once."""
    learnable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return learnable, frozen


def provenance(args, model, device, precision):
    learnable, frozen = count_parameters(model)
    return {
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device.type,
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "precision": precision,
        "params_learnable": learnable,
        "params_frozen": frozen,
        "embeddings": describe_embeddings_file(args.embeddings),
        "max_batches": get(args, "max_batches"),
        "memory_note": None if device.type == "cuda" else "GPU memory not measured on CPU (reported as NaN/null)",
    }
