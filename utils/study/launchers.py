"""Where the study's runs execute, by name (a new scheduler: docs/cluster.md); modules imported
only when chosen (a plain run never imports submitit). Also the record of submitted jobs and a
job's bad-input note.
"""
import importlib
import os
import time
from dataclasses import dataclass

from utils.runs.atomic import atomic_write_json, read_json
from utils.runs.schema import STATUS
from utils.train.settings import UsageError

RECORD = "sweep.json"  # in <log_dir>/.slurm/: exp_id -> job id, label, launcher


@dataclass(frozen=True)
class LauncherEntry:
    where: str  # "module:Class" of the Launcher; the module is imported only when the launcher is used
    help: str  # what --help says of it


LAUNCHERS = {
    "inline": LauncherEntry("utils.study.launchers:Inline", "run here, one after the other"),
    "local": LauncherEntry("utils.study.launch:Local", "submitit's local executor (the same code path as a cluster)"),
    "slurm": LauncherEntry("utils.study.slurm:Slurm", "submit a SLURM job array and return"),
}


class Launcher:
    """How a batch of the study's jobs runs."""

    def run(self, jobs, opts, dist, title):
        """Run or submit `jobs`: (summaries of the runs that ended, handles of the jobs still out there)."""
        raise NotImplementedError

    def finish(self, log_dir, handles, opts):
        """Once all was run or submitted: an exit code ending the command now, or None (judge summaries)."""
        return None

    def states(self, job_ids):
        """{job id: the scheduler's state} for --status; {} where the scheduler keeps none."""
        return {}


class Inline(Launcher):
    def run(self, jobs, opts, dist, title):
        from utils.study.sweep import run_jobs

        return run_jobs(jobs, dist, title), []


def get_launcher(name):
    """A fresh launcher `name`; UsageError naming the choices."""
    if name not in LAUNCHERS:
        raise UsageError(f"Unknown --launcher {name!r}: use {', '.join(LAUNCHERS)}.")
    module, _, cls = LAUNCHERS[name].where.partition(":")
    return getattr(importlib.import_module(module), cls)()


def slurm_dir(log_dir):
    """Where submitit's files and the sweep record go (for every scheduler launcher)."""
    return os.path.join(log_dir, ".slurm")


def read_record(log_dir):
    return read_json(os.path.join(slurm_dir(log_dir), RECORD)) or {}


def add_to_record(log_dir, jobs, job_ids, launcher):
    record = read_record(log_dir)
    for job, job_id in zip(jobs, job_ids):
        record[job.settings.exp_id] = {"job_id": job_id, "label": job.label, "launcher": launcher}
    atomic_write_json(os.path.join(slurm_dir(log_dir), RECORD), record)


def failure_path(settings):
    return os.path.join(slurm_dir(settings.log_dir), f"{settings.exp_id}.failed.json")


def record_failure(settings, message):
    atomic_write_json(failure_path(settings), {"exp_id": settings.exp_id, "message": message, "time": time.time()})


def recorded_failure(settings):
    """Why the last job of this run stopped on bad input, when that is newer than the run's own status."""
    failure = read_json(failure_path(settings))
    if failure is None:
        return None
    status = os.path.join(settings.log_dir, str(settings.exp_id), STATUS)
    if os.path.exists(status) and os.path.getmtime(status) > failure.get("time", 0):
        return None  # a later attempt ran: its status.json tells
    return failure.get("message")
