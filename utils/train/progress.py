"""Progress lines of a pass (README.md, "What the console says"), the plan and the whole run's
estimate. Reading the loss costs one host sync, so the loop asks only when a line is due; RunClock
times between lines printed anyway (never a device read of its own)."""
import math
import time
from dataclasses import dataclass

LONG_CPU_RUN = 3600.0  # seconds: a CPU run estimated longer gets the hint


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


@dataclass(frozen=True)
class Schedule:
    """A run's work in steps (max_batches applied): the plan line and the whole run's time left."""
    epochs: int  # passes over the training split
    train: int  # training steps per epoch
    valid: int  # validation steps per epoch
    test: int  # test steps once training is over (0: none)
    batch_size: int  # sequences per step (the global batch)

    def left(self, mode, epoch, step):
        """(training steps, evaluation steps) still to run after `step` steps of `mode` in `epoch`."""
        if mode == "test":
            return 0, self.test - step
        later = self.epochs - epoch - 1  # whole epochs after this one
        if mode == "train":
            return self.train - step + later * self.train, (later + 1) * self.valid + self.test
        return later * self.train, self.valid - step + later * self.valid + self.test


def plan_text(schedule, device, precision, start_epoch=0):
    s = schedule
    where = f", continuing at epoch {start_epoch + 1}" if start_epoch else ""
    return (f"plan: {s.epochs} epoch(s) x {s.train:,} training steps of {s.batch_size} sequences (+ {s.valid:,} "
            f"validation steps each, {s.test:,} test steps at the end) on {device}, {precision}{where}; "
            "an estimate of the whole run follows the first steps.")


class RunClock:
    """Time left in the whole run, from wall time per step measured on the lines a run prints."""

    EVAL_COST = 1 / 3  # an evaluation step (forward only) per training step, until one is measured
    FIRST = 3  # the estimate comes at this step of the first training pass (step 1 pays one-off costs)

    def __init__(self, schedule, device_type, timer=time.perf_counter):
        self.schedule, self.device_type, self.timer = schedule, device_type, timer
        self.per_step = {}  # "train" / "eval" -> seconds per step, the latest measure
        self.estimated = False

    def wants(self, mode, done):
        """Whether the first training pass should print after `done` steps (for the estimate)."""
        return mode == "train" and not self.estimated and done in (1, self.FIRST)

    def measure(self, mode, seconds_per_step):
        self.per_step["train" if mode == "train" else "eval"] = seconds_per_step

    def seconds_left(self, mode, epoch, step):
        train = self.per_step.get("train")
        if train is None:
            return float("nan")
        evaluation = self.per_step.get("eval", train * self.EVAL_COST)
        train_steps, eval_steps = self.schedule.left(mode, epoch, step)
        return train_steps * train + eval_steps * evaluation

    def estimate(self, mode, epoch, step, done, total):
        """The whole run's estimate, once the first training pass has done FIRST (or all) steps; else None."""
        if self.estimated or mode != "train" or done < min(self.FIRST, total) or "train" not in self.per_step:
            return None
        self.estimated = True
        left = self.seconds_left(mode, epoch, step)
        text = (f"estimate: about {duration(left)} for the rest of the run ({self.schedule.epochs} epoch(s) at "
                f"{self.per_step['train']:.3g}s per training step, evaluation included)")
        if self.device_type == "cpu" and left > LONG_CPU_RUN:
            text += ("\nThat is hours on a CPU: --smoke checks the whole path in about a minute, --max_batches N "
                     "caps the steps per split per epoch, and a GPU (--device cuda) is much faster.")
        return text


class Reporter:
    """One pass's lines: `due(step)`, then `show(...)`; with a RunClock, the whole run's time left too."""

    def __init__(self, mode, total_steps, epoch=None, epochs=None, every=10, bar=False, start_step=0, enabled=True,
                 clock=None):
        self.mode, self.total, self.epoch, self.epochs = mode, total_steps, epoch, epochs
        self.every, self.enabled, self.start_step = max(int(every), 1), enabled, start_step
        self.clock, self.mark = clock, None  # mark: (time, steps done) at this pass's first line
        self.timer = time.perf_counter if clock is None else clock.timer
        self.started = self.timer()
        self.bar = None
        if bar and enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=self._where(), leave=False)

    def _where(self):
        epoch = f" epoch {self.epoch + 1}/{self.epochs}" if self.epoch is not None and self.epochs else ""
        return f"[{self.mode}]{epoch}"

    def due(self, step):
        """Whether show(step) is wanted: every step with a bar (it moves without reading the device)."""
        return self.enabled and (self.bar is not None or self.reads(step))

    def reads(self, step):
        """Steps whose line reads the device (a host sync): every `every`, the last, the estimate's."""
        wanted = self.clock is not None and self.clock.wants(self.mode, step - self.start_step)
        return wanted or step % self.every == 0 or step == self.total

    def _per_step(self, now, done):
        """Seconds per step from this pass's first line on (the first step pays allocation, warm-up)."""
        if self.mark is None:
            self.mark = (now, done)
        mark_time, mark_done = self.mark
        if done > mark_done:
            return (now - mark_time) / (done - mark_done)
        return (now - self.started) / done if done > 0 else float("nan")

    def _eta(self, step, done):
        """The split's time left, and the whole run's (after a comma) when a clock is kept."""
        per_step = self._per_step(self.timer(), done)
        eta = per_step * (self.total - step) if self.total else float("nan")
        if self.clock is None:
            return f"ETA {duration(eta)}", None
        if not (self.mode == "train" and done == 1 and self.total > 1):  # one step alone: warm-up, not a rate
            self.clock.measure(self.mode, per_step)
        estimate = self.clock.estimate(self.mode, self.epoch, step, done, self.total)
        return f"ETA {duration(eta)}, run {duration(self.clock.seconds_left(self.mode, self.epoch, step))}", estimate

    def show(self, step, totals, loss=None):
        if self.bar is not None and not self.reads(step):
            self.bar.update(step - self.bar.n)  # no values read: quiet steps never wait for the device
            return
        import torch  # here: importing this module imports no torch

        nll_sum, tokens = torch.stack([totals.sums["nll_sum"], totals.sums["tokens"]]).tolist()  # one host sync
        eta, estimate = self._eta(step, step - self.start_step)
        rate = tokens / max(totals.seconds(), 1e-9)
        ppl = perplexity_text(math.exp(min(nll_sum / max(tokens, 1.0), 700.0)))
        fields = ([f"batch loss {float(loss.detach()):.3f}", f"epoch ppl so far {ppl}"] if loss is not None
                  else [f"ppl so far {ppl}"]) + [f"{rate:,.0f} tokens/s", eta]
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(" | ".join(fields))
        else:
            print(f"{self._where()} step {step}/{self.total} | " + " | ".join(fields), flush=True)
        if estimate:
            print(estimate, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
