"""The launcher on a REAL SLURM cluster (one node, started by the session fixture `slurm_cluster`):
a sweep runs to completion and --status shows it; a requeued job and a job warned by USR2 (what a
time limit sends) resume from their checkpoints to the metrics of an uninterrupted run; a cancelled
job says so and a rerun of the sweep finishes it; bad input fails one job, not the others; the
local executor gives the same results.

Everything waits for events (a finished epoch in metrics.jsonl, a final sacct state), never for a
fixed time. Tiny data, the smoke preset, CPU only."""
import json
import os
import re
import subprocess
import tempfile
import time
import unittest

import pytest
import torch

from tests import fixtures
import run_exp
from utils.study import launchers, slurm

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

PARTITION = os.environ.get("SLURM_LOCAL_PARTITION", "debug")
TIME_KEYS = ("train_seconds", "valid_seconds", "train_tokens_per_s")
WAIT_S = 180  # per awaited event: generous for a loaded 2-core machine; normally seconds
LONG = ["--epochs", "10", "--checkpoint_every", "1"]  # still running when the test acts on it
TMP = {}  # the module's data: tiny corpus and embeddings (see setUpModule)


def setUpModule():
    TMP["dir"] = tempfile.TemporaryDirectory()
    root = TMP["dir"].name
    TMP["data"] = fixtures.write_corpus(os.path.join(root, "data"))
    TMP["emb"] = fixtures.write_embeddings(os.path.join(root, "emb.npz"))
    # too few position rows for MiniGPT1's 256-token items; fine for the LSTM (bad input for one configuration)
    TMP["short_emb"] = fixtures.write_embeddings(os.path.join(root, "short.npz"), positions=100)


def tearDownModule():
    TMP["dir"].cleanup()


def folder(name):
    return os.path.join(TMP["dir"].name, name)


def argv(log_dir, configs, *extra, launcher="slurm", embeddings=None):
    scheduler = ["--partition", PARTITION, "--time", "60", "--max_parallel", "2"] if launcher != "inline" else []
    return ["--config", configs, "--smoke", "--data_folder", TMP["data"], "--embeddings", embeddings or TMP["emb"],
            "--device", "cpu", "--log_dir", log_dir, "--print_every", "1", "--launcher", launcher, *scheduler, *extra]


def cli(args):
    return fixtures.run_main(run_exp.cli, *args)


def submit(args):
    """Submit a sweep; returns ({exp_id: job id}, report job id)."""
    code, out, err = cli(args)
    report = re.search(r"The report runs as job (\d+)", out)
    if code != 0 or not report:
        raise AssertionError(f"submission failed (exit {code}):\n{out}{err}")
    log_dir = args[args.index("--log_dir") + 1]
    return {k: v["job_id"] for k, v in launchers.read_record(log_dir).items()}, report.group(1)


def wait_for(check, what, log=None):
    """check()'s first truthy value; fails after WAIT_S with `what` and the job's log tail."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {WAIT_S}s for {what}" + (f"; job log:\n{log()[-3000:]}" if log else ""))


def state(job_id):
    return slurm.slurm_states([job_id]).get(job_id, "")


def final_state(job_id, log_dir=None):
    """The job's state once SLURM says it has ended (the README's robust wait)."""
    return wait_for(lambda: state(job_id) if state(job_id).startswith(slurm.FINAL_STATES) else None,
                    f"a final state of job {job_id}", lambda: job_log(log_dir, job_id) if log_dir else "")


def job_log(log_dir, job_id):
    """What the job printed (stdout and stderr of its first task), all its attempts."""
    text = ""
    for stream in ("out", "err"):
        path = os.path.join(launchers.slurm_dir(log_dir), job_id, f"{job_id}_0_log.{stream}")
        if os.path.exists(path):
            with open(path) as handle:
                text += handle.read()
    return text


def epochs_done(log_dir, exp_id):
    try:
        with open(os.path.join(log_dir, exp_id, "metrics.jsonl")) as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


def run_status(log_dir, exp_id):
    try:
        with open(os.path.join(log_dir, exp_id, "status.json")) as handle:
            return json.load(handle)["status"]
    except (OSError, ValueError):
        return None


def metrics(log_dir, exp_id):
    """metrics.jsonl without the wall-clock fields, which differ between any two runs."""
    with open(os.path.join(log_dir, exp_id, "metrics.jsonl")) as handle:
        return [{k: v for k, v in json.loads(line).items() if k not in TIME_KEYS} for line in handle]


def final_test_loss(log_dir, exp_id):
    with open(os.path.join(log_dir, exp_id, "test_metrics.json")) as handle:
        return json.load(handle)["test_loss"]


def status_lines(args):
    """--status of the sweep `args`: {label prefix "N:": its line}."""
    code, out, err = cli(args + ["--status"])
    assert code == 0, out + err
    return {line.split()[0]: line for line in out.splitlines()[1:]}


def scancel(*ids):
    subprocess.run(["scancel", *ids], check=True, capture_output=True)


def inline_reference(log_dir, configs, *extra):
    """The same run here, uninterrupted, on one thread as the jobs (same arithmetic)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cli(argv(log_dir, configs, *extra, launcher="inline"))
    finally:
        torch.set_num_threads(threads)


class SweepOnSlurmAndLocally(unittest.TestCase):
    """Configurations 1 (LSTM) and 5 (MiniGPT1) as a SLURM array, and the same through submitit's
    local executor while the array runs."""

    @classmethod
    def setUpClass(cls):
        cls.logs = folder("logs_sweep")
        cls.args = argv(cls.logs, "1,5")
        cls.ids, cls.report = submit(cls.args)
        cls.ddp_logs = folder("logs_ddp")  # queued behind the array: it needs both CPUs
        ddp_ids, ddp_report = submit(argv(cls.ddp_logs, "1", "--tasks_per_job", "2"))
        scancel(ddp_report)
        cls.local_logs = folder("logs_local")
        cls.local = cli(argv(cls.local_logs, "1,5", launcher="local"))
        cls.states = {exp_id: final_state(job_id, cls.logs) for exp_id, job_id in cls.ids.items()}
        cls.report_state = final_state(cls.report)
        cls.ddp_state = final_state(ddp_ids["1"], cls.ddp_logs)

    def test_both_runs_completed_with_their_logs(self):
        self.assertEqual(self.states, {"1": "COMPLETED", "5": "COMPLETED"})
        for exp_id in ("1", "5"):
            self.assertEqual(run_status(self.logs, exp_id), "completed")
            self.assertEqual([m["epoch"] for m in metrics(self.logs, exp_id)], [1, 2])
            self.assertIn("Job completed successfully", job_log(self.logs, self.ids[exp_id]))

    def test_status_shows_job_state_status_and_epochs(self):
        lines = status_lines(self.args)
        for exp_id in ("1", "5"):
            self.assertRegex(lines[f"{exp_id}:"], rf" {self.ids[exp_id]} +COMPLETED +completed +2/2 +\S+$")

    def test_report_job_ran_after_the_array(self):
        self.assertEqual(self.report_state, "COMPLETED")  # and saw both runs completed: it ran after them
        with open(os.path.join(folder("plots_sweep"), "results.md")) as handle:
            text = handle.read()
        self.assertIn("1: LSTM x1, adam: completed, 2 epoch(s)", text)
        self.assertIn("5: MiniGPT1 x1, adam: completed, 2 epoch(s)", text)

    def test_two_tasks_per_job_train_data_parallel(self):
        self.assertEqual(self.ddp_state, "COMPLETED")
        with open(os.path.join(self.ddp_logs, "1", "provenance.json")) as handle:
            self.assertEqual(json.load(handle)["distributed"], {"world_size": 2, "backend": "gloo", "rank": 0})
        two, one = metrics(self.ddp_logs, "1"), metrics(self.logs, "1")
        self.assertEqual(len(two), 2)
        for a, b in zip(two, one):  # float32 sums in another order (see test_distributed.py): 1e-4 relative
            for key in ("train_loss", "valid_loss", "valid_ppl"):
                self.assertAlmostEqual(a[key] / b[key], 1.0, delta=1e-4)

    def test_local_executor_gives_the_same_results(self):
        code, out, err = self.local
        self.assertEqual(code, 0, out + err)
        self.assertEqual(out.count("completed"), 2, out)
        for exp_id in ("1", "5"):
            self.assertEqual(metrics(self.local_logs, exp_id), metrics(self.logs, exp_id))
            self.assertEqual(final_test_loss(self.local_logs, exp_id), final_test_loss(self.logs, exp_id))
        lines = status_lines(argv(self.local_logs, "1,5", launcher="local"))
        self.assertRegex(lines["1:"], r" \d+ +local +completed +2/2 ")


class InterruptedJobsResume(unittest.TestCase):
    """Configuration 1 for 10 epochs, twice: one job requeued from outside (`scontrol requeue`: SIGTERM,
    as a preemption), one warned by USR2 (what SLURM sends before a time limit; submitit then
    checkpoints and requeues it itself). Both act once an epoch is done, and both must end with the
    metrics of an uninterrupted run."""

    @classmethod
    def setUpClass(cls):
        cls.logs = {how: folder(f"logs_{how}") for how in ("requeue", "usr2")}
        cls.ids = {}
        for how, logs in cls.logs.items():
            ids, report = submit(argv(logs, "1", *LONG))
            scancel(report)  # not needed here: leave the 2 CPUs to the runs
            cls.ids[how] = ids["1"]
        for how, command in (("requeue", ["scontrol", "requeue"]), ("usr2", ["scancel", "--signal", "USR2"])):
            logs, job_id = cls.logs[how], cls.ids[how]
            wait_for(lambda: epochs_done(logs, "1") >= 1, f"epoch 1 of job {job_id}", lambda: job_log(logs, job_id))
            subprocess.run(command + [job_id], check=True, capture_output=True)
        cls.reference = folder("logs_reference")
        cls.inline = inline_reference(cls.reference, "1", *LONG)  # meanwhile, here
        for how, logs in cls.logs.items():
            job_id = cls.ids[how]
            wait_for(lambda: run_status(logs, "1") == "completed", f"job {job_id} to complete its run",
                     lambda: job_log(logs, job_id))
        cls.states = {how: final_state(job_id, cls.logs[how]) for how, job_id in cls.ids.items()}

    def test_both_jobs_ran_twice_and_the_second_time_resumed(self):
        self.assertEqual(self.states, {"requeue": "COMPLETED", "usr2": "COMPLETED"})
        for how, logs in self.logs.items():
            with self.subTest(how=how):
                log = job_log(logs, self.ids[how])
                self.assertEqual(log.count("Starting with JobEnvironment"), 2, log)
                self.assertRegex(log, r"Continuing \S+ \(interrupted at epoch \d+, step \d+\) from its checkpoint")
                self.assertEqual(log.count("epoch 1/10 step 1/2"), 1, log)  # never started over

    def test_usr2_was_handed_to_submitit_which_requeued(self):
        log = job_log(self.logs["usr2"], self.ids["usr2"])
        self.assertIn("Caught signal SIGUSR2", log)
        # submitit's checkpoint() then its own `scontrol requeue` (whose "Requeued job" line can be lost
        # in the README's rare race, where the requeue's SIGTERM kills that scontrol; the job still requeues)
        self.assertIn("Calling checkpoint method", log)

    def test_same_metrics_as_an_uninterrupted_run(self):
        self.assertEqual(self.inline[0], 0, self.inline[1] + self.inline[2])
        for how, logs in self.logs.items():
            with self.subTest(how=how):
                self.assertEqual(len(metrics(logs, "1")), 10)
                self.assertEqual(metrics(logs, "1"), metrics(self.reference, "1"))
                self.assertEqual(final_test_loss(logs, "1"), final_test_loss(self.reference, "1"))


class CancelledJobContinuesOnRerun(unittest.TestCase):
    """Configuration 5 (MiniGPT1) for 10 epochs, cancelled after its first epoch, then the same sweep
    command again."""

    @classmethod
    def setUpClass(cls):
        cls.logs = folder("logs_cancel")
        cls.args = argv(cls.logs, "5", *LONG)
        ids, report = submit(cls.args)
        cls.first = ids["5"]
        scancel(report)
        wait_for(lambda: epochs_done(cls.logs, "5") >= 1, f"epoch 1 of job {cls.first}",
                 lambda: job_log(cls.logs, cls.first))
        cls.while_running = cli(cls.args)  # the same command again while the job runs: nothing new
        scancel(cls.first)
        cls.cancelled = final_state(cls.first, cls.logs)
        cls.status_after_cancel = status_lines(cls.args)["5:"]
        cls.epochs_after_cancel = epochs_done(cls.logs, "5")
        ids, report = submit(cls.args)
        cls.second = ids["5"]
        cls.final = final_state(cls.second, cls.logs)
        final_state(report)
        cls.status_at_end = status_lines(cls.args)["5:"]

    def test_a_rerun_while_it_runs_submits_nothing(self):
        code, out, err = self.while_running
        self.assertEqual(code, 0, out + err)
        self.assertIn(f"Already queued or running, not submitted again: 5: MiniGPT1 x1, adam (job {self.first})", out)
        self.assertIn("submitted 0 job(s) of 1", out)
        self.assertNotIn("The report runs", out)

    def test_status_says_cancelled_and_interrupted(self):
        self.assertTrue(self.cancelled.startswith("CANCELLED"), self.cancelled)
        self.assertLess(self.epochs_after_cancel, 10)
        self.assertRegex(self.status_after_cancel, rf" {self.first} +CANCELLED.* +interrupted +\d+/10 ")

    def test_rerun_continues_it_to_completion(self):
        self.assertNotEqual(self.second, self.first)
        self.assertEqual(self.final, "COMPLETED")
        self.assertIn("Continuing", job_log(self.logs, self.second))
        self.assertEqual([m["epoch"] for m in metrics(self.logs, "5")], list(range(1, 11)))
        self.assertRegex(self.status_at_end, rf" {self.second} +COMPLETED +completed +10/10 ")


class BadInputFailsOneJobOnly(unittest.TestCase):
    """Embeddings with too few position rows for MiniGPT1 (configuration 5) but fine for the LSTM
    (configuration 1): on SLURM and on the local executor."""

    @classmethod
    def setUpClass(cls):
        cls.logs = folder("logs_bad")
        cls.args = argv(cls.logs, "1,5", embeddings=TMP["short_emb"])
        cls.ids, cls.report = submit(cls.args)
        cls.local_logs = folder("logs_bad_local")
        cls.local = cli(argv(cls.local_logs, "5", launcher="local", embeddings=TMP["short_emb"]))
        cls.states = {exp_id: final_state(job_id, cls.logs) for exp_id, job_id in cls.ids.items()}
        final_state(cls.report)
        cls.lines = status_lines(cls.args)

    def test_the_bad_job_failed_the_other_completed(self):
        self.assertEqual(self.states, {"1": "COMPLETED", "5": "FAILED"})
        self.assertEqual(run_status(self.logs, "1"), "completed")
        self.assertFalse(os.path.exists(os.path.join(self.logs, "5")))  # bad input writes nothing

    def test_status_says_failed_and_why(self):
        self.assertRegex(self.lines["5:"], rf" {self.ids['5']} +FAILED +failed +0/2 +- +\S*short.npz: MiniGPT1 needs "
                                           r">= 256 position rows")
        self.assertRegex(self.lines["1:"], rf" {self.ids['1']} +COMPLETED +completed +2/2 ")

    def test_local_executor_reports_the_failure(self):
        code, out, err = self.local
        self.assertEqual(code, 1, out + err)
        self.assertRegex(out, r"5: MiniGPT1 x1, adam +failed ")
        self.assertIn("MiniGPT1 needs >= 256 position rows", out)


if __name__ == "__main__":
    unittest.main()
