"""The study's runs as jobs (configurations x seeds, course or tuned lr), run in sequence here or by
a launcher (utils.study.launchers): complete ones skipped, others continued, past failures, one
summary. Bad input stops the sweep before anything is written; a folder holding another run
(`conflict`) is left untouched; Ctrl-C or SIGTERM stops it after the current run's checkpoint.
"""
import dataclasses
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from utils.runs import schema
from utils.runs.atomic import atomic_write, atomic_write_json, read_json
from utils.runs.run_dir import RunDir
from utils.runs.schema import seed_run_id, tuned_run_id
from utils.study.configs import CONFIGS
from utils.train.distributed import SINGLE
from utils.train.progress import perplexity_text
from utils.train.settings import DEFAULTS, Arguments, UsageError, apply_smoke, check_used
from utils.train.stop import RunInterrupted
from utils.train.watch import TrainingDiverged

# Statuses a sweep summary can report, and whether the sweep counts as a success with them.
OK_STATUSES = ("completed", "skipped", "reused", "pending")  # pending: reuses a run still queued elsewhere


@dataclass
class Job:
    settings: Arguments  # everything the run needs, its exp_id and log_dir included
    label: str  # how summaries and the status command name it, e.g. "6: MiniGPT1 x1, adamw, seed 1"
    with_test: bool = True  # False for the learning-rate search, which must never see the test split
    reuses: Optional[str] = None  # exp_id of a run at the same settings whose records stand for this one
    main: Optional[Callable] = None  # run_exp.main, handed over by run_exp.py: main(settings, dist, with_test)


def config_settings(number, **overrides):
    """Settings of configuration `number` with `overrides` on top (explicit: smoke never replaces them)."""
    if number not in CONFIGS:
        raise UsageError(f"Unknown configuration {number}: choose from 1-{max(CONFIGS)}.")
    cfg = CONFIGS[number]
    fields = dict(model=cfg.model, layers=cfg.layers, optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                  epochs=cfg.epochs, exp_id=cfg.exp_id, config=number)
    fields.update(overrides)
    check_used(fields["optimizer"], overrides, f"leave out configuration {number}")
    return apply_smoke(Arguments(**fields), explicit=set(overrides))


def config_job(number, sweep_seed=None, tuned=None, main=None, **overrides):
    """Configuration `number`'s job, for a seed (<id>-seed<k>), tuned = (lr, record path) (<id>-tuned...)."""
    exp_id, label = CONFIGS[number].exp_id, CONFIGS[number].label
    if tuned is not None:
        overrides = dict(overrides, lr=tuned[0], lr_from=tuned[1])
        exp_id, label = tuned_run_id(exp_id), f"{label}, tuned lr {tuned[0]:g}"
    if sweep_seed is not None:
        overrides = dict(overrides, seed=sweep_seed)
        exp_id, label = seed_run_id(exp_id, sweep_seed), f"{label}, seed {sweep_seed}"
    overrides.setdefault("exp_id", exp_id)
    return Job(config_settings(number, **overrides), label, main=main)


def config_jobs(numbers, seeds=None, tuned=None, main=None, **overrides):
    """Jobs for configurations × seeds (None: one run each); tuned: {(model, optimizer): (lr, record)},
    configurations without a choice left out."""
    jobs = []
    for number in numbers:
        cfg = CONFIGS[number]
        choice = None if tuned is None else tuned.get((cfg.model, cfg.optimizer))
        if tuned is not None and choice is None:
            continue
        jobs += [config_job(number, seed, choice, main, **overrides) for seed in (seeds or [None])]
    return jobs


def fold_identical(jobs):
    """`jobs`, a job computing what an earlier one does (tuned at the course's lr) reusing its records."""
    first, folded = {}, []
    for job in jobs:
        same = first.setdefault(json.dumps(schema.identity(asdict(job.settings)), sort_keys=True), job)
        other = same.settings.exp_id != job.settings.exp_id  # a configuration listed twice is one run
        folded.append(dataclasses.replace(job, reuses=same.settings.exp_id) if other else job)
    return folded


def reuse_run(job):
    """(status, message): `job`'s folder given the reused run's records, all but the checkpoint."""
    s = job.settings
    source, target = RunDir(s.log_dir, job.reuses), RunDir(s.log_dir, s.exp_id)
    status = (source.status() or {}).get("status")
    if status != schema.COMPLETED:
        if status in (schema.DIVERGED, schema.FAILED):
            return status, f"same settings as {source.path}, which {status}"
        return "pending", f"reuses {source.path} (same settings) once it has completed: run this command again then"
    atomic_write_json(target.file(schema.ARGS), dict(asdict(s), **{schema.REUSED_FROM: str(job.reuses)}))
    own = (schema.CHECKPOINT, schema.ARGS, schema.STATUS)
    records = [n for n in sorted(os.listdir(source.path)) if not n.startswith(".") and n not in own]
    for name in records + [schema.STATUS]:  # status.json last: the copy is complete once it says so
        with open(source.file(name), "rb") as handle:
            atomic_write(target.file(name), lambda out: shutil.copyfileobj(handle, out))
    return "reused", f"the records of {source.path}: same settings, not run again"


def skip_reason(s, run_dir):
    """(status, message) when the run must not be executed, else None."""
    if not s.log or s.force or not (run_dir.is_completed() or run_dir.has_checkpoint()):
        return None
    differs = run_dir.settings_differ(asdict(s), defaults=DEFAULTS)
    if differs:  # e.g. a smoke run where a full run is asked for: never overwrite or mix silently
        return "conflict", (f"{run_dir.path} was run with other {', '.join(differs)}: pass --force to overwrite it "
                            "or use another --log_dir")
    return ("skipped", "already complete") if run_dir.is_completed() else None


def run_job(job, dist=SINGLE):
    """Run, skip or refuse one job: its summary dict (a failure is reported; bad input, Ctrl-C raise)."""
    s = job.settings
    run_dir = RunDir(s.log_dir, s.exp_id)
    summary = {"config": s.config, "label": job.label, "exp_id": s.exp_id, "path": run_dir.path, "seed": s.seed}
    skip = dist.broadcast(skip_reason(s, run_dir) if dist.is_main else None)  # one decision for all processes
    if not skip and job.reuses:
        skip = dist.broadcast(reuse_run(job) if dist.is_main else None)
    if skip:
        numbers = recorded_numbers(run_dir) if skip[0] in ("skipped", "reused") and dist.is_main else {}
        return dict(summary, status=skip[0], message=skip[1], **numbers)
    start = time.perf_counter()
    try:
        values = dict(zip(schema.TXT_LOGS, job.main(s, dist, with_test=job.with_test)))
    except (UsageError, RunInterrupted):  # bad input stops everything; so does Ctrl-C
        raise
    except TrainingDiverged as err:
        return dict(summary, status="diverged", message=str(err), seconds=time.perf_counter() - start)
    except Exception as err:  # the run's status.json says what happened; the sweep goes on
        return dict(summary, status="failed", message=f"{type(err).__name__}: {err}",
                    seconds=time.perf_counter() - start)
    test_ppl = values["test_ppl"] if job.with_test else None
    return dict(summary, status="completed", best_valid_ppl=min(values["valid_ppl"]), test_ppl=test_ppl,
                seconds=time.perf_counter() - start, message="")


def recorded_numbers(run_dir):
    """A completed run's recorded numbers (best valid ppl, test ppl, seconds) for a skipped run's line."""
    epochs, best = run_dir.epochs(), run_dir.best_valid_ppl()
    test = read_json(run_dir.file(schema.TEST_METRICS)) or {}
    numbers = {} if best is None else {"best_valid_ppl": best}
    if isinstance(test, dict) and test.get("test_ppl") is not None:
        numbers["test_ppl"] = test["test_ppl"]
    times = [e.get(k) for e in epochs for k in ("train_seconds", "valid_seconds")] + (
        [test.get("test_seconds")] if "test_ppl" in numbers else [])
    if epochs and all(isinstance(t, (int, float)) for t in times):
        numbers["seconds"] = sum(times)
    return numbers


def run_jobs(jobs, dist=SINGLE, title=None):
    """Every job in order, then one summary table (printed by rank 0)."""
    summaries = [run_job(job, dist) for job in jobs]
    if dist.is_main:
        print(((title + "\n") if title else "") + format_summary(summaries))
    return summaries


def run_config(number, main, dist=SINGLE, **overrides):
    """Run configuration `number` with `main` unless already complete; continue it if it was not."""
    return run_job(config_job(number, main=main, **overrides), dist)


def run_sweep(numbers, main, dist=SINGLE, seeds=None, **overrides):
    """Run several configurations (for each of `seeds`, if given) in order with `main`."""
    return run_jobs(config_jobs(numbers, seeds, main=main, **overrides), dist)


def format_summary(summaries):
    """A table, one line per run; notes that do not fit follow in full, never cut."""
    width = max([len(s["label"]) for s in summaries] + [6])
    lines = [f"{'run':<{width}} {'status':<10} {'best valid ppl':>14} {'test ppl':>10} {'minutes':>8}  note"]
    long_notes = []
    for s in summaries:
        best = perplexity_text(s["best_valid_ppl"]) if "best_valid_ppl" in s else "-"
        test = perplexity_text(s["test_ppl"]) if s.get("test_ppl") is not None else "-"
        minutes = f"{s['seconds'] / 60:.1f}" if "seconds" in s else "-"
        note = s["message"]
        if len(note) > 40:
            long_notes.append(f"  [{s['label']}] {note}")
            note = "(see below)"
        lines.append(f"{s['label']:<{width}} {s['status']:<10} {best:>14} {test:>10} {minutes:>8}  {note}")
    return "\n".join(lines + long_notes)
