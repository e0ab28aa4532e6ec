"""Configurations of the study in sequence: skip what is complete, continue what is not, go on
past a failed or diverged run, and print one summary.

Bad input (a missing data folder, unreadable embeddings) is a UsageError that stops the sweep
before anything is written; a folder that holds another run (`conflict`) is left untouched and
reported; Ctrl-C or SIGTERM stops the sweep after the current run saved its checkpoint.
"""
import time

from utils.configs import CONFIGS
from utils.runs.run_dir import RunDir
from utils.train.distributed import SINGLE
from utils.train.loop import TrainingDiverged
from utils.train.progress import perplexity_text
from utils.train.runner import execute
from utils.train.settings import Arguments, UsageError, apply_smoke, to_dict
from utils.train.stop import RunInterrupted

# Statuses a sweep summary can report, and whether the sweep counts as a success with them.
OK_STATUSES = ("completed", "skipped")


def config_settings(number, **overrides):
    """Settings of configuration `number`, named after it, with `overrides` on top (they are explicit:
    the smoke preset never replaces them)."""
    cfg = CONFIGS[number]
    fields = dict(model=cfg.model, layers=cfg.layers, optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                  epochs=cfg.epochs, exp_id=cfg.exp_id, config=number)
    fields.update(overrides)
    return apply_smoke(Arguments(**fields), explicit=set(overrides))


def run_config(number, dist=SINGLE, **overrides):
    """Run configuration `number` unless already complete; continue it if it was not.
    Returns a summary dict; a failed or diverged run is reported, not raised."""
    s = config_settings(number, **overrides)
    return run_settings(s, CONFIGS[number].label, dist)


def skip_reason(s, run_dir):
    """(status, message) when the run must not be executed, else None."""
    if not s.log or s.force or not (run_dir.is_completed() or run_dir.has_checkpoint()):
        return None
    differs = run_dir.settings_differ(to_dict(s))
    if differs:  # e.g. a smoke run where a full run is asked for: never overwrite or mix silently
        return "conflict", (f"{run_dir.path} was run with other {', '.join(differs)}: pass --force to overwrite it "
                            "or use another --log_dir")
    return ("skipped", "already complete") if run_dir.is_completed() else None


def run_settings(s, label, dist=SINGLE):
    """Run (or skip, or refuse) one run of a sweep; returns its summary dict."""
    run_dir = RunDir(s.log_dir, s.exp_id)
    summary = {"config": s.config, "label": label, "exp_id": s.exp_id, "path": run_dir.path}
    skip = dist.broadcast(skip_reason(s, run_dir) if dist.is_main else None)  # one decision for all processes
    if skip:
        return dict(summary, status=skip[0], message=skip[1])
    start = time.perf_counter()
    try:
        result = execute(s, dist)
    except (UsageError, RunInterrupted):  # bad input stops everything; so does Ctrl-C
        raise
    except TrainingDiverged as err:
        return dict(summary, status="diverged", message=str(err), seconds=time.perf_counter() - start)
    except Exception as err:  # the run's status.json says what happened; the sweep goes on
        return dict(summary, status="failed", message=f"{type(err).__name__}: {err}",
                    seconds=time.perf_counter() - start)
    return dict(summary, status="completed", best_valid_ppl=result.best_valid_ppl, test_ppl=result.test["test_ppl"],
                seconds=time.perf_counter() - start, message="")


def run_sweep(numbers, dist=SINGLE, **overrides):
    """Run several configurations in order, skipping completed ones and going on past failures."""
    summaries = [run_config(n, dist, **overrides) for n in numbers]
    if dist.is_main:
        print(format_summary(summaries))
    return summaries


def format_summary(summaries):
    """A table, one line per run; notes that do not fit follow in full, never cut."""
    lines = [f"{'config':<26} {'status':<10} {'best valid ppl':>14} {'test ppl':>10} {'minutes':>8}  note"]
    long_notes = []
    for s in summaries:
        best = perplexity_text(s["best_valid_ppl"]) if "best_valid_ppl" in s else "-"
        test = perplexity_text(s["test_ppl"]) if "test_ppl" in s else "-"
        minutes = f"{s['seconds'] / 60:.1f}" if "seconds" in s else "-"
        note = s["message"]
        if len(note) > 40:
            long_notes.append(f"  [{s['label']}] {note}")
            note = "(see below)"
        lines.append(f"{s['label']:<26} {s['status']:<10} {best:>14} {test:>10} {minutes:>8}  {note}")
    return "\n".join(lines + long_notes)
