"""Sweeps on a scheduler, through submitit: a SLURM job array (or submitit's local executor, the
same code path on a workstation). Each job runs the ordinary single-run code path (sweep.run_job)
and writes logs/<id>/ as any run does; submitit's own files go to <log_dir>/.slurm/.

Preemption and time limits. SLURM warns a job with USR2 before its limit (--signal, set by
submitit); an external `scontrol requeue` or `scancel` sends SIGTERM. Either way the run's
GracefulStop records the signal, the run writes a checkpoint at the next step boundary and the
status `interrupted`, and hands the signal back: submitit then requeues the job on USR2 (its
checkpoint() resubmits the same callable), and a requeued job starts again and continues from the
checkpoint, to the same metrics as an uninterrupted run.
"""
import json
import os
import subprocess
import time

import submitit

from utils.runs.atomic import atomic_write_json
from utils.train.distributed import Distributed
from utils.train.settings import UsageError
from utils.train.stop import RunInterrupted

LAUNCHERS = ("inline", "local", "slurm")
RECORD = "sweep.json"  # in <log_dir>/.slurm/: exp_id -> job id, label, launcher
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED")


def slurm_dir(log_dir):
    return os.path.join(log_dir, ".slurm")


class RunJob(submitit.helpers.Checkpointable):
    """One job of a sweep as a checkpointable callable: on requeue submitit calls it again and the
    run continues from its own checkpoint (the default checkpoint() resubmits this same object)."""

    def __init__(self, job):
        self.job = job

    def __call__(self):
        from utils.train.sweep import run_job

        dist = distributed_from_job(self.job.settings.device)
        try:
            return run_job(self.job, dist)
        except RunInterrupted as err:
            return {"exp_id": self.job.settings.exp_id, "label": self.job.label, "status": "interrupted",
                    "message": str(err)}
        except UsageError as err:  # nothing was written to the run folder: say why next to submitit's files
            record_failure(self.job.settings, str(err))
            raise
        finally:
            dist.close()


def distributed_from_job(device):
    """The process group of a job with several tasks (one per GPU), from SLURM's variables."""
    env = submitit.JobEnvironment()
    if env.num_tasks == 1:
        return Distributed()
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    import torch

    return Distributed.from_env("cuda" if str(device).startswith("cuda") and torch.cuda.is_available() else "cpu")


def record_failure(settings, message):
    path = os.path.join(slurm_dir(settings.log_dir), f"{settings.exp_id}.failed.json")
    atomic_write_json(path, {"exp_id": settings.exp_id, "message": message, "time": time.time()})


def make_executor(log_dir, options, name="lm-study"):
    """submitit's executor for `options` (launcher, partition, gpus_per_job, tasks_per_job,
    cpus_per_job, mem_gb, time, max_parallel)."""
    cluster = "slurm" if options["launcher"] == "slurm" else "local"
    executor = submitit.AutoExecutor(folder=os.path.join(slurm_dir(log_dir), "%j"), cluster=cluster)
    gpus = int(options.get("gpus_per_job") or 0)
    tasks = int(options.get("tasks_per_job") or max(gpus, 1))
    params = dict(name=name, timeout_min=int(options.get("time") or 60), tasks_per_node=tasks, nodes=1,
                  cpus_per_task=int(options.get("cpus_per_job") or 1))
    if cluster == "slurm":
        params.update(slurm_partition=options.get("partition"), slurm_array_parallelism=options.get("max_parallel") or 4,
                      slurm_signal_delay_s=int(options.get("signal_delay_s") or 120))
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
    submitted = []
    if options["launcher"] == "slurm":
        with executor.batch():
            submitted = [executor.submit(RunJob(job)) for job in jobs]
    else:
        wave = max(int(options.get("max_parallel") or 1), 1)
        for start in range(0, len(jobs), wave):
            batch = [executor.submit(RunJob(job)) for job in jobs[start:start + wave]]
            wait(batch)
            submitted += batch
    record = read_record(log_dir)
    for job, handle in zip(jobs, submitted):
        record[job.settings.exp_id] = {"job_id": handle.job_id, "label": job.label, "launcher": options["launcher"]}
    atomic_write_json(os.path.join(slurm_dir(log_dir), RECORD), record)
    return submitted


def wait(handles, poll_s=2.0):
    """Block until every job has ended (asking the scheduler afresh, not submitit's cache)."""
    for handle in handles:
        while not handle.done(force_check=True):
            time.sleep(poll_s)


def slurm_states(job_ids):
    """{job id: state} from sacct (array tasks as "<array>_<task>"); {} when sacct cannot answer."""
    if not job_ids:
        return {}
    try:
        done = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in done.stdout.splitlines():
        job_id, _, state = line.partition("|")
        states[job_id.strip()] = state.strip()
    return states


def submit_report(log_dir, out_dir, after, options):
    """The report as a SLURM job that starts when the array has ended (afterany): its job id."""
    executor = make_executor(log_dir, dict(options, gpus_per_job=0, tasks_per_job=1), name="lm-report")
    if after:
        executor.update_parameters(slurm_additional_parameters={"dependency": f"afterany:{after}"})
    from utils.report.__main__ import main as report_main

    return executor.submit(report_main, ["--log_dir", log_dir, "--out", out_dir]).job_id
