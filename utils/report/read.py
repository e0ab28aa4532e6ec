"""Read training runs from `<log_dir>/<exp_id>/` into plain Python values (no torch, no plotting).

A run folder holds `args.json` and either `metrics.jsonl` (run_exp.py, one JSON object per epoch)
or the course notebook's per-epoch `*.txt` files; both are read the same way here so old
notebook runs and new ones appear side by side in the report. `<log_dir>/tuning/` is the
learning-rate search's (its short runs and tuning.json), never a run: read_tuning reads its record.
"""
import json
import math
import os
from dataclasses import dataclass, field

from utils.study.configs import CONFIGS
from utils.runs import schema

# The course notebook's per-epoch text files, keyed by the metrics.jsonl field they hold.
TXT_FILES = {key: schema.txt_name(name) for name, key in schema.EPOCH_TXT.items()}
# Without these an epoch cannot be plotted or ranked; the time files are optional.
REQUIRED_KEYS = schema.REQUIRED_EPOCH_KEYS
# Filled in every epoch (NaN when absent): the ones both formats hold.
FLOAT_KEYS = tuple(schema.EPOCH_TXT.values())
NAN = float("nan")


@dataclass
class RunRecord:
    exp_id: str  # the folder name
    path: str
    args: dict
    config: int | None  # configuration number 1..12, or None for a custom run
    epochs: list  # one dict per completed epoch, sorted by its 1-based "epoch"
    test: dict = field(default_factory=dict)  # schema.TEST_TXT's keys ("test_ppl"...) once the run finished
    steady_memory_mb: float | None = None  # None: not logged; NaN: not measured (CPU)
    status: str = "incomplete"  # running | completed | diverged | failed | incomplete
    status_message: str = ""
    provenance: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # what a reader of the report should know
    source: str = schema.METRICS


def natural_key(name):
    """Sort "2" before "10", and numbered runs before named ones."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def find_run_dirs(log_dir):
    if not os.path.isdir(log_dir):
        return []
    # The search's folder holds grid-point runs at a tiny budget: they must not enter the study.
    names = [n for n in os.listdir(log_dir) if os.path.isdir(os.path.join(log_dir, n))
             and not n.startswith(".") and n != schema.TUNING_DIR]
    return [os.path.join(log_dir, n) for n in sorted(names, key=natural_key)]


def read_json(path):
    """The parsed file, None when absent; ValueError (with the file name) when unreadable."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as err:
        raise ValueError(f"{os.path.basename(path)} is unreadable ({err})") from None


def read_floats(path, notes):
    """Floats one per line; None when the file is absent. Stops at a bad line (a half-written file)."""
    if not os.path.isfile(path):
        return None
    values = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text:
                continue
            try:
                values.append(float(text))
            except ValueError:
                notes.append(f"{os.path.basename(path)} line {number} is not a number; read up to there")
                break
    return values


def as_float(value):
    """JSON null (or anything non-numeric) becomes NaN so arithmetic and plotting keep working."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN


def epochs_from_jsonl(path, notes):
    by_epoch = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                epoch = int(record["epoch"])
            except (ValueError, KeyError, TypeError):
                notes.append(f"metrics.jsonl line {number} is unreadable and was skipped")
                continue
            if not all(k in record for k in REQUIRED_KEYS):
                lacking = ", ".join(k for k in REQUIRED_KEYS if k not in record)
                notes.append(f"metrics.jsonl epoch {epoch} lacks {lacking}")
                continue
            # A resumed run may log an epoch again: the later line is the one that counts.
            by_epoch[epoch] = dict(record, epoch=epoch)
    epochs = [by_epoch[e] for e in sorted(by_epoch)]
    for record in epochs:
        for key in FLOAT_KEYS:
            record[key] = as_float(record.get(key))
    return epochs


def epochs_from_txt(run_dir, notes):
    columns = {key: read_floats(os.path.join(run_dir, name), notes) for key, name in TXT_FILES.items()}
    missing = [TXT_FILES[k] for k in REQUIRED_KEYS if columns[k] is None]
    if missing:
        notes.append(f"no {', '.join(missing)}")
        return []
    # Files of a run killed mid-epoch differ in length: keep the epochs every file has.
    count = min(len(v) for v in columns.values() if v is not None)
    return [
        {"epoch": i + 1, **{k: (v[i] if v is not None else NAN) for k, v in columns.items()}} for i in range(count)
    ]


def config_number(args):
    """The configuration a run belongs to: args["config"] (run_exp.py), else recognised by what it
    trained (old notebook runs have no "config" key; the 12 differ in model, layers or optimizer)."""
    if "config" in args:
        try:
            number = int(args["config"])
        except (TypeError, ValueError):
            return None
        return number if number in CONFIGS else None
    wanted = (args.get("model"), args.get("layers"), args.get("optimizer"))
    matches = [c.number for c in CONFIGS.values() if (c.model, c.layers, c.optimizer) == wanted]
    return matches[0] if len(matches) == 1 else None


def read_test(run_dir, notes):
    test = {}
    for name, key in schema.TEST_TXT.items():
        values = read_floats(os.path.join(run_dir, schema.txt_name(name)), notes)
        if values:
            test[key] = values[0]
    return test


def read_status(run, run_dir):
    """status.json when run_exp.py wrote one; otherwise inferred from what the old notebook left."""
    status = read_json(os.path.join(run_dir, schema.STATUS))
    if isinstance(status, dict) and status.get("status"):
        run.status, run.status_message = str(status["status"]), str(status.get("message") or "")
        return
    finite = all(math.isfinite(e[k]) for e in run.epochs for k in REQUIRED_KEYS)
    if not finite:
        run.status, run.status_message = "diverged", "non-finite loss or perplexity in the logs"
    elif "test_ppl" in run.test:
        run.status = "completed"


def read_run(run_dir, stubs=None):
    """(RunRecord, None) for a run with at least one completed epoch, else (None, why it is left out).
    A left-out folder that has args.json is also appended to `stubs` (a list), epochs empty, so the
    report can say which seed of a configuration failed before finishing an epoch."""
    exp_id = os.path.basename(os.path.normpath(run_dir))
    try:
        args = read_json(os.path.join(run_dir, schema.ARGS))
    except ValueError as err:
        return None, str(err)
    if not isinstance(args, dict):
        return None, "no args.json (not a run folder?)"
    notes = []
    jsonl = os.path.join(run_dir, schema.METRICS)
    source = schema.METRICS if os.path.isfile(jsonl) else "txt"
    epochs = epochs_from_jsonl(jsonl, notes) if source == schema.METRICS else epochs_from_txt(run_dir, notes)
    run = RunRecord(exp_id, run_dir, args, config_number(args), epochs, notes=notes, source=source)
    run.test = read_test(run_dir, notes)
    memory = read_floats(os.path.join(run_dir, schema.txt_name(schema.STEADY_MEMORY)), notes)
    run.steady_memory_mb = memory[0] if memory else None
    for name, attr, kind in ((schema.PROVENANCE, "provenance", dict), (schema.SAMPLES, "samples", list)):
        try:
            value = read_json(os.path.join(run_dir, name))
        except ValueError as err:
            notes.append(str(err))
            value = None
        setattr(run, attr, value if isinstance(value, kind) else kind())
    try:
        read_status(run, run_dir)
    except ValueError as err:
        notes.append(str(err))
    if not epochs:
        # Say what the run itself reports; "no train_loss.txt" would only confuse a run still in epoch 1.
        detail = f": {run.status_message}" if run.status_message else ""
        still = " yet" if run.status in ("running", "incomplete") else ""
        if stubs is not None:
            stubs.append(run)
        return None, f"no completed epoch{still} (status {run.status}{detail})"
    add_gap_notes(run)
    return run, None


def add_gap_notes(run):
    numbers = [e["epoch"] for e in run.epochs]
    missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
    if missing:
        run.notes.append(f"epoch(s) {', '.join(map(str, missing))} missing from the logs")
    planned = run.args.get("epochs")
    if isinstance(planned, int) and len(numbers) < planned and run.status != "completed":
        run.notes.append(f"{len(numbers)} of {planned} epochs logged")


def read_runs(log_dir, stubs=None):
    """(runs, left_out) where left_out is a list of (folder name, reason); see read_run for stubs."""
    runs, left_out = [], []
    for run_dir in find_run_dirs(log_dir):
        run, reason = read_run(run_dir, stubs)
        if run is None:
            left_out.append((os.path.basename(run_dir), reason))
        else:
            runs.append(run)
    return runs, left_out


def read_tuning(log_dir):
    """(record, problem): the learning-rate search's tuning.json as a dict, or None with a reason
    when it exists but cannot be used (None, None when there was no search)."""
    path = os.path.join(log_dir, schema.TUNING_DIR, schema.TUNING_RECORD)
    try:
        record = read_json(path)
    except ValueError as err:
        return None, str(err)
    if record is None:
        return None, None
    if not isinstance(record, dict) or not isinstance(record.get("results", []), list):
        return None, f"{schema.TUNING_RECORD} is not a search record (no results list)"
    return record, None
