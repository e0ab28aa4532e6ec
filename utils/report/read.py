"""Read `<log_dir>/<exp_id>/` into plain values: args.json and metrics.jsonl, or the course notebook's
*.txt files. A quantity a folder did not record is absent from its epochs: readers use .get."""
import json
import math
import os
from dataclasses import dataclass, field

from utils.runs import schema
from utils.study.configs import CONFIGS

TXT_FILES = {key: schema.txt_name(name) for name, key in schema.EPOCH_TXT.items()}
FLOAT_KEYS = tuple(schema.EPOCH_TXT.values())  # the keys both formats hold: NaN where absent
NAN = float("nan")


@dataclass
class RunRecord:
    exp_id: str  # the folder name
    path: str
    args: dict
    config: int | None  # configuration number 1..12, or None for a custom run
    epochs: list  # one dict per completed epoch, sorted by its 1-based "epoch"
    test: dict = field(default_factory=dict)  # schema.TEST_TXT's keys and STEADY_MEMORY, once finished
    status: str = "incomplete"  # running | completed | diverged | failed | incomplete | unreadable
    status_message: str = ""
    provenance: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # what a reader of the report should know
    source: str = schema.METRICS


def find_run_dirs(log_dir):
    """Run folders, "2" before "10" and numbered before named."""
    names = [n for n in (os.listdir(log_dir) if os.path.isdir(log_dir) else [])
             if os.path.isdir(os.path.join(log_dir, n)) and not n.startswith(".") and n != schema.TUNING_DIR]
    names.sort(key=lambda n: (0, int(n), "") if n.isdigit() else (1, 0, n))
    return [os.path.join(log_dir, n) for n in names]


def read_json(path):
    """The parsed file, None when absent; ValueError (naming the file) when unreadable."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ValueError(f"{os.path.basename(path)} is unreadable ({err})") from None


def read_floats(path, notes):
    """Floats one per line, None when absent; stops at a bad line (a half-written file)."""
    if not os.path.isfile(path):
        return None
    values = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            try:
                values += [float(line)] if line.strip() else []
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
            lacking = [k for k in schema.REQUIRED_EPOCH_KEYS if k not in record]
            if lacking:
                notes.append(f"metrics.jsonl epoch {epoch} lacks {', '.join(lacking)}")
                continue
            # a resumed run may log an epoch again: the later counts
            by_epoch[epoch] = {**record, "epoch": epoch, **{key: as_float(record.get(key)) for key in FLOAT_KEYS}}
    return [by_epoch[e] for e in sorted(by_epoch)]


def epochs_from_txt(run_dir, notes):
    columns = {key: read_floats(os.path.join(run_dir, name), notes) for key, name in TXT_FILES.items()}
    missing = [TXT_FILES[k] for k in schema.REQUIRED_EPOCH_KEYS if columns[k] is None]
    if missing:
        notes.append(f"no {', '.join(missing)}")
        return []
    count = min(len(v) for v in columns.values() if v is not None)  # a run killed mid-epoch: whole epochs only
    return [{"epoch": i + 1, **{k: (v[i] if v is not None else NAN) for k, v in columns.items()}} for i in range(count)]


def config_number(args):
    """args["config"] (run_exp.py), else recognised by model, layers and optimizer (the course notebook)."""
    if "config" in args:
        return args["config"] if isinstance(args["config"], int) and args["config"] in CONFIGS else None
    wanted = (args.get("model"), args.get("layers"), args.get("optimizer"))
    matches = [c.number for c in CONFIGS.values() if (c.model, c.layers, c.optimizer) == wanted]
    return matches[0] if len(matches) == 1 else None


def read_status(run, run_dir):
    """status.json's (unusable: "unreadable"); without one (the course notebook's save_logs) from the logs."""
    try:
        status = read_json(os.path.join(run_dir, schema.STATUS))
    except ValueError as err:
        run.status, run.status_message = "unreadable", str(err)
        return
    if isinstance(status, dict) and status.get("status") in schema.STATUSES:
        run.status, run.status_message = status["status"], str(status.get("message") or "")
    elif status is not None:
        run.status, run.status_message = "unreadable", f"{schema.STATUS} names no known status"
    elif not all(math.isfinite(e[k]) for e in run.epochs for k in schema.REQUIRED_EPOCH_KEYS):
        run.status, run.status_message = "diverged", "non-finite loss or perplexity in the logs"
    elif "test_ppl" in run.test:
        run.status = "completed"


def read_extras(run, run_dir, notes):
    for name in (*schema.TEST_TXT, schema.STEADY_MEMORY):
        values = read_floats(os.path.join(run_dir, schema.txt_name(name)), notes)
        if values:
            run.test[schema.TEST_TXT.get(name, name)] = values[0]
    for name, attr, kind in ((schema.PROVENANCE, "provenance", dict), (schema.SAMPLES, "samples", list)):
        try:
            value = read_json(os.path.join(run_dir, name))
        except ValueError as err:
            notes.append(str(err))
            value = None
        setattr(run, attr, value if isinstance(value, kind) else kind())


def read_run(run_dir, stubs=None):
    """(RunRecord, None) for a run with a completed epoch, else (None, why it is left out); a left-out
    folder with args.json is also appended to `stubs`, so the report can name a seed that failed early."""
    try:
        args = read_json(os.path.join(run_dir, schema.ARGS))
    except ValueError as err:
        return None, str(err)
    if not isinstance(args, dict):
        return None, "no args.json (not a run folder?)"
    notes, jsonl = [], os.path.join(run_dir, schema.METRICS)
    source = schema.METRICS if os.path.isfile(jsonl) else "txt"
    epochs = epochs_from_jsonl(jsonl, notes) if source == schema.METRICS else epochs_from_txt(run_dir, notes)
    run = RunRecord(os.path.basename(os.path.normpath(run_dir)), run_dir, args, config_number(args), epochs,
                    notes=notes, source=source)
    read_extras(run, run_dir, notes)
    read_status(run, run_dir)
    if not epochs:
        detail = f": {run.status_message}" if run.status_message else ""
        still = " yet" if run.status in ("running", "incomplete") else ""
        if stubs is not None:
            stubs.append(run)
        return None, f"no completed epoch{still} (status {run.status}{detail})"
    numbers = [e["epoch"] for e in epochs]
    missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
    if missing:
        notes.append(f"epoch(s) {', '.join(map(str, missing))} missing from the logs")
    planned = args.get("epochs")
    if isinstance(planned, int) and len(numbers) < planned and run.status != "completed":
        notes.append(f"{len(numbers)} of {planned} epochs logged")
    return run, None


def read_runs(log_dir, stubs=None):
    """(runs, left_out) where left_out is a list of (folder name, reason); see read_run for stubs."""
    read = [(run_dir, *read_run(run_dir, stubs)) for run_dir in find_run_dirs(log_dir)]
    return [run for _, run, _ in read if run], [(os.path.basename(d), why) for d, run, why in read if run is None]


def read_tuning(log_dir):
    """(record, problem): the search's tuning.json, or None with why it cannot be used (None, None: no search)."""
    try:
        record = read_json(os.path.join(log_dir, schema.TUNING_DIR, schema.TUNING_RECORD))
    except ValueError as err:
        return None, str(err)
    if record is None:
        return None, None
    if not isinstance(record, dict) or not isinstance(record.get("results", []), list):
        return None, f"{schema.TUNING_RECORD} is not a search record (no results list)"
    return record, None
