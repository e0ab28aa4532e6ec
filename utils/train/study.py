"""The study from the command line: which runs (configurations x seeds, at the course's learning
rate and, after a search, at a tuned one), where they run (here, submitit's local executor or
SLURM) and where each stands (--status)."""
import json
import os

from utils.runs import schema
from utils.runs.run_dir import RunDir
from utils.train import launch, tuning
from utils.train.progress import perplexity_text
from utils.train.settings import UsageError, validate
from utils.train.sweep import OK_STATUSES, config_jobs, config_settings, format_summary, run_jobs, skip_reason

# The study's own flags (not run settings): name -> (default, type, help); utils.train.parser shows them.
STUDY_FLAGS = {
    "config": (None, str, "configuration(s) to run: N, a list like 1,3,5-8, or all (each run is named after its "
                          "number; run settings below override the configuration where they do not contradict it)"),
    "seeds": (None, str, "run each configuration for each of these seeds, e.g. 0,1,2 (folders <id>-seed<k>); "
                         "default: the course's single run (folder <id>, --seed)"),
    "tune_lr": (False, bool, "first search a learning rate per model and optimizer on a short budget (validation "
                             "only), then run the configurations at the course's lr AND at the chosen one (<id>-tuned)"),
    "tune_grid": (None, str, "grids to search, e.g. 'sgd=0.1,0.3,1;adam=1e-3,3e-3' (default: 5 values per "
                             "optimizer, see utils/train/tuning.py)"),
    "tune_epochs": (None, int, f"epochs of each search run (default: {tuning.DEFAULT_BUDGET['epochs']})"),
    "tune_batches": (None, int, f"batches per split per epoch of each search run (default: "
                                f"{tuning.DEFAULT_BUDGET['max_batches']}; {tuning.SMOKE_BUDGET['max_batches']} with --smoke)"),
    "launcher": ("inline", str, "inline: run here, one after the other; local: submitit's local executor (the same "
                                "code path as a cluster); slurm: submit a SLURM job array and return"),
    "partition": (None, str, "SLURM partition (default: the cluster's)"),
    "gpus_per_job": (0, int, "GPUs per job; with more than 1 the job trains data-parallel, one task per GPU"),
    "tasks_per_job": (None, int, "processes per job (default: gpus_per_job, at least 1); on CPUs: Gloo data-parallel"),
    "cpus_per_job": (1, int, "CPUs per task"),
    "mem_gb": (None, int, "memory per job in GB (default: the partition's)"),
    "time": (60, int, "time limit per job in minutes; a job warned before it is checkpointed and requeued"),
    "max_parallel": (4, int, "jobs running at once (the SLURM array's %%K; waves of this size locally)"),
    "status": (False, bool, "show where every run of this sweep stands (SLURM job, status, epoch, best valid ppl)"),
}


def study_options(given):
    """Every study flag: the value given, else its default."""
    return {name: given.get(name, default) for name, (default, _, _) in STUDY_FLAGS.items()}


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
    if opts["launcher"] not in launch.LAUNCHERS:
        raise UsageError(f"Unknown --launcher {opts['launcher']!r}: use {', '.join(launch.LAUNCHERS)}.")
    if opts["tune_lr"] and "lr" in given:
        raise UsageError("--lr fixes the learning rate and --tune_lr searches it: pass one of them.")
    if "seed" in given and opts["seeds"]:
        raise UsageError("--seed and --seeds contradict each other: pass one of them.")


def _tuning_plan(numbers, given, opts, log_dir):
    smoke = config_settings(numbers[0], **given).smoke
    budget = dict(tuning.SMOKE_BUDGET if smoke else tuning.DEFAULT_BUDGET)
    budget.update({k: v for k, v in (("epochs", opts["tune_epochs"]), ("max_batches", opts["tune_batches"]))
                   if v is not None})
    grids = tuning.parse_grid(opts["tune_grid"])
    return grids, budget, tuning.search_jobs(numbers, grids, budget, log_dir, **given)


def _execute(jobs, opts, dist, title):
    """Run jobs here, or submit them; returns (summaries, submitted handles)."""
    for job in jobs:  # every run's settings checked before the first one writes anything
        validate(job.settings)
    if opts["launcher"] == "inline":
        return run_jobs(jobs, dist, title), []
    todo = [job for job in jobs if skip_reason(job.settings, RunDir(job.settings.log_dir, job.settings.exp_id)) is None]
    active = launch.active_jobs(jobs[0].settings.log_dir) if todo else {}
    queued = [job for job in todo if job.settings.exp_id in active]
    if queued:  # a second job on the same run folder would interleave two runs' checkpoints
        print("Already queued or running, not submitted again: "
              + ", ".join(f"{job.label} (job {active[job.settings.exp_id]})" for job in queued))
        todo = [job for job in todo if job.settings.exp_id not in active]
    handles = launch.submit(todo, opts)
    if opts["launcher"] == "local":
        summaries = [launch.outcome(handle, job) for handle, job in zip(handles, todo)]
        print(((title + "\n") if title else "") + format_summary(summaries))
        return summaries, handles
    print(f"{title or 'Runs'}: submitted {len(handles)} job(s) of {len(jobs)} (the others are complete or queued): "
          + ", ".join(h.job_id for h in handles))
    return [], handles


def _search_finished(search):
    final = (schema.COMPLETED, schema.DIVERGED, schema.FAILED)
    return all((RunDir(j.settings.log_dir, j.settings.exp_id).status() or {}).get("status") in final for j in search)


def run_study(numbers, given, opts, dist):
    """The exit code of `run_exp.py --config ...` with the study flags in `opts`."""
    _check(given, opts)
    seeds = parse_seeds(opts["seeds"])
    log_dir = config_settings(numbers[0], **given).log_dir
    jobs = config_jobs(numbers, seeds, **given)
    search = []
    if opts["tune_lr"]:
        grids, budget, search = _tuning_plan(numbers, given, opts, log_dir)
    if opts["status"]:
        print(status_table(search + jobs + tuned_jobs(numbers, seeds, given, log_dir)))
        return 0
    summaries, handles = [], []
    if search:
        found, handles = _execute(search, opts, dist, "Learning-rate search (validation only)")
        if not _search_finished(search):
            print("The search is still running: rerun this command once its jobs have ended to launch the tuned runs.")
        else:
            record, path = tuning.record_search(numbers, grids, budget, log_dir, search[0].settings) if dist.is_main \
                else (None, None)
            record, path = dist.broadcast((record, path))
            print(f"Chosen learning rates ({path}): " + ", ".join(f"{k} {v:g}" for k, v in record["choice"].items()))
            jobs += config_jobs(numbers, seeds, tuned=tuning.tuned_choices(record, path), **given)
    ran, more = _execute(jobs, opts, dist, None)
    summaries, handles = summaries + ran, handles + more
    if opts["launcher"] == "slurm" and handles:
        out = launch.report_folder(log_dir)
        arrays = sorted({handle.job_id.split("_")[0] for handle in handles})
        report = launch.submit_report(log_dir, out, arrays, opts)
        print(f"The report runs as job {report} once they have ended (python -m utils.report --log_dir {log_dir} "
              f"--out {out}); see progress with the same command and --status.")
        return 0
    if any(s["status"] == "conflict" for s in summaries):
        return 2
    return 0 if all(s["status"] in OK_STATUSES for s in summaries) else 1


def tuned_jobs(numbers, seeds, given, log_dir):
    """The tuned arm, when a search record exists (for --status)."""
    path = os.path.join(tuning.tuning_dir(log_dir), schema.TUNING_RECORD)
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return []
    return config_jobs(numbers, seeds, tuned=tuning.tuned_choices(record, path), **given)


def status_table(jobs):
    """One line per run: SLURM job and state, run status, epoch, best validation perplexity so far,
    and why it failed when it did."""
    records = {}  # log_dir -> its sweep record (the search runs live in their own log_dir)
    for job in jobs:
        if job.settings.log_dir not in records:
            records[job.settings.log_dir] = launch.read_record(job.settings.log_dir)
    submitted = {(j.settings.log_dir, j.settings.exp_id): records[j.settings.log_dir].get(j.settings.exp_id, {})
                 for j in jobs}
    # only SLURM's ids mean something to sacct (a local job's id is a process id)
    states = launch.slurm_states(sorted({r["job_id"] for r in submitted.values() if r.get("launcher") == "slurm"}))
    width = max(len(j.label) for j in jobs) if jobs else 10
    lines = [f"{'run':<{width}} {'job':>10} {'SLURM state':<14} {'status':<12} {'epoch':>7} {'best valid ppl':>14}"]
    for job in jobs:
        lines.append(_status_line(job, submitted[(job.settings.log_dir, job.settings.exp_id)], states, width))
    return "\n".join(lines)


def _status_line(job, submitted, states, width):
    s = job.settings
    run_dir = RunDir(s.log_dir, s.exp_id)
    status = run_dir.status() or {}
    epochs = _epochs(run_dir)
    best = min((m["valid_ppl"] for m in epochs), default=None)
    failure = launch.recorded_failure(s)  # bad input: the job stopped before the run wrote anything new
    state = states.get(submitted.get("job_id"), "-") if submitted.get("launcher") == "slurm" else \
        submitted.get("launcher", "-")
    shown = "failed" if failure else status.get("status", "-")
    note = failure or (status.get("message", "") if shown in (schema.FAILED, schema.DIVERGED) else "")
    line = (f"{job.label:<{width}} {submitted.get('job_id', '-'):>10} {state:<14} {shown:<12} "
            f"{len(epochs):>3}/{s.epochs:<3} {perplexity_text(best) if best else '-':>14}")
    return line + (f"  {note}" if note else "")


def _epochs(run_dir):
    try:
        with open(run_dir.file(schema.METRICS)) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError):
        return []
