"""The run folder's format, defined once: file names, record keys and statuses, imported by writer
(utils.runs.run_dir, save_logs) and reader (utils.report.read) alike. Imports nothing heavy."""
from dataclasses import dataclass
from typing import Optional

# Files of a run folder.
ARGS = "args.json"  # the run's settings, written once when the run starts
STATUS = "status.json"  # {"status", "epoch" (0-based), "epochs", "step", "message"}: see STATUSES
METRICS = "metrics.jsonl"  # one EPOCH_KEYS record per finished epoch
TEST_METRICS = "test_metrics.json"  # TEST_KEYS, once the run completed
PROVENANCE = "provenance.json"  # code, software, hardware, embeddings of the run
CHECKPOINT = "checkpoint.pt"  # what is learned + optimizer + position in the run (utils.runs.checkpoint)
SAMPLES = "samples.json"  # optional generated text, shown by the report
MARKER = ".run-folder"  # written first: the kit wrote this folder and may delete what it wrote there
LOCK = ".lock"  # held (flock) by the process using the folder; holds its pid, host and boot id

# ----------------------------------------------------------------------------- the metric table
# Every metric a run records or the report shows: a new per-epoch metric is one EpochMetric here
# (a RunMetric too for the report's tables) plus the line that measures it.
@dataclass(frozen=True)
class EpochMetric:
    key: str  # the metrics.jsonl key, e.g. "valid_ppl"
    heading: str  # how figures and tables name it
    fmt: str  # how it reads: "loss", "ppl", "seconds", "count", "rate", "lr", "mb" or "raw"
    split: Optional[str] = None  # "train", "valid" or "test": the pass that measured it; None: the run's own
    panel: Optional[str] = None  # the per-run figure's row that draws it (a key of PANELS); None: not drawn
    required: bool = False  # an epoch without it cannot be plotted or ranked
    txt: Optional[str] = None  # the course notebook's file (without .txt) holding it, one value per line
    step_mean: bool = False  # the training step hands it to the pass (steps.add(..., <quantity>=value) in
    #                          run_exp.train); the record holds its mean over the pass's steps

    @property
    def quantity(self):
        """What the split's pass measured, e.g. "ppl" for "valid_ppl": the pass's name for the value (utils.train.passes)."""
        return self.key[len(self.split) + 1:] if self.split else self.key


# One metrics.jsonl record per finished epoch, in this key order.
EPOCH_METRICS = (
    EpochMetric("epoch", "Epoch", "count"),  # 1-based
    EpochMetric("train_loss", "Training loss", "loss", "train", "loss", True, "train_loss"),
    EpochMetric("train_ppl", "Training perplexity", "ppl", "train", "ppl", True, "train_ppl"),
    EpochMetric("train_seconds", "Training time (s)", "seconds", "train", txt="train_time"),
    EpochMetric("train_tokens", "Training tokens", "count", "train"),
    EpochMetric("train_tokens_per_s", "Training tokens/s", "rate", "train"),
    EpochMetric("valid_loss", "Validation loss", "loss", "valid", "loss", True, "valid_loss"),
    EpochMetric("valid_ppl", "Validation perplexity", "ppl", "valid", "ppl", True, "valid_ppl"),
    EpochMetric("valid_seconds", "Validation time (s)", "seconds", "valid", txt="valid_time"),
    EpochMetric("valid_tokens", "Validation tokens", "count", "valid"),
    EpochMetric("valid_words", "Validation words", "count", "valid"),
    EpochMetric("valid_word_ppl", "Validation word perplexity", "ppl", "valid"),
    EpochMetric("lr", "Learning rate", "lr"),
    EpochMetric("peak_memory_mb", "Peak GPU memory (MB)", "mb"),  # largest CUDA peak over ranks; null on a CPU
    EpochMetric("peak_memory_mb_per_rank", "Peak GPU memory per process (MB)", "raw"),  # null on a CPU
)
# test_metrics.json, once the run completed.
TEST_PASS_METRICS = (
    EpochMetric("test_loss", "Test loss", "loss", "test", txt="test_loss"),
    EpochMetric("test_ppl", "Test perplexity", "ppl", "test", txt="test_ppl"),
    EpochMetric("test_seconds", "Test time (s)", "seconds", "test", txt="test_time"),
    EpochMetric("test_tokens", "Test tokens", "count", "test"),
    EpochMetric("test_words", "Test words", "count", "test"),
    EpochMetric("test_word_ppl", "Test word perplexity", "ppl", "test"),
)
# What every pass sums over steps and processes (float64), kept by a mid-epoch checkpoint.
PASS_SUMS = ("nll_sum", "tokens", "words", "steps")
# Rows of the per-run figure, top to bottom: panel -> axis label.
PANELS = {"loss": "Loss (nats/token)", "ppl": "Perplexity"}
# The course's steady-state GPU memory file (one value, NaN on a CPU), written with the test files.
STEADY_MEMORY = "avg_steady_state_memory"


@dataclass(frozen=True)
class RunMetric:
    key: str  # the report's results-row and CSV key
    heading: str  # the tables' heading
    fmt: str  # as EpochMetric.fmt
    source: str  # the EpochMetric (or TEST_PASS_METRICS key, or STEADY_MEMORY) it is computed from
    reduce: str  # how a run's epochs give one value (utils.report.compute.REDUCERS): "at_best" (at the best
    #              validation epoch), "sum", "mean", "max", "final" (a value written once at the end)
    over_seeds: str = "gmean"  # how seeds combine: "gmean" (geometric mean; its interval, of the mean log,
    #                            never goes below zero), "mean" (Student-t on the values: for signed ones)
    group: bool = True  # a column of the per-configuration table (over seeds) too, not only per run
    latex: Optional[str] = None  # its short heading in results.tex; None: not there


# The numbers the report gives each run, in table order.
RUN_METRICS = (
    RunMetric("best_valid_ppl", "Best val ppl", "ppl", "valid_ppl", "at_best", latex="Best val ppl"),
    RunMetric("train_ppl_at_best", "Train ppl at best", "ppl", "train_ppl", "at_best", group=False),
    RunMetric("test_ppl", "Test ppl", "ppl", "test_ppl", "final", latex="Test ppl"),
    RunMetric("train_time_s", "Train time (s)", "seconds", "train_seconds", "sum"),
    RunMetric("time_per_epoch_s", "Time/epoch (s)", "seconds", "train_seconds", "mean", latex="s/epoch"),
    RunMetric("peak_memory_mb", "Peak mem (MB)", "mb", "peak_memory_mb", "max", latex="Peak GB"),
    RunMetric("steady_memory_mb", "Steady mem (MB)", "mb", STEADY_MEMORY, "final"),
)

EPOCH_KEYS = tuple(m.key for m in EPOCH_METRICS)
TEST_KEYS = tuple(m.key for m in TEST_PASS_METRICS)
# Without these an epoch cannot be plotted or ranked.
REQUIRED_EPOCH_KEYS = tuple(m.key for m in EPOCH_METRICS if m.required)
# The course notebook's per-epoch text files (one value per line) and the metric each holds.
EPOCH_TXT = {m.txt: m.key for m in EPOCH_METRICS if m.txt}
# ...and its final ones, written once at the end (file -> test_metrics.json key).
TEST_TXT = {m.txt: m.key for m in TEST_PASS_METRICS if m.txt}
# save_logs(args, *values) takes the notebook's values in TXT_LOGS order.
TXT_LOGS = tuple(EPOCH_TXT) + tuple(TEST_TXT) + (STEADY_MEMORY,)


def _pick(metrics, splits, values):
    record, values = {}, dict(values)
    for m in metrics:
        record[m.key] = splits[m.split][m.quantity] if m.split else values.pop(m.key)
    if values:
        raise KeyError(f"{', '.join(values)}: not in utils.runs.schema's metric table")
    return record


def epoch_record(splits, **values):
    """One metrics.jsonl record, keys in EPOCH_KEYS order: a split's metric from splits[split][quantity]
    (e.g. splits["valid"]["ppl"]), the others from `values`. KeyError on a missing or unknown one."""
    return _pick(EPOCH_METRICS, splits, values)


def test_record(values):
    """test_metrics.json's record, from the test pass's quantities (e.g. values["ppl"])."""
    return _pick(TEST_PASS_METRICS, {"test": values}, {})


def txt_name(log_name):
    """File name of one of TXT_LOGS, e.g. "valid_ppl" -> "valid_ppl.txt"."""
    return f"{log_name}.txt"


# What status.json can say.
RUNNING, COMPLETED, INTERRUPTED, DIVERGED, FAILED = "running", "completed", "interrupted", "diverged", "failed"
STATUSES = (RUNNING, COMPLETED, INTERRUPTED, DIVERGED, FAILED)
# Run identity: every setting identifies a run (never continued with, nor pooled as a seed of, another
# value; a new settings field included) except these: where it is logged, printing, the device,
# checkpoint frequency, --force, and labels other fields already carry (config, smoke, lr source).
INCIDENTAL = ("exp_id", "log", "log_dir", "embeddings", "num_workers", "device", "progress_bar", "print_every", "tensorboard",
              "resume", "force", "compile", "vocab_folder", "checkpoint_every", "lr_from", "reused_from", "config",
              "smoke")
REUSED_FROM = "reused_from"  # args.json key of a run that is another run's records at the same settings


def identity(args):
    """The settings of `args` (an args.json dict) that identify the run: all but INCIDENTAL."""
    return {k: v for k, v in args.items() if k not in INCIDENTAL and not k.startswith("_")}


def differing(recorded, settings, defaults=None):
    """The identifying fields on which a recorded run differs from `settings` (dicts). A field the
    record lacks (older than it) counts as its value in `defaults`, else as the same value."""
    defaults, a, b = defaults or {}, identity(recorded), identity(settings)
    return [k for k in dict.fromkeys([*b, *a])
            if a.get(k, defaults.get(k, b.get(k))) != b.get(k, defaults.get(k, a.get(k)))]


# Multi-seed sweeps and the lr search (the report groups runs by args.json, not folder names).
TUNING_DIR = "tuning"  # <log_dir>/tuning/: the search's own short runs and its record (never a run folder)
TUNING_RECORD = "tuning.json"  # in TUNING_DIR: budget, grids, every grid point's result, the choices


def seed_run_id(exp_id, seed):
    """Folder of one seed of a multi-seed sweep, e.g. ("6", 1) -> "6-seed1"."""
    return f"{exp_id}-seed{seed}"


def tuned_run_id(exp_id):
    """Folder of a run at its tuned learning rate, e.g. "6" -> "6-tuned" ("6-seed1" -> "6-tuned-seed1")."""
    base, sep, seed = exp_id.partition("-seed")
    return f"{base}-tuned{sep}{seed}"


def tuning_run_id(model, optimizer, lr):
    """A grid point's folder inside TUNING_DIR, e.g. "lstm-sgd-lr0.1"."""
    return f"{model}-{optimizer}-lr{lr:g}"
