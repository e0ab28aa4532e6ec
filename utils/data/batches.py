"""Batches from a split held in memory (on the GPU when training there): no host copies, no
workers, an order fixed by (seed, epoch), so a resumed run sees the same batches from any step.

Data parallel: every process draws the same global batch and keeps its contiguous part (`rank` of
`world`); a short last batch is split evenly, the shorter parts padded with empty rows (mask 0),
so all run the same shapes. `global_rows` (real sequences in the global batch) lets the loss
equal the single-process one.
"""
import torch


class TensorBatches:
    """Iterable of dicts {"source", "target", "mask"} (B, T), "global_rows" (0-d) over a Wikitext2 split."""

    def __init__(self, dataset, batch_size, shuffle=False, seed=0, device="cpu", rank=0, world=1):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not divide among {world} processes.")
        device = torch.device(device)
        stacked = dataset.as_tensors()  # dict of (N, T)
        pin = device.type == "cuda"
        self.tensors = {k: (v.pin_memory() if pin else v).to(device, non_blocking=pin) for k, v in stacked.items()}
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.rank, self.world = rank, world
        self.num_items = len(dataset)
        # Both row counts made once on the device: a tensor from a host number each step would sync.
        sizes = {min(batch_size, self.num_items), self.num_items % batch_size or batch_size}
        self.rows = {n: torch.tensor(float(n), dtype=torch.float64).to(device) for n in sizes}

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return -(-self.num_items // self.batch_size)

    def order(self):
        if not self.shuffle:
            return torch.arange(self.num_items)
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, start_step=0):
        """The epoch's batches from global batch `start_step` on (earlier ones are never built)."""
        device = self.tensors["source"].device
        order = self.order()
        if device.type == "cuda":  # from pinned memory the copy is queued, not waited for
            order = order.pin_memory().to(device, non_blocking=True)
        for first in range(start_step * self.batch_size, self.num_items, self.batch_size):
            index = order[first : first + self.batch_size]
            yield self._shard(index)

    def _shard(self, index):
        rows = len(index)
        batch = {"global_rows": self.rows[rows]}
        if self.world == 1:
            return dict(batch, **{k: v.index_select(0, index) for k, v in self.tensors.items()})
        per_rank = -(-rows // self.world)
        mine = index[self.rank * per_rank : (self.rank + 1) * per_rank]
        for key, table in self.tensors.items():
            part = table.index_select(0, mine)  # (<= per_rank, T)
            padding = part.new_zeros((per_rank - len(mine), part.shape[1]))
            batch[key] = torch.cat([part, padding]) if len(padding) else part  # (per_rank, T)
        return batch
