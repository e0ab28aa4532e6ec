"""The study from the command line: which runs (configurations x seeds, course or tuned lr), where
they run (here, submitit's local executor, SLURM) and where each stands (--status)."""
import os

from utils.runs import schema
from utils.runs.atomic import read_json
from utils.runs.run_dir import RunDir
from utils.study import tuning
from utils.study.launchers import LAUNCHERS, get_launcher, read_record, recorded_failure
from utils.train.progress import perplexity_text
from utils.train.settings import UsageError, validate
from utils.study.sweep import OK_STATUSES, config_jobs, config_settings, fold_identical, run_jobs


def parse_seeds(text):
    if text is None:
        return None
    try:
        seeds = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"Bad --seeds {text!r}: use distinct integers like 0,1,2.")
    return seeds


def _check(given, opts):
    if opts["launcher"] not in LAUNCHERS:
        raise UsageError(f"Unknown --launcher {opts['launcher']!r}: use {', '.join(LAUNCHERS)}.")
    if opts["tune_lr"] and "lr" in given:
        raise UsageError("--lr fixes the learning rate and --tune_lr searches it: pass one of them.")
    if "seed" in given and opts["seeds"]:
        raise UsageError("--seed and --seeds contradict each other: pass one of them.")


def _tuning_plan(numbers, given, opts, log_dir, main):
    smoke = config_settings(numbers[0], **given).smoke
    budget = dict(tuning.SMOKE_BUDGET if smoke else tuning.DEFAULT_BUDGET)
    budget.update({k: v for k, v in (("epochs", opts["tune_epochs"]), ("max_batches", opts["tune_batches"]))
                   if v is not None})
    grids = tuning.parse_grid(opts["tune_grid"])
    return grids, budget, tuning.search_jobs(numbers, grids, budget, log_dir, main, **given)


def _search_finished(search):
    final = (schema.COMPLETED, schema.DIVERGED, schema.FAILED)
    return all((RunDir(j.settings.log_dir, j.settings.exp_id).status() or {}).get("status") in final for j in search)


def run_study(numbers, given, opts, dist, main=None):
    """The exit code of `run_exp.py --config ...` (study flags `opts`); each run is run_exp.main."""
    _check(given, opts)
    seeds = parse_seeds(opts["seeds"])
    log_dir = config_settings(numbers[0], **given).log_dir
    jobs = config_jobs(numbers, seeds, main=main, **given)
    search = []
    if opts["tune_lr"]:
        grids, budget, search = _tuning_plan(numbers, given, opts, log_dir, main)
    if opts["status"]:
        print(status_table(search + jobs + tuned_jobs(numbers, seeds, given, log_dir)))
        return 0
    for job in search + jobs:  # every run's settings checked before the first one writes anything
        validate(job.settings)
    launcher, handles = get_launcher(opts["launcher"]), []
    if search:  # its runs' summaries are not the study's: the search record says how they did
        handles = launcher.run(search, opts, dist, "Learning-rate search (validation only)")[1]
        if not _search_finished(search):
            print("The search is still running: rerun this command once its jobs have ended to launch the tuned runs.")
        else:
            record, path = tuning.record_search(numbers, grids, budget, log_dir, search[0].settings) if dist.is_main \
                else (None, None)
            record, path = dist.broadcast((record, path))
            print(f"Chosen learning rates ({path}): " + ", ".join(f"{k} {v:g}" for k, v in record["choice"].items()))
            jobs += config_jobs(numbers, seeds, tuned=tuning.tuned_choices(record, path), main=main, **given)
    jobs = fold_identical(jobs)
    for job in jobs:
        validate(job.settings)
    compute, reused = [j for j in jobs if not j.reuses], [j for j in jobs if j.reuses]
    summaries, more = launcher.run(compute, opts, dist, None) if compute else ([], [])
    handles += more
    if reused:  # after the runs they reuse; a copy of records, done here whatever the launcher
        summaries += run_jobs(reused, dist, "Tuned at the course's learning rate: the course's runs stand for them")
    code = launcher.finish(log_dir, handles, opts)
    if code is not None:
        return code
    if any(s["status"] == "conflict" for s in summaries):
        return 2
    return 0 if all(s["status"] in OK_STATUSES for s in summaries) else 1


def tuned_jobs(numbers, seeds, given, log_dir):
    """The tuned arm, when a search record exists (for --status)."""
    path = os.path.join(tuning.tuning_dir(log_dir), schema.TUNING_RECORD)
    record = read_json(path)
    return [] if record is None else config_jobs(numbers, seeds, tuned=tuning.tuned_choices(record, path), **given)


def status_table(jobs):
    """One line per run: SLURM job and state, status, epoch, best validation ppl, why it failed."""
    # log_dir -> its sweep record (the search runs live in their own log_dir)
    records = {log_dir: read_record(log_dir) for log_dir in {j.settings.log_dir for j in jobs}}
    submitted = {(j.settings.log_dir, j.settings.exp_id): records[j.settings.log_dir].get(j.settings.exp_id, {})
                 for j in jobs}
    states = _scheduler_states(submitted.values())
    width = max(len(j.label) for j in jobs) if jobs else 10
    lines = [f"{'run':<{width}} {'job':>10} {'SLURM state':<14} {'status':<12} {'epoch':>7} {'best valid ppl':>14}"]
    for job in jobs:
        lines.append(_status_line(job, submitted[(job.settings.log_dir, job.settings.exp_id)], states, width))
    return "\n".join(lines)


def _scheduler_states(submitted):
    """{(launcher, job id): state} from each recorded launcher that keeps states (a scheduler)."""
    by_launcher = {}
    for r in submitted:
        if r.get("launcher") in LAUNCHERS and r.get("launcher") != "inline":
            by_launcher.setdefault(r["launcher"], set()).add(r["job_id"])
    return {(name, job_id): state for name, ids in by_launcher.items()
            for job_id, state in get_launcher(name).states(sorted(ids)).items()}


def _status_line(job, submitted, states, width):
    s = job.settings
    run_dir = RunDir(s.log_dir, s.exp_id)
    status = run_dir.status() or {}
    epochs = run_dir.epochs()
    best = min((m["valid_ppl"] for m in epochs if "valid_ppl" in m), default=None)
    failure = recorded_failure(s)  # bad input: the job stopped before the run wrote anything new
    launcher = submitted.get("launcher", "-")
    state = states.get((launcher, submitted.get("job_id")), "-" if launcher == "slurm" else launcher)
    shown = "failed" if failure else status.get("status", "-")
    note = failure or (status.get("message", "") if shown in (schema.FAILED, schema.DIVERGED) else "")
    line = (f"{job.label:<{width}} {submitted.get('job_id', '-'):>10} {state:<14} {shown:<12} "
            f"{len(epochs):>3}/{s.epochs:<3} {perplexity_text(best) if best else '-':>14}")
    return line + (f"  {note}" if note else "")
