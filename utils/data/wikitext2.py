"""The course's pre-tokenized Wikitext-2, cut into fixed-length training items."""
import os

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = ("train", "validation", "test")
BREAK_MODES = ("none", "lines", "complete")
DATA_HINT = (
    "wiki.{train,validation,test}.npz in the course's format (the project's data/ folder has "
    "Wikitext-2; utils.prepare_data makes them from your text)"
)


def load_split(root, split):
    """Return (tokens int64 (N,), sizes int64 (L,)) of `root/wiki.<split>.npz`."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    path = os.path.join(root, f"wiki.{split}.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Missing data file {path}: expected {DATA_HINT}.")
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in ("tokens", "sizes") if name in data.files}
    except (OSError, ValueError, EOFError) as err:  # not an .npz, truncated, a pickle
        raise ValueError(f"{path} is not a readable .npz ({type(err).__name__}): expected {DATA_HINT}.") from None
    for name in ("tokens", "sizes"):
        _check_ids(path, name, arrays.get(name))
    tokens, sizes = arrays["tokens"].astype(np.int64), arrays["sizes"].astype(np.int64)
    if sizes.sum() != len(tokens):
        raise ValueError(f"{path} is corrupt: sizes sum to {sizes.sum()} but there are {len(tokens)} tokens.")
    return tokens, sizes


def _check_ids(path, name, values):
    """ValueError unless `values` is a non-empty 1-d array of non-negative integers (token ids or line sizes)."""
    if values is None:
        raise ValueError(f"{path} has no '{name}' array: expected {DATA_HINT}.")
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{path}: '{name}' must be a non-empty 1-d array (got shape {values.shape}).")
    if not np.issubdtype(values.dtype, np.integer):  # floats would be truncated to other ids, NaN to garbage
        raise ValueError(f"{path}: '{name}' holds {values.dtype} values; it must hold integers (remake the file "
                         "with python -m utils.prepare_data).")
    if values.min() < 0:
        raise ValueError(f"{path}: '{name}' holds a negative value ({values.min()}); ids and sizes are >= 0.")


def _chunk_spans(start, stop, block):
    """Spans [s, e) of at most `block` tokens covering [start, stop), overlapping by one token."""
    starts = np.arange(start, max(stop - 1, start), block - 1)
    return [(s, min(s + block, stop)) for s in starts]


def _line_bounds(sizes):
    ends = np.cumsum(sizes)
    return list(zip((ends - sizes).tolist(), ends.tolist()))


def compute_spans(sizes, break_mode, max_length, min_length):
    """Item spans [start, end) into the token stream, each of at most max_length + 1 tokens.
    none:     the whole split is one stream, cut in blocks overlapping by one token.
    lines:    each line is cut the same way on its own; no item crosses a line.
    complete: whole lines are packed greedily into blocks; a line longer than a block is
              cut as in `lines` and packed alone.
    Items with fewer than min_length targets (min_length + 1 tokens) are dropped.
    """
    if break_mode not in BREAK_MODES:
        raise ValueError(f"Unknown break_mode {break_mode!r}: use one of {', '.join(BREAK_MODES)}.")
    block = max_length + 1
    if break_mode == "none":
        spans = _chunk_spans(0, int(sizes.sum()), block)
    elif break_mode == "lines":
        spans = [sp for s, e in _line_bounds(sizes) for sp in _chunk_spans(s, e, block)]
    else:
        spans, cur = [], None
        for s, e in _line_bounds(sizes):
            if cur is not None and e - cur[0] <= block:  # the line fits beside the block's lines
                cur = (cur[0], e)
                continue
            spans += [cur] if cur else []
            long = e - s > block
            spans += _chunk_spans(s, e, block) if long else []
            cur = None if long else (s, e)
        spans += [cur] if cur else []
    return [(s, e) for s, e in spans if e - s >= min_length + 1]


class Wikitext2(Dataset):
    """Items: `source`, `target` (T,) long and `mask` (T,) float (1 at real targets), padded to max_length."""

    def __init__(self, root, split="train", break_mode="none", max_length=256, min_length=1):
        if max_length < 1 or min_length < 1:
            raise ValueError("max_length and min_length must be >= 1.")
        tokens, sizes = load_split(root, split)
        self.root, self.split, self.break_mode = root, split, break_mode
        self.max_length, self.min_length = max_length, min_length
        self.tokens = torch.from_numpy(tokens)
        self.spans = compute_spans(sizes, break_mode, max_length, min_length)

    def __len__(self):
        return len(self.spans)

    def __getitem__(self, index):
        start, end = self.spans[index]
        chunk = self.tokens[start:end]
        n = len(chunk) - 1  # number of real targets
        source = torch.zeros(self.max_length, dtype=torch.long)
        target = torch.zeros(self.max_length, dtype=torch.long)
        mask = torch.zeros(self.max_length, dtype=torch.float)
        source[:n], target[:n], mask[:n] = chunk[:-1], chunk[1:], 1.0
        return {"source": source, "target": target, "mask": mask}

    def as_tensors(self):
        """All items stacked: dict of (N, T) tensors, for holding a split on the GPU."""
        items = [self[i] for i in range(len(self))]
        return {k: torch.stack([it[k] for it in items]) for k in ("source", "target", "mask")}

    def num_targets(self):
        """Number of real target tokens in the split (the perplexity denominator)."""
        return sum(e - s - 1 for s, e in self.spans)
