"""One epoch of training or evaluation, with exact token-weighted perplexity.

Perplexity is exp(total NLL of all real target tokens / their number) over the whole split,
so it does not depend on the batch size or on how the last batch is padded. The optimizer
still minimises the course's `model.loss` (each sequence's mean NLL, then the batch mean),
computed by the exact chunked loss in utils.losses rather than from (B, T, V) log-probabilities.
"""
import math
import time

import torch

from utils.losses import course_loss, tied_token_nll
from utils.precision import autocast, make_scaler
from utils.run_args import get
from utils.torch_utils import to_device
from utils.words import count_words, word_level_perplexity


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; carries the epoch and step where it first did."""

    def __init__(self, epoch, step):
        super().__init__(f"Loss became non-finite at epoch {epoch}, step {step}: lower --lr or try another optimizer.")
        self.epoch, self.step = epoch, step


class EpochResult(tuple):
    """(mean_nll, perplexity, wall_seconds), as the notebook unpacks it, with the counts
    behind it as attributes: tokens, words, nll_sum, word_perplexity, tokens_per_second."""

    def __new__(cls, nll_sum, tokens, seconds, words=None):
        mean = nll_sum / max(tokens, 1)
        self = super().__new__(cls, (mean, math.exp(min(mean, 700.0)), seconds))
        self.nll_sum, self.tokens, self.words = nll_sum, tokens, words
        self.tokens_per_second = tokens / seconds if seconds > 0 else float("nan")
        self.word_perplexity = word_level_perplexity(nll_sum, words) if words else None
        return self


def token_nll(model, batch):
    """Per-token NLL (B, T) of batch["target"] given batch["source"], float32."""
    source, target = batch["source"], batch["target"]
    if hasattr(model, "initial_states"):
        features, _ = model.features(source, model.initial_states(source.shape[0], source.device))
    else:
        features = model.features(source)
    B, T, E = features.shape
    nll = tied_token_nll(features.reshape(B * T, E), model.tied_weight, target.reshape(B * T))  # (B*T,)
    return nll.view(B, T)


def train_step(model, batch, optimizer, precision="fp32", scaler=None):
    """One optimisation step on a batch already on the model's device: the course's loss by
    the exact chunked path, backward, optimizer step. Returns (loss, nll (B, T)), not synced."""
    device = _device_of(model)
    with autocast(precision, device):
        nll = token_nll(model, batch)
    loss = course_loss(nll, batch["mask"])
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return loss, nll
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, nll


def _device_of(model):
    return next(model.parameters()).device


def _limited(dataloader, args):
    cap = get(args, "max_batches")
    for step, batch in enumerate(dataloader):
        if cap is not None and step >= cap:
            return
        yield step, batch


def _progress(dataloader, args, desc):
    """tqdm bar when args.progress_bar, else the plain iterable."""
    if not get(args, "progress_bar"):
        return None
    from tqdm import tqdm

    cap = get(args, "max_batches")
    total = len(dataloader) if hasattr(dataloader, "__len__") else None
    return tqdm(total=min(total, cap) if (cap and total) else (cap or total), desc=desc, leave=False)


def _report(bar, step, args, loss_value, tokens, start, mode):
    rate = tokens / max(time.perf_counter() - start, 1e-9)
    if bar is not None:
        bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate:,.0f}")
    else:
        print(f"[{mode}] step {step}: loss {loss_value:.4f}, {rate:,.0f} tokens/s", flush=True)


def train(epoch, model, dataloader, optimizer, args):
    """One epoch; returns EpochResult (mean NLL per token, perplexity, seconds)."""
    model.train()
    device, precision = _device_of(model), getattr(args, "_precision", "fp32")
    scaler = getattr(args, "_scaler", None) or make_scaler(precision, device)
    print_every = max(int(get(args, "print_every") or 1), 1)
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    tokens = torch.zeros((), dtype=torch.float64, device=device)
    bad_step = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step, tracked on device
    bar, start = _progress(dataloader, args, f"train {epoch}"), time.perf_counter()
    for step, batch in _limited(dataloader, args):
        batch = to_device(batch, device, non_blocking=True)
        loss, nll = train_step(model, batch, optimizer, precision, scaler)
        with torch.no_grad():
            nll_sum += (nll.detach() * batch["mask"]).sum()
            tokens += batch["mask"].sum()
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), step, bad_step)
        if bar is not None:
            bar.update(1)
        if (step + 1) % print_every == 0:
            _check_finite(bad_step, epoch)  # host sync only here, at print time
            _report(bar, step + 1, args, loss.item(), tokens.item(), start, "train")
    _check_finite(bad_step, epoch)
    if bar is not None:
        bar.close()
    return EpochResult(nll_sum.item(), int(tokens.item()), time.perf_counter() - start)


def _check_finite(bad_step, epoch):
    step = int(bad_step.item())
    if step >= 0:
        raise TrainingDiverged(epoch, step)


@torch.no_grad()
def evaluate(epoch, model, dataloader, args, mode="val"):
    """Exact perplexity over the split (or its first max_batches batches); returns EpochResult."""
    model.eval()
    device, precision = _device_of(model), getattr(args, "_precision", "fp32")
    word_table = getattr(args, "_word_table", None)
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    tokens = torch.zeros((), dtype=torch.float64, device=device)
    words = torch.zeros((), dtype=torch.float64, device=device)
    bar, start = _progress(dataloader, args, f"{mode} {epoch}"), time.perf_counter()
    for step, batch in _limited(dataloader, args):
        batch = to_device(batch, device, non_blocking=True)
        with autocast(precision, device):
            nll = token_nll(model, batch)
        nll_sum += (nll * batch["mask"]).sum()
        tokens += batch["mask"].sum()
        if word_table is not None:
            words += count_words(batch["target"], batch["mask"], word_table)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    n_words = int(words.item()) if word_table is not None else None
    return EpochResult(nll_sum.item(), int(tokens.item()), time.perf_counter() - start, n_words)
