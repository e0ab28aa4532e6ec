"""The run folder's format, defined once: `logs/<exp_id>/`'s file names, the keys of its
records and the statuses a run can have. The writer (utils.runs.run_dir, the course's
save_logs) and the reader (utils.report.read) both import these names; neither spells a file
name or a metric key of its own. Plain data: importing this module imports nothing heavy."""

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

# The course notebook's per-epoch text files (one value per line) and the metric each holds.
EPOCH_TXT = {
    "train_loss": "train_loss", "train_ppl": "train_ppl", "train_time": "train_seconds",
    "valid_loss": "valid_loss", "valid_ppl": "valid_ppl", "valid_time": "valid_seconds",
}
# ...and its final ones, written once at the end; save_logs(args, *values) takes them in TXT_LOGS order.
FINAL_TXT = ("test_loss", "test_ppl", "test_time", "avg_steady_state_memory")
TXT_LOGS = tuple(EPOCH_TXT) + FINAL_TXT


def txt_name(log_name):
    """File name of one of TXT_LOGS, e.g. "valid_ppl" -> "valid_ppl.txt"."""
    return f"{log_name}.txt"


# Keys of one metrics.jsonl record.
EPOCH_KEYS = (
    "epoch",  # 1-based
    "train_loss", "train_ppl", "train_seconds", "train_tokens", "train_tokens_per_s",
    "valid_loss", "valid_ppl", "valid_seconds", "valid_tokens", "valid_words", "valid_word_ppl",
    "lr",
    "peak_memory_mb",  # largest CUDA peak over ranks; null on a CPU (not measured)
    "peak_memory_mb_per_rank",  # one value per process (data-parallel runs); null on a CPU
)
# Without these an epoch cannot be plotted or ranked.
REQUIRED_EPOCH_KEYS = ("train_loss", "train_ppl", "valid_loss", "valid_ppl")
TEST_KEYS = ("test_loss", "test_ppl", "test_seconds", "test_tokens", "test_words", "test_word_ppl")

# What status.json can say.
RUNNING, COMPLETED, INTERRUPTED, DIVERGED, FAILED = "running", "completed", "interrupted", "diverged", "failed"
STATUSES = (RUNNING, COMPLETED, INTERRUPTED, DIVERGED, FAILED)
# Settings that make two runs the same run: a folder made with other values is never resumed or
# skipped in their place (a smoke run where a full run is asked for, another learning rate...).
SAME_RUN_FIELDS = ("model", "layers", "optimizer", "epochs", "batch_size", "max_batches", "lr", "momentum",
                   "weight_decay", "seed", "learn_embeddings")


# Multi-seed sweeps and the learning-rate search (utils.train.sweep makes them; the report groups
# runs by configuration and by whether their lr was tuned, reading args.json, not folder names).
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
