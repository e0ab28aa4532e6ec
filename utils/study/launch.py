"""Launchers that hand each run to submitit as a job: the local executor (Local, here) and the
schedulers built on it (utils/study/slurm.py). Each job runs sweep.run_job and writes logs/<id>/;
submitit's files go to <log_dir>/.slurm/. Signals, checkpoints and requeues: docs/cluster.md.
"""
import contextlib
import os
import time

import submitit

from utils.runs.run_dir import RunDir
from utils.study.launchers import Launcher, add_to_record, record_failure, recorded_failure, slurm_dir
from utils.study.sweep import format_summary, run_job, skip_reason
from utils.train.distributed import Distributed
from utils.train.settings import UsageError
from utils.train.stop import RunInterrupted

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class RunJob(submitit.helpers.Checkpointable):
    """One job of a sweep as a checkpointable callable: a requeued job continues from its checkpoint."""

    def __init__(self, job, threads=1):
        self.job = job
        self.threads = threads  # torch would otherwise start a thread per core of the whole node

    def __call__(self):
        import torch

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
    # overwrite: RANK or MASTER_PORT may be left over in the submitting shell; SLURM's are the truth.
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return Distributed.from_env(device)


@contextlib.contextmanager
def importable():
    """The project on the jobs' PYTHONPATH, so they unpickle RunJob from any working directory."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([PROJECT_ROOT] + ([before] if before else []))
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


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


class Local(Launcher):
    """Runs as submitit jobs by its local executor, max_parallel at a time, waited for (Slurm builds
    on it). Complete runs are not submitted, nor runs whose job is still queued or running (two jobs
    on one folder would interleave their checkpoints)."""

    name = "local"  # its key in LAUNCHERS, as the sweep record names it
    cluster = "local"  # submitit's executor
    array = False  # True: all jobs as one array, not waited for (a scheduler's)

    def run(self, jobs, opts, dist, title):
        todo = [job for job in jobs if skip_reason(job.settings, RunDir(job.settings.log_dir, job.settings.exp_id)) is None]
        active = self.active_jobs(jobs[0].settings.log_dir) if todo else {}
        queued = [job for job in todo if job.settings.exp_id in active]
        if queued:
            print("Already queued or running, not submitted again: "
                  + ", ".join(f"{job.label} (job {active[job.settings.exp_id]})" for job in queued))
            todo = [job for job in todo if job.settings.exp_id not in active]
        return self.collect(jobs, todo, self.submit(todo, opts), title, dist)

    def active_jobs(self, log_dir):
        """{exp_id: job id} of this sweep's jobs still queued or running (locally: none, the command waits)."""
        return {}

    def parameters(self, options, minutes):
        return {}  # the scheduler's own executor parameters

    def executor(self, log_dir, options, name="lm-study"):
        """submitit's executor for `options` (partition, gpus/tasks/cpus per job, mem_gb, time...)."""
        # cluster is explicit: once srun is on PATH, submitit would pick SLURM even for --launcher local
        executor = submitit.AutoExecutor(folder=os.path.join(slurm_dir(log_dir), "%j"), cluster=self.cluster)
        gpus = int(options.get("gpus_per_job") or 0)
        tasks = int(options.get("tasks_per_job") or max(gpus, 1))
        minutes = int(options.get("time") or 60)
        params = dict(name=name, timeout_min=minutes, tasks_per_node=tasks, nodes=1,
                      cpus_per_task=int(options.get("cpus_per_job") or 1))
        params.update(self.parameters(options, minutes))
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return executor

    def submit(self, jobs, options):
        """Submit `jobs` (one array, or waves of max_parallel each waited for); returns the submitit jobs."""
        if not jobs:
            return []
        log_dir = jobs[0].settings.log_dir
        executor, threads = self.executor(log_dir, options), int(options.get("cpus_per_job") or 1)
        wave = len(jobs) if self.array else max(int(options.get("max_parallel") or 1), 1)
        submitted = []
        for start in range(0, len(jobs), wave):
            part = jobs[start:start + wave]
            with importable(), (executor.batch() if self.array else contextlib.nullcontext()):
                batch = [executor.submit(RunJob(job, threads)) for job in part]
            add_to_record(log_dir, part, [h.job_id for h in batch], self.name)
            if not self.array:
                wait(batch)
            submitted += batch
        return submitted

    def collect(self, jobs, todo, handles, title, dist):
        """Once every submitted job ended: all jobs' summaries (Slurm, queued elsewhere, overrides this)."""
        ran = {job.settings.exp_id: outcome(handle, job) for handle, job in zip(handles, todo)}
        summaries = [ran[job.settings.exp_id] if job.settings.exp_id in ran else run_job(job, dist) for job in jobs]
        print(((title + "\n") if title else "") + format_summary(summaries))
        return summaries, handles
