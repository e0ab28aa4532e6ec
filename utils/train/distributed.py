"""The only module that knows torch.distributed. A single process is `Distributed()`, where every
method is a no-op, so the same code runs with and without torchrun (or SLURM tasks)."""
import datetime
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist


POLL_EVERY = 20  # GPU steps between two collective checks for a stop request (a second or two of training)


@dataclass
class Distributed:
    rank: int = 0  # this process among all of them
    world: int = 1  # number of processes
    local_rank: int = 0  # this process among those of its machine: picks its GPU
    backend: Optional[str] = None  # "nccl" or "gloo" once the group is joined; None for one process

    @classmethod
    def from_env(cls, device):
        """Join the process group the launcher describes (NCCL for a GPU `device`, else Gloo), if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if str(device).startswith("cuda") and torch.cuda.is_available() else "gloo"
        device_id = None
        if backend == "nccl":  # the group is bound to this process's GPU: NCCL connects eagerly, to the right one
            torch.cuda.set_device(local_rank)
            device_id = torch.device("cuda", local_rank)
        if not dist.is_initialized():
            timeout = datetime.timedelta(minutes=int(os.environ.get("LM_DIST_TIMEOUT_MIN", "30")))
            dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout, device_id=device_id)
        return cls(rank, world, local_rank, backend)

    @property
    def is_main(self):
        """Rank 0 alone writes files and prints."""
        return self.rank == 0

    def device(self, device):
        """The device this process trains on: its own GPU under a launcher."""
        if device.type == "cuda" and self.world > 1:
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, module):  # DistributedDataParallel over module for several processes
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device = next(module.parameters()).device
        # No buffer of these models changes in training: broadcasting them every forward is wasted traffic.
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                       broadcast_buffers=False)

    def all_reduce_sum(self, tensor):  # in place
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag):
        """True on every process when `flag` is True on any: all stop at the same step."""
        if self.world == 1:
            return bool(flag)
        device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        return bool(self.all_reduce_sum(torch.tensor(float(flag), device=device)).item())

    def any_every(self, flag, step, every=POLL_EVERY):
        """any(flag), asked of NCCL only every `every` steps (False in between, on every process): the
        all-reduce's read waits for the device's queue. Gloo (no queue to drain) answers every step."""
        if self.backend == "nccl" and step % every:
            return False
        return self.any(flag)

    def gather(self, obj):  # [obj of rank 0, obj of rank 1, ...] on every process
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):  # rank 0's obj, on every process
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def describe(self):  # for provenance.json
        return {"world_size": self.world, "backend": self.backend, "rank": self.rank}

    def close(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = Distributed()
