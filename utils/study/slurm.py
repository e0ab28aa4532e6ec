"""The SLURM launcher: the study's runs as one job array (submitit's SLURM executor), the report
as a job that starts once they have ended, and --status from sacct and squeue. The command
returns once the jobs are submitted; running it again skips complete runs and runs still queued.
"""
import os
import re
import subprocess

from utils.study.launch import Local, importable
from utils.study.launchers import read_record

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE")
MAX_SIGNAL_DELAY_S = 120  # USR2 this long before the time limit: room for a step and a checkpoint


class Slurm(Local):
    name = "slurm"
    cluster = "slurm"
    array = True

    def parameters(self, options, minutes):
        # a short limit gets its warning at half-time rather than before the job even starts
        delay = int(options.get("signal_delay_s") or min(MAX_SIGNAL_DELAY_S, minutes * 30))
        params = dict(slurm_partition=options.get("partition"), slurm_signal_delay_s=delay,
                      slurm_array_parallelism=options.get("max_parallel") or 4)
        if int(options.get("gpus_per_job") or 0):
            params["gpus_per_node"] = int(options["gpus_per_job"])
        if options.get("mem_gb"):
            params["mem_gb"] = options["mem_gb"]
        return params

    def collect(self, jobs, todo, handles, title, dist):
        print(f"{title or 'Runs'}: submitted {len(handles)} job(s) of {len(jobs)} (the others are complete or "
              "queued): " + ", ".join(h.job_id for h in handles))
        return [], handles

    def active_jobs(self, log_dir):
        record = {k: v for k, v in read_record(log_dir).items() if v.get("launcher") == "slurm"}
        states = slurm_states(sorted({r["job_id"] for r in record.values()}))
        return {exp_id: r["job_id"] for exp_id, r in record.items()
                if states.get(r["job_id"]) and not states[r["job_id"]].startswith(FINAL_STATES)}

    def states(self, job_ids):
        return slurm_states(job_ids)

    def finish(self, log_dir, handles, opts):
        """The report as a job after the arrays: the command ends here, the runs go on."""
        if not handles:
            return None
        out = report_folder(log_dir)
        report = self.submit_report(log_dir, out, sorted({h.job_id.split("_")[0] for h in handles}), opts)
        print(f"The report runs as job {report} once they have ended (python -m utils.report --log_dir {log_dir} "
              f"--out {out}); see progress with the same command and --status.")
        return 0

    def submit_report(self, log_dir, out_dir, after, options):
        """The report as a SLURM job that starts once the arrays `after` (job ids) have ended, however
        they ended (afterany): its job id."""
        executor = self.executor(log_dir, dict(options, gpus_per_job=0, tasks_per_job=1), name="lm-report")
        if after:
            executor.update_parameters(slurm_additional_parameters={"dependency": "afterany:" + ":".join(after)})
        from utils.report.__main__ import main as report_main

        with importable():
            return executor.submit(report_main, ["--log_dir", os.path.abspath(log_dir), "--out", out_dir]).job_id


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


def report_folder(log_dir):
    """Where the report job writes: beside the logs (logs -> plots, logs_smoke -> plots_smoke),
    absolute, so that it never depends on the job's working directory."""
    log_dir = os.path.abspath(log_dir)
    name = os.path.basename(log_dir)
    out = name.replace("logs", "plots", 1) if "logs" in name else f"{name}_plots"
    return os.path.join(os.path.dirname(log_dir), out)
