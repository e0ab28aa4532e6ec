"""Batches from a split held in memory (on the GPU when training there): no per-batch host
copies, no worker processes, and an order fixed by (seed, epoch) so a resumed run sees
exactly the batches an uninterrupted one would."""
import torch


class TensorBatches:
    """Iterable of dicts {"source", "target", "mask"}, each (B, T), over a Wikitext2 split."""

    def __init__(self, dataset, batch_size, shuffle=False, seed=0, device="cpu"):
        device = torch.device(device)
        stacked = dataset.as_tensors()  # dict of (N, T)
        pin = device.type == "cuda"
        self.tensors = {k: (v.pin_memory() if pin else v).to(device, non_blocking=pin) for k, v in stacked.items()}
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.num_items = len(dataset)

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
        order = self.order().to(self.tensors["source"].device)
        for start in range(0, self.num_items, self.batch_size):
            index = order[start : start + self.batch_size]
            yield {k: v.index_select(0, index) for k, v in self.tensors.items()}
