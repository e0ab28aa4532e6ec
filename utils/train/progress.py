"""Progress of one pass over a split: which epoch and step, the batch loss or the perplexity so far,
tokens per second and the time left, every `every` steps (or on a tqdm bar).

    [train] epoch 1/10 step 120/576 | batch loss 6.812 | epoch ppl so far 1,234 | 640 tokens/s | ETA 11m20s

"batch loss" is the course loss of the last batch (what the optimizer sees); "ppl so far" is the
exact token-weighted perplexity of the pass up to here. Reading them costs one host sync, so
the loop asks only when a line is due.
"""
import math
import time


def duration(seconds):
    """12s, 3m05s, 2h14m."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def perplexity_text(value):
    """Readable at any size: 1,234.5 but 3.2e+22 (never 20 digits)."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.1f}" if value < 1e6 else f"{value:.2e}"


class Reporter:
    """For one pass: `due(step)` says whether a line is wanted, `show(...)` prints it."""

    def __init__(self, mode, total_steps, epoch=None, epochs=None, every=10, bar=False, start_step=0, enabled=True):
        self.mode, self.total, self.epoch, self.epochs = mode, total_steps, epoch, epochs
        self.every, self.enabled, self.start_step = max(int(every), 1), enabled, start_step
        self.started = time.perf_counter()
        self.bar = None
        if bar and enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=self._where(), leave=False)
            self.every = 1

    def _where(self):
        epoch = f" epoch {self.epoch + 1}/{self.epochs}" if self.epoch is not None and self.epochs else ""
        return f"[{self.mode}]{epoch}"

    def due(self, step):
        return self.enabled and (step % self.every == 0 or step == self.total)

    def show(self, step, totals, loss=None):
        nll_sum, tokens = totals.sums[:2].tolist()
        elapsed = time.perf_counter() - self.started
        done = step - self.start_step
        rate = tokens / max(totals.seconds(), 1e-9)
        eta = elapsed / done * (self.total - step) if done > 0 and self.total else float("nan")
        ppl = perplexity_text(math.exp(min(nll_sum / max(tokens, 1.0), 700.0)))
        fields = ([f"batch loss {float(loss.detach()):.3f}", f"epoch ppl so far {ppl}"] if loss is not None
                  else [f"ppl so far {ppl}"]) + [f"{rate:,.0f} tokens/s", f"ETA {duration(eta)}"]
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(" | ".join(fields))
            return
        print(f"{self._where()} step {step}/{self.total} | " + " | ".join(fields), flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
