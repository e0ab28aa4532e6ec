"""One pass of training or evaluation over a split, with exact token-weighted perplexity.

Perplexity is exp(total NLL of all real target tokens / their number) over the whole split, so
it depends neither on the batch size nor on padding nor on the number of processes (the sums
are all-reduced in float64). The optimizer minimises the course's loss (each sequence's mean
NLL, then the batch mean) computed by the model's TokenNLL forward, so a DistributedDataParallel
wrapper sees every forward pass. Everything the loop needs comes in as an argument: the NLL
module, the batches, the precision, the scaler, a step cap, a word table, a progress reporter,
and a hook the runner uses for mid-epoch checkpoints and stop requests.
"""
import math
import time
from typing import NamedTuple

import torch

from utils.data.words import count_words, word_level_perplexity
from utils.models.losses import course_loss
from utils.torch_utils import to_device
from utils.train.distributed import SINGLE
from utils.train.precision import StallWatch, TrainingStalled


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or training stalled (`reason`); carries the epoch and step
    where it was found."""

    def __init__(self, epoch, step, reason=None):
        # epoch and step are 0-based in the program and counted from 1 in what the user reads
        where = f"epoch {epoch + 1}, step {step + 1}"
        super().__init__(f"Training stalled at {where}: {reason}" if reason else
                         f"Loss became non-finite at {where}: lower --lr or try another optimizer.")
        self.epoch, self.step = epoch, step


class EpochFigures(NamedTuple):
    loss: float  # mean NLL per real target token
    ppl: float  # exp(loss): the split's exact token-level perplexity
    seconds: float  # wall-clock of the pass, time before a resume included


class EpochResult(EpochFigures):
    """(loss, ppl, seconds), named and unpacked as the course notebook's tuple, with the counts
    behind it as attributes: nll_sum, tokens, words, word_perplexity, tokens_per_second."""

    def __new__(cls, nll_sum, tokens, seconds, words=None):
        mean = nll_sum / max(tokens, 1)
        self = super().__new__(cls, mean, math.exp(min(mean, 700.0)), seconds)
        self.nll_sum, self.tokens, self.words = nll_sum, tokens, words
        self.tokens_per_second = tokens / seconds if seconds > 0 else float("nan")
        self.word_perplexity = word_level_perplexity(nll_sum, words) if words else None
        return self


class Totals:
    """Running sums of one pass, kept on the device so that a step never waits for the host."""

    def __init__(self, device, nll_sum=0.0, tokens=0.0, words=0.0, seconds=0.0):
        sums = torch.tensor([nll_sum, tokens, words], dtype=torch.float64)
        self.sums = sums.to(device)  # (3,): NLL, real targets, words
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step
        self.seconds_before, self.start, self.stopped = seconds, time.perf_counter(), None

    def add(self, nll, mask, step, loss=None, words=None):
        with torch.no_grad():
            self.sums[0] += (nll.detach() * mask).sum()
            self.sums[1] += mask.sum()
            if words is not None:
                self.sums[2] += words
            if loss is not None:
                self.bad_step = torch.where((self.bad_step < 0) & ~torch.isfinite(loss), step, self.bad_step)

    def seconds(self):
        """Wall-clock of the pass, time before a resume included; frozen once result() is taken."""
        return self.seconds_before + (self.stopped or time.perf_counter()) - self.start

    def check_finite(self, epoch):
        """Raise TrainingDiverged if a step's loss was not finite (one host sync)."""
        step = int(self.bad_step.item())
        if step >= 0:
            raise TrainingDiverged(epoch, step)

    def snapshot(self):
        """This process's sums and time so far, as floats: what a mid-epoch checkpoint keeps."""
        nll_sum, tokens, words = self.sums.tolist()
        return {"nll_sum": nll_sum, "tokens": tokens, "words": words, "seconds": self.seconds()}

    def result(self, dist=SINGLE, with_words=False):
        """The split's EpochResult, summed over processes. The clock stops once the device has
        finished the queued work (CUDA runs asynchronously: before that, time would be missing)."""
        if self.stopped is None:
            synchronize(self.sums.device)
            self.stopped = time.perf_counter()
        nll_sum, tokens, words = dist.all_reduce_sum(self.sums.clone()).tolist()
        return EpochResult(nll_sum, int(tokens), self.seconds(), int(words) if with_words else None)


def synchronize(device):
    """Wait for the device's queued work (CUDA); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_loss(nll, batch, world=1):
    """The course's loss of a global batch from this process's part of it. With one process it is
    course_loss itself. With `world` processes each returns its sequences' summed means times
    world / global_rows: DDP averages the gradients over processes, which gives exactly the
    gradient of the mean over the whole global batch (padding rows, mask 0, add nothing)."""
    if world == 1:
        return course_loss(nll, batch["mask"])
    mask = batch["mask"]
    per_sequence = (nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B,)
    scale = (world / batch["global_rows"]).to(per_sequence.dtype)  # exact in float64 models
    return per_sequence.sum() * scale


def train_step(nll_model, batch, optimizer, precision, scaler=None, world=1):
    """One optimisation step on a batch already on the model's device. Returns (loss, nll (B, T)),
    not synced with the host."""
    with precision.autocast():
        nll = nll_model(batch["source"], batch["target"])
    loss = batch_loss(nll, batch, world)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None or not scaler.is_enabled():
        loss.backward()
        optimizer.step()
        return loss, nll
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, nll


def _device_of(module):
    return next(module.parameters()).device


def _capped(batches, start_step, max_steps):
    """(step, batch) pairs from start_step, stopping at max_steps (None: no cap)."""
    for step, batch in enumerate(batches, start_step):
        if max_steps is not None and step >= max_steps:
            return
        yield step, batch


def train_epoch(nll_model, batches, optimizer, precision, scaler=None, *, epoch=0, start_step=0, max_steps=None,
                totals=None, reporter=None, hook=None, dist=SINGLE):
    """Train over `batches` (already positioned at start_step); returns the epoch's EpochResult.
    hook(steps_done, totals), when given, runs after every step (checkpoints, stop requests)."""
    nll_model.train()
    device = _device_of(nll_model)
    totals = totals or Totals(device)
    watch, done = StallWatch(device), start_step
    for step, batch in _capped(batches, start_step, max_steps):
        batch = to_device(batch, device, non_blocking=True)
        loss, nll = train_step(nll_model, batch, optimizer, precision, scaler, dist.world)
        totals.add(nll, batch["mask"], step, loss=loss)
        watch.add(loss, scaler)
        done = step + 1
        if reporter is not None and reporter.due(step + 1):
            if reporter.reads(step + 1):  # host syncs only on the steps whose line reads values
                _check(totals, watch, epoch, step + 1)
            reporter.show(step + 1, totals, loss)
        if hook is not None:
            hook(step + 1, totals)
    _check(totals, watch, epoch, done)
    return totals.result(dist)


def _check(totals, watch, epoch, step):
    """TrainingDiverged if a loss was non-finite or training stalled (host syncs)."""
    totals.check_finite(epoch)
    try:
        watch.check()
    except TrainingStalled as err:
        raise TrainingDiverged(epoch, step - 1, str(err)) from None  # step: steps done; the error takes its index


@torch.no_grad()
def evaluate_split(nll_model, batches, precision, *, word_table=None, max_steps=None, reporter=None, hook=None,
                   dist=SINGLE):
    """Exact perplexity over the split (or its first max_steps batches), summed over processes."""
    nll_model.eval()
    device = _device_of(nll_model)
    totals = Totals(device)
    for step, batch in _capped(batches, 0, max_steps):
        batch = to_device(batch, device, non_blocking=True)
        with precision.autocast():
            nll = nll_model(batch["source"], batch["target"])
        words = count_words(batch["target"], batch["mask"], word_table) if word_table is not None else None
        totals.add(nll, batch["mask"], step, words=words)
        if reporter is not None and reporter.due(step + 1):
            reporter.show(step + 1, totals)
        if hook is not None:
            hook(step + 1, totals)
    return totals.result(dist, with_words=word_table is not None)
