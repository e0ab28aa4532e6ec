"""One pass over a split: `for step, batch in Pass(...)` hands out the batches, the loop hands each
step's NLL to `add` and takes `result()`. Perplexity is exact: exp(total NLL / real target tokens) over
the whole split, whatever the batch size, padding or processes (sums all-reduced in float64)."""
import math
import time
from typing import NamedTuple

import torch

from utils.data.words import count_words, word_level_perplexity
from utils.models.losses import course_loss
from utils.runs import schema
from utils.torch_utils import to_device
from utils.train.progress import Reporter
from utils.train.watch import StallWatch


def batch_loss(nll, batch, world=1):
    """The course's loss of a global batch from this process's part: its sequences' summed means times
    world / global_rows, so DDP's average over processes is exactly the gradient of the global batch's
    mean (padding rows, mask 0, add nothing)."""
    if world == 1:
        return course_loss(nll, batch["mask"])
    mask = batch["mask"]
    per_sequence = (nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B,)
    scale = (world / batch["global_rows"]).to(per_sequence.dtype)  # exact in float64 models
    return per_sequence.sum() * scale


class EpochFigures(NamedTuple):
    loss: float  # mean NLL per real target token
    ppl: float  # exp(loss): the split's exact token-level perplexity
    seconds: float  # wall-clock of the pass, time before a resume included


class EpochResult(EpochFigures):
    """(loss, ppl, seconds) as the course notebook's tuple; `values`: every quantity by schema's names."""

    def __new__(cls, nll_sum, tokens, seconds, words=None, **sums):
        mean = nll_sum / max(tokens, 1)
        self = super().__new__(cls, mean, math.exp(min(mean, 700.0)), seconds)
        self.nll_sum, self.tokens, self.words = nll_sum, int(tokens), None if words is None else int(words)
        self.tokens_per_second = tokens / seconds if seconds > 0 else float("nan")
        self.word_perplexity = word_level_perplexity(nll_sum, words) if words else None
        self.values = {"loss": self.loss, "ppl": self.ppl, "seconds": seconds, "tokens": self.tokens,
                       "tokens_per_s": self.tokens_per_second, "words": self.words, "word_ppl": self.word_perplexity}
        steps = max(sums.pop("steps", 0.0), 1.0)
        self.values.update({name: value / steps for name, value in sums.items()})  # step_mean metrics
        return self


def steps_of(batches, cap):
    """Steps of a pass over `batches` with at most `cap` of them (None: all)."""
    return len(batches) if cap is None else min(len(batches), cap)


class Pass:
    """One pass of `mode` ("train", "valid", "val" or "test") over `batches` for `run`."""

    def __init__(self, run, mode, epoch, batches):
        s, self.run, self.mode, self.epoch = run.settings, run, mode, epoch
        self.device = run.device
        self.training = mode == "train"
        self.total = steps_of(batches, s.max_batches)
        at = run.position
        self.start = at.step if self.training and at.epoch == epoch else 0
        partial = at.partial[run.dist.rank] if self.start and at.partial else {}
        self.seconds_before = partial.get("seconds", 0.0)
        zero = torch.zeros((), dtype=torch.float64, device=self.device)  # made on the device: no host copy
        self.sums = {name: zero + partial.get(name, 0.0) for name in {*schema.PASS_SUMS, *partial} - {"seconds"}}
        self.watch = StallWatch(self.device) if self.training else None
        self.words = run.word_table is not None and not self.training
        self.reporter = Reporter(mode, self.total, epoch, s.epochs, s.print_every, s.progress_bar, self.start,
                                 enabled=run.dist.is_main and s.print_every > 0, clock=run.clock)  # 0: silent
        self.batches, self.began, self.stopped, self.loss = batches, time.perf_counter(), None, None
        if self.training:
            run.train_pass = self

    def __iter__(self):
        batches = self.batches.iterate(self.start) if self.start else self.batches
        for step, batch in enumerate(batches, self.start):
            if step >= self.total:
                break
            self.step = step
            yield step, to_device(batch, self.device, non_blocking=True)
            done = step + 1
            if self.reporter.due(done):
                if self.training and self.reporter.reads(done):  # host syncs only where a line reads values
                    self.check(done)
                self.reporter.show(done, self, self.loss)
            self.run.after_step(self, done)
        self.reporter.close()
        if self.training:
            self.check(self.total)

    @torch.no_grad()
    def add(self, nll, batch, loss=None, **quantities):
        """A step's per-token NLL (B, T) on `batch`; in training its loss and any step_mean metric by name."""
        mask = batch["mask"]
        self.sums["nll_sum"] += (nll.detach() * mask).sum()
        self.sums["tokens"] += mask.sum()
        self.sums["steps"] += 1
        if self.words:
            self.sums["words"] += count_words(batch["target"], mask, self.run.word_table)
        for name, value in quantities.items():
            if name not in self.sums:
                self.sums[name] = torch.zeros((), dtype=torch.float64, device=self.device)
            self.sums[name] += value.detach() if torch.is_tensor(value) else value
        if loss is not None:
            self.loss = loss
            self.watch.add(loss, self.step, self.run.scaler)

    def seconds(self):
        """Wall-clock of the pass, time before a resume included; frozen once result() is taken."""
        return self.seconds_before + (self.stopped or time.perf_counter()) - self.began

    def check(self, done):
        """TrainingDiverged when a loss was not finite or training stalled (host syncs)."""
        self.watch.check(self.epoch, done)

    def snapshot(self):
        """This process's sums and time so far, as floats: what a mid-epoch checkpoint keeps."""
        return dict({k: float(v) for k, v in self.sums.items()}, seconds=self.seconds())

    def result(self):
        """The pass's EpochResult, summed over processes; the clock waits for CUDA's queued work."""
        if self.stopped is None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.stopped = time.perf_counter()
        names = sorted(self.sums)  # every process holds the same names
        summed = self.run.dist.all_reduce_sum(torch.stack([self.sums[n] for n in names])).tolist()
        sums = dict(zip(names, summed))
        words = sums.pop("words")
        return EpochResult(sums.pop("nll_sum"), sums.pop("tokens"), self.seconds(), words if self.words else None,
                           **sums)
