"""Sweeps on a scheduler, through submitit: a SLURM job array (or submitit's local executor, the
same code path on a workstation). Each job runs the ordinary single-run code path (sweep.run_job)
and writes logs/<id>/ as any run does; submitit's own files go to <log_dir>/.slurm/.

Preemption and time limits. SLURM warns a job with USR2 before its limit (--signal, set by
submitit); an external `scontrol requeue`, a preemption or `scancel` sends SIGTERM (and SIGKILL
KillWait seconds later). Either way the run's GracefulStop records the signal, the run writes a
checkpoint at the next step boundary and the status `interrupted`, and hands the signal back to
submitit: on USR2 submitit requeues the job (its checkpoint() resubmits this same callable); on
SIGTERM it only logs, the job ends, and SLURM requeues it (requeue, preemption) or not (scancel).
A requeued job starts again and continues from the run's checkpoint, to the same metrics as an
uninterrupted run; a cancelled one continues when the sweep command is run again.
"""
import contextlib
import json
import os
import re
import subprocess
import time

import submitit

from utils.runs.atomic import atomic_write_json
from utils.runs.schema import STATUS
from utils.train.distributed import Distributed
from utils.train.settings import UsageError
from utils.train.stop import RunInterrupted

LAUNCHERS = ("inline", "local", "slurm")
RECORD = "sweep.json"  # in <log_dir>/.slurm/: exp_id -> job id, label, launcher
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE")
MAX_SIGNAL_DELAY_S = 120  # USR2 this long before the time limit: room for a step and a checkpoint
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def slurm_dir(log_dir):
    return os.path.join(log_dir, ".slurm")


class RunJob(submitit.helpers.Checkpointable):
    """One job of a sweep as a checkpointable callable: on requeue submitit calls it again and the
    run continues from its own checkpoint (the default checkpoint() resubmits this same object)."""

    threads = 1  # CPUs of each task (class default: a job pickled by an older version has none)

    def __init__(self, job, threads=1):
        self.job = job
        self.threads = threads  # torch would otherwise start a thread per core of the whole node

    def __call__(self):
        import torch

        from utils.study.sweep import run_job

        torch.set_num_threads(max(int(self.threads), 1))
        dist = distributed_from_job(self.job.settings.device)
        try:
            return run_job(self.job, dist)
        except RunInterrupted as err:
            return {"exp_id": self.job.settings.exp_id, "label": self.job.label, "status": "interrupted",
                    "message": str(err)}
        except UsageError as err:  # nothing was written to the run folder: say why next to submitit's files
            if dist.is_main:
                record_failure(self.job.settings, str(err))
            raise
        finally:
            dist.close()


def distributed_from_job(device):
    """The process group of a job with several tasks (one per GPU), from SLURM's variables."""
    env = submitit.JobEnvironment()
    if env.num_tasks == 1:
        return Distributed()
    # overwrite: the job inherits the submitting shell's environment, where RANK or MASTER_PORT may
    # be left over from another launcher; within the job, SLURM's own variables are the truth.
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    import torch

    return Distributed.from_env("cuda" if str(device).startswith("cuda") and torch.cuda.is_available() else "cpu")


def failure_path(settings):
    return os.path.join(slurm_dir(settings.log_dir), f"{settings.exp_id}.failed.json")


def record_failure(settings, message):
    atomic_write_json(failure_path(settings), {"exp_id": settings.exp_id, "message": message, "time": time.time()})


def recorded_failure(settings):
    """Why the last job of this run stopped on bad input, when that is newer than the run's own status."""
    try:
        with open(failure_path(settings)) as handle:
            failure = json.load(handle)
    except (OSError, ValueError):
        return None
    status = os.path.join(settings.log_dir, str(settings.exp_id), STATUS)
    if os.path.exists(status) and os.path.getmtime(status) > failure.get("time", 0):
        return None  # a later attempt ran: its status.json tells
    return failure.get("message")


def make_executor(log_dir, options, name="lm-study"):
    """submitit's executor for `options` (launcher, partition, gpus_per_job, tasks_per_job,
    cpus_per_job, mem_gb, time, max_parallel)."""
    cluster = "slurm" if options["launcher"] == "slurm" else "local"
    # cluster is explicit: once srun is on PATH, submitit would pick SLURM even for --launcher local
    executor = submitit.AutoExecutor(folder=os.path.join(slurm_dir(log_dir), "%j"), cluster=cluster)
    gpus = int(options.get("gpus_per_job") or 0)
    tasks = int(options.get("tasks_per_job") or max(gpus, 1))
    minutes = int(options.get("time") or 60)
    params = dict(name=name, timeout_min=minutes, tasks_per_node=tasks, nodes=1,
                  cpus_per_task=int(options.get("cpus_per_job") or 1))
    if cluster == "slurm":
        # a short limit gets its warning at half-time rather than before the job even starts
        delay = int(options.get("signal_delay_s") or min(MAX_SIGNAL_DELAY_S, minutes * 30))
        params.update(slurm_partition=options.get("partition"), slurm_signal_delay_s=delay,
                      slurm_array_parallelism=options.get("max_parallel") or 4)
        if gpus:
            params["gpus_per_node"] = gpus
        if options.get("mem_gb"):
            params["mem_gb"] = options["mem_gb"]
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def read_record(log_dir):
    try:
        with open(os.path.join(slurm_dir(log_dir), RECORD)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def submit(jobs, options):
    """Submit `jobs` as one array (SLURM) or in waves of max_parallel (local, waiting for each).
    Returns the submitit jobs; their ids are recorded in <log_dir>/.slurm/sweep.json."""
    if not jobs:
        return []
    log_dir = jobs[0].settings.log_dir
    executor = make_executor(log_dir, options)
    threads = int(options.get("cpus_per_job") or 1)
    submitted = []
    if options["launcher"] == "slurm":
        with importable(), executor.batch():
            submitted = [executor.submit(RunJob(job, threads)) for job in jobs]
        _record(log_dir, jobs, submitted, options["launcher"])
    else:
        wave = max(int(options.get("max_parallel") or 1), 1)
        for start in range(0, len(jobs), wave):
            with importable():
                batch = [executor.submit(RunJob(job, threads)) for job in jobs[start:start + wave]]
            _record(log_dir, jobs[start:start + wave], batch, options["launcher"])
            wait(batch)
            submitted += batch
    return submitted


@contextlib.contextmanager
def importable():
    """Jobs inherit the submitting environment: put the project on their PYTHONPATH, so that they
    can unpickle RunJob whatever directory `run_exp.py` was started from."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([PROJECT_ROOT] + ([before] if before else []))
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _record(log_dir, jobs, handles, launcher):
    record = read_record(log_dir)
    for job, handle in zip(jobs, handles):
        record[job.settings.exp_id] = {"job_id": handle.job_id, "label": job.label, "launcher": launcher}
    atomic_write_json(os.path.join(slurm_dir(log_dir), RECORD), record)


def wait(handles, poll_s=2.0):
    """Block until every job has ended (asking the scheduler afresh, not submitit's cache)."""
    for handle in handles:
        while not handle.done(force_check=True):
            time.sleep(poll_s)


def outcome(handle, job):
    """The summary a finished job returned; a `failed` one (with the reason) when it raised."""
    try:
        return handle.result()
    except Exception as err:  # bad input for this run, or a crash outside the run: the others go on
        lines = [line for line in str(err).splitlines() if line.strip()]
        message = recorded_failure(job.settings) or (lines[-1] if lines else type(err).__name__)
        return {"config": job.settings.config, "label": job.label, "exp_id": job.settings.exp_id,
                "status": "failed", "message": message}


def slurm_states(job_ids):
    """{job id: state} (array tasks as "<array>_<task>"): sacct's record, overridden by the controller's
    live view (squeue), which knows pending array tasks and requeues at once where sacct lags behind.
    {} when SLURM cannot answer."""
    arrays = sorted({str(job_id).split("_")[0] for job_id in job_ids})
    if not arrays:
        return {}
    states = _ask(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(arrays)])
    states.update(_ask(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(arrays)]))
    return states


def _ask(command):
    """{job id: state} from `command`'s "id|state" lines; {} when it cannot answer."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in done.stdout.splitlines() if done.returncode == 0 else []:
        job_id, _, state = line.partition("|")
        for task in _array_tasks(job_id.strip()):
            states[task] = state.strip()
    return states


def _array_tasks(job_id):
    """sacct names array tasks that have not started as one line, e.g. "12_[2-5%2]": one id each."""
    found = re.fullmatch(r"(\d+)_\[([\d,\-]+)(%\d+)?\]", job_id)
    if not found:
        return [job_id]
    tasks = []
    for part in found.group(2).split(","):
        low, _, high = part.partition("-")
        tasks += [f"{found.group(1)}_{i}" for i in range(int(low), int(high or low) + 1)]
    return tasks


def active_jobs(log_dir):
    """{exp_id: job id} of this sweep's SLURM jobs that are still queued or running."""
    record = {k: v for k, v in read_record(log_dir).items() if v.get("launcher") == "slurm"}
    states = slurm_states(sorted({r["job_id"] for r in record.values()}))
    return {exp_id: r["job_id"] for exp_id, r in record.items()
            if states.get(r["job_id"]) and not states[r["job_id"]].startswith(FINAL_STATES)}


def report_folder(log_dir):
    """Where the report job writes: beside the logs (logs -> plots, logs_smoke -> plots_smoke),
    absolute, so that it never depends on the job's working directory."""
    log_dir = os.path.abspath(log_dir)
    name = os.path.basename(log_dir)
    out = name.replace("logs", "plots", 1) if "logs" in name else f"{name}_plots"
    return os.path.join(os.path.dirname(log_dir), out)


def submit_report(log_dir, out_dir, after, options):
    """The report as a SLURM job that starts once the arrays `after` (job ids) have ended, however
    they ended (afterany): its job id."""
    executor = make_executor(log_dir, dict(options, gpus_per_job=0, tasks_per_job=1), name="lm-report")
    if after:
        executor.update_parameters(slurm_additional_parameters={"dependency": "afterany:" + ":".join(after)})
    from utils.report.__main__ import main as report_main

    with importable():
        return executor.submit(report_main, ["--log_dir", os.path.abspath(log_dir), "--out", out_dir]).job_id
