"""Count the calls that make the host wait for the device, on any device: host reads of a tensor
(.item, .tolist, .cpu, .numpy, float(), int(), bool(), an index) and tensors from host values. On
CUDA, set_sync_debug_mode("error") catches the rest.
"""
import contextlib
import traceback
from unittest import mock

import torch

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
MAKERS = ("tensor", "as_tensor")


class SyncCounter:
    """calls: how many so far; where: (name, the caller's file:line) of each, for the message."""

    def __init__(self):
        self.calls, self.where = 0, []
        self._depth = 0  # calls made from inside a counted call (tolist calling item...) count once

    def wrap(self, name, original):
        counter = self

        def counted(*args, **kwargs):
            if counter._depth == 0:
                counter.calls += 1
                caller = traceback.extract_stack(limit=3)[0]
                counter.where.append(f"{name} at {caller.filename}:{caller.lineno}")
            counter._depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                counter._depth -= 1

        return counted


@contextlib.contextmanager
def count_host_syncs():
    """Within the block, every would-synchronise call is counted in the yielded SyncCounter."""
    counter = SyncCounter()
    with contextlib.ExitStack() as patches:  # mock restores each (or removes it where inherited)
        for owner, names in ((torch.Tensor, READS), (torch, MAKERS)):
            for name in names:
                patches.enter_context(mock.patch.object(owner, name, counter.wrap(name, getattr(owner, name))))
        yield counter


@contextlib.contextmanager
def cuda_branches():
    """Run, on any device, the CUDA branch where the CPU's only adds host reads (the ids' range check)."""
    def on_device(ids, size, what):  # the CUDA branch of utils.data.embeddings._check_range
        torch._assert_async(((ids >= 0) & (ids < size)).all(), f"{what} out of range [0, {size})")

    with mock.patch("utils.data.embeddings._check_range", on_device):
        yield


def set_sync_debug(device, mode):
    if torch.device(device).type == "cuda":
        torch.cuda.set_sync_debug_mode(mode)


@contextlib.contextmanager
def cuda_sync_errors(device):
    """On CUDA, make any synchronisation inside the block an error; elsewhere, nothing."""
    set_sync_debug(device, "error")
    try:
        yield
    finally:
        set_sync_debug(device, "default")
