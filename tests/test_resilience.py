"""A run is never stuck and never lost: Ctrl-C and SIGTERM mid-epoch, a crash after a mid-epoch
checkpoint, corrupt checkpoints, other embeddings, usage errors under --config, explicit flags.
Signals are real (os.kill of this process at a chosen training step, so nothing depends on timing)."""
import json
import os
import signal
import tempfile
import unittest
from unittest import mock

import pytest
import torch

from tests import fixtures
import run_exp
from utils.models.base import TokenNLL
from utils.runs.schema import CHECKPOINT
from utils.train import passes
from utils.train.progress import perplexity_text
from utils.study.configs import CONFIGS
from utils.study.sweep import config_settings, format_summary
from utils.train.settings import UsageError

TIME_KEYS = ("train_seconds", "valid_seconds", "train_tokens_per_s")


def at_step(n, action):
    """Patch the training pass so that `action()` runs right after the n-th step (counted from 1)."""
    real, calls = passes.Pass.add, {"n": 0}

    def add(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == n:
                action()

    return mock.patch.object(passes.Pass, "add", add)


def in_evaluation(n, action):
    """Patch TokenNLL so that `action()` runs right after its n-th evaluation forward pass."""
    real, calls = TokenNLL.forward, {"n": 0}

    def forward(module, source, target):
        out = real(module, source, target)
        if not module.training:
            calls["n"] += 1
            if calls["n"] == n:
                action()
        return out

    return mock.patch.object(TokenNLL, "forward", forward)


def send(signum):
    return lambda: os.kill(os.getpid(), signum)


def crash():
    raise RuntimeError("simulated crash")


class RunCase(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.data = fixtures.write_corpus(os.path.join(self.tmp, "data"))  # 10 training items
        self.emb = fixtures.write_embeddings(os.path.join(self.tmp, "emb.npz"))
        self.logs = os.path.join(self.tmp, "logs")

    def argv(self, exp_id="run", *extra, model="lstm"):
        return ["--data_folder", self.data, "--embeddings", self.emb, "--device", "cpu", "--log_dir", self.logs,
                "--exp_id", exp_id, "--model", model, "--epochs", "2", "--batch_size", "2", "--print_every", "1000",
                *extra]

    def cli(self, *argv):
        return fixtures.run_main(run_exp.cli, *argv)

    def path(self, exp_id, name):
        return os.path.join(self.logs, exp_id, name)

    def read_json(self, exp_id, name):
        with open(self.path(exp_id, name)) as handle:
            return json.load(handle)

    def metrics(self, exp_id):
        """metrics.jsonl without the wall-clock fields, which differ between any two runs."""
        with open(self.path(exp_id, "metrics.jsonl")) as handle:
            return [{k: v for k, v in json.loads(line).items() if k not in TIME_KEYS} for line in handle]

    def assert_refused(self, code, err, *words):
        self.assertEqual(code, 2, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        for word in words:
            self.assertIn(word, err)


@pytest.mark.slow
class SignalsMidEpoch(RunCase):
    def test_signal_then_plain_rerun_equals_uninterrupted_run(self):
        for model in ("lstm", "gpt1"):
            self.assertEqual(self.cli(*self.argv(f"{model}-whole", model=model))[0], 0)
            for signum in (signal.SIGINT, signal.SIGTERM):
                exp_id = f"{model}-{signum.name}"
                with self.subTest(model=model, signal=signum.name):
                    with at_step(3, send(signum)):  # epoch 1 has 5 steps
                        code, _, err = self.cli(*self.argv(exp_id, model=model))
                    self.assertEqual(code, 128 + signum, err)
                    self.assertEqual(len(err.strip().splitlines()), 1, err)
                    self.assertIn("rerun the same command", err)
                    status = self.read_json(exp_id, "status.json")
                    self.assertEqual((status["status"], status["epoch"], status["step"]), ("interrupted", 1, 3))
                    self.assertEqual(status["epochs_done"], 0)
                    self.assertIn(f"at epoch {status['epoch']} of {status['epochs']}, step 3", status["message"])
                    code, out, err = self.cli(*self.argv(exp_id, model=model))
                    self.assertEqual(code, 0, err)
                    self.assertIn("from its checkpoint at epoch 1, step 3", out)
                    self.assertEqual(self.metrics(exp_id), self.metrics(f"{model}-whole"))
                    self.assertEqual(self.read_json(exp_id, "test_metrics.json")["test_loss"],
                                     self.read_json(f"{model}-whole", "test_metrics.json")["test_loss"])

    def test_signal_during_validation_resumes_after_training(self):
        self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        with in_evaluation(1, send(signal.SIGTERM)):  # epoch 1's first validation batch
            code, _, err = self.cli(*self.argv("cut"))
        self.assertEqual(code, 143, err)
        status = self.read_json("cut", "status.json")
        self.assertEqual((status["epoch"], status["step"], status["epochs_done"]), (1, 5, 0))  # epoch 1's training kept
        self.assertEqual(self.cli(*self.argv("cut"))[0], 0)
        self.assertEqual(self.metrics("cut"), self.metrics("whole"))

    def test_a_real_process_exits_130_without_traceback(self):
        script = ("import signal, sys; from tests import test_resilience as t; import run_exp;"
                  "patch = t.at_step(2, t.send(signal.SIGINT)); patch.start(); sys.exit(run_exp.cli(sys.argv[1:]))")
        done = fixtures.run_python("-c", script, *self.argv("proc"))
        self.assertEqual(done.returncode, 130, done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertEqual(self.read_json("proc", "status.json")["status"], "interrupted")


@pytest.mark.slow
class CrashAfterMidEpochCheckpoint(RunCase):
    def test_rerun_continues_from_the_step_checkpoint(self):
        for model in ("lstm", "gpt1"):
            with self.subTest(model=model):
                self.assertEqual(self.cli(*self.argv(f"{model}-whole", model=model))[0], 0)
                with at_step(5, crash), self.assertRaises(RuntimeError):  # crashes in step 5, after the checkpoint of step 4
                    self.cli(*self.argv(f"{model}-cut", "--checkpoint_every", "2", model=model))
                status = self.read_json(f"{model}-cut", "status.json")
                self.assertEqual((status["status"], status["epoch"]), ("failed", 1))
                self.assertIn("simulated crash", status["message"])
                code, out, err = self.cli(*self.argv(f"{model}-cut", "--checkpoint_every", "2", model=model))
                self.assertEqual(code, 0, err)
                self.assertIn("(failed at epoch 1) from its checkpoint at epoch 1, step 4", out)
                self.assertEqual(self.metrics(f"{model}-cut"), self.metrics(f"{model}-whole"))

    def test_stopped_before_any_checkpoint_starts_over_and_says_so(self):
        with at_step(1, crash), self.assertRaises(RuntimeError):
            self.cli(*self.argv("early"))
        code, out, err = self.cli(*self.argv("early"))
        self.assertEqual(code, 0, err)
        self.assertIn("Starting", out)
        self.assertIn("left no checkpoint", out)


@pytest.mark.slow
class BadStateIsRefused(RunCase):
    def interrupted_run(self, exp_id="run"):
        with at_step(6, send(signal.SIGTERM)):  # epoch 2, step 1
            self.assertEqual(self.cli(*self.argv(exp_id))[0], 143)

    def snapshot(self, exp_id="run"):
        folder = os.path.join(self.logs, exp_id)
        return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}

    def test_corrupt_or_truncated_checkpoint(self):
        self.interrupted_run()
        path = self.path("run", CHECKPOINT)
        with open(path, "rb") as handle:
            whole = handle.read()
        for damaged in (b"not a checkpoint", whole[: len(whole) // 2]):
            with open(path, "wb") as handle:
                handle.write(damaged)
            before = self.snapshot()
            code, _, err = self.cli(*self.argv())
            self.assert_refused(code, err, "unreadable", "--force")
            self.assertEqual(self.snapshot(), before, "nothing may be overwritten")
        self.assertEqual(self.cli(*self.argv(), "--force")[0], 0)

    def test_other_embeddings_are_refused_on_resume(self):
        self.interrupted_run()
        other = fixtures.write_embeddings(os.path.join(self.tmp, "other.npz"), seed=1)
        before = self.snapshot()
        code, _, err = self.cli(*self.argv()[:2], "--embeddings", other, *self.argv()[4:])
        self.assert_refused(code, err, "sha256", "--embeddings")
        self.assertEqual(self.snapshot(), before)

    def test_checkpoint_holds_only_what_is_learned(self):
        self.interrupted_run()
        state = torch.load(self.path("run", CHECKPOINT), weights_only=False)
        self.assertNotIn("embedding.weight", state["model"])
        self.assertNotIn("classifier.2.weight", state["model"])
        self.assertIn("lstm.weight_hh_l0", state["model"])
        self.assertEqual(len(state["embeddings_sha256"]), 64)

    def test_bad_device_and_non_finite_embeddings(self):
        import numpy as np

        code, _, err = self.cli(*self.argv(), "--device", "gpu")
        self.assert_refused(code, err, "gpu", "cpu")
        bad = os.path.join(self.tmp, "nan.npz")
        tokens = np.ones((fixtures.TINY_VOCAB, fixtures.TINY_WIDTH), np.float32)
        tokens[3, 2] = np.nan
        np.savez(bad, tokens=tokens, position=np.zeros((256, fixtures.TINY_WIDTH), np.float32))
        code, _, err = self.cli(*self.argv()[:2], "--embeddings", bad, *self.argv()[4:])
        self.assert_refused(code, err, "NaN")
        self.assertFalse(os.path.exists(self.logs), "nothing may be written")

    def test_completed_run_is_kept_without_force(self):
        self.assertEqual(self.cli(*self.argv())[0], 0)
        before = self.snapshot()
        code, _, err = self.cli(*self.argv())
        self.assert_refused(code, err, "already complete", "--force")
        self.assertEqual(self.snapshot(), before)

    def test_the_callers_sigterm_handler_is_restored(self):
        """cli() in a notebook or a test process must not leave its SIGTERM handler behind."""
        mine = lambda signum, frame: None  # noqa: E731
        previous = signal.signal(signal.SIGTERM, mine)
        try:
            for argv in (self.argv(), ["--optimizer", "nope"]):  # a run, and a usage error
                self.cli(*argv)
                self.assertIs(signal.getsignal(signal.SIGTERM), mine)
        finally:
            signal.signal(signal.SIGTERM, previous)


class ConfigAndExplicitFlags(RunCase):
    def config_argv(self, *extra):
        return ["--config", "2", "--embeddings", self.emb, "--device", "cpu", "--log_dir", self.logs, "--epochs", "1",
                "--max_batches", "1", "--batch_size", "2", "--print_every", "1000", *extra]

    def test_usage_error_under_config_writes_nothing_then_a_corrected_rerun_completes(self):
        code, _, err = self.cli(*self.config_argv("--data_folder", os.path.join(self.tmp, "nowhere")))
        self.assert_refused(code, err, "wiki.train.npz")
        self.assertFalse(os.path.exists(self.logs))
        code, _, err = self.cli(*self.config_argv("--data_folder", self.data))
        self.assertEqual(code, 0, err)
        self.assertEqual(self.read_json("2", "status.json")["status"], "completed")

    def test_flags_that_contradict_the_configuration_are_refused(self):
        for flag, value in (("--optimizer", "adamw"), ("--model", "gpt1"), ("--layers", "2")):
            with self.subTest(flag=flag):  # configuration 1 is LSTM x1 with adam
                code, _, err = self.cli("--config", "1", flag, value, "--data_folder", self.data)
                self.assert_refused(code, err, f"--config 1 sets {flag[2:]}=")
        code, _, err = self.cli(*self.config_argv("--data_folder", self.data, "--optimizer", "adamw"))
        self.assertEqual(code, 0, err)  # configuration 2 is adamw: no contradiction, honoured
        self.assertEqual(self.read_json("2", "args.json")["optimizer"], "adamw")

    def test_an_optimizer_setting_the_optimizer_does_not_read_is_refused(self):
        for argv in (["--optimizer", "adam", "--momentum", "0.9"], ["--optimizer", "adam", "--weight_decay", "0"],
                     ["--momentum", "0.5"], ["--config", "1", "--momentum", "0.9"], ["--config", "all", "--weight_decay",
                                                                                    "0"]):
            with self.subTest(argv=argv):
                code, _, err = self.cli(*argv, "--data_folder", self.data, "--log_dir", self.logs)
                self.assert_refused(code, err, argv[-2])
                self.assertFalse(os.path.exists(self.logs))
        for number in CONFIGS:  # a configuration's own fields are not typed flags: none is refused
            self.assertEqual(config_settings(number, smoke=True).config, number)
        with self.assertRaisesRegex(UsageError, "--momentum"):  # run_config(1, momentum=...) from Python
            config_settings(1, momentum=0.9)
        code, _, err = self.cli(*self.config_argv("--data_folder", self.data, "--weight_decay", "0"))
        self.assertEqual(code, 0, err)  # configuration 2 is adamw, which reads it
        self.assertEqual(self.read_json("2", "args.json")["weight_decay"], 0)

    def test_smoke_keeps_explicit_flags_and_its_own_folder(self):
        cwd = os.getcwd()
        os.chdir(self.tmp)
        self.addCleanup(os.chdir, cwd)
        code, _, err = self.cli("--data_folder", self.data, "--embeddings", self.emb, "--device", "cpu", "--smoke",
                                "--epochs", "1", "--batch_size", "16", "--print_every", "1000")
        self.assertEqual(code, 0, err)  # --batch_size 16 is the default, typed: kept
        args = self.read_json_at(os.path.join("logs_smoke", "debug", "args.json"))
        self.assertEqual((args["epochs"], args["batch_size"], args["max_batches"]), (1, 16, 2))
        run_exp.main(run_exp.Arguments(data_folder=self.data, embeddings=self.emb, device="cpu", smoke=True,
                                       exp_id="python", print_every=1000))  # main(args) from Python: the preset too
        args = self.read_json_at(os.path.join("logs_smoke", "python", "args.json"))
        self.assertEqual((args["epochs"], args["batch_size"], args["max_batches"]), (2, 4, 2))
        code, _, err = self.cli("--data_folder", self.data, "--embeddings", self.emb, "--device", "cpu",
                                "--epochs", "1", "--max_batches", "1", "--print_every", "1000")
        self.assertEqual(code, 0, err)  # the full run is not blocked by the smoke run
        self.assertTrue(os.path.isfile(os.path.join("logs", "debug", "status.json")))

    def read_json_at(self, path):
        with open(path) as handle:
            return json.load(handle)


class WhatTheConsoleSays(RunCase):
    def test_progress_lines_for_every_split(self):
        code, out, err = self.cli(*self.argv("p")[:-2], "--print_every", "1", "--epochs", "1")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"\[train\] epoch 1/1 step 1/5 \| batch loss \d+\.\d{3} \| epoch ppl so far [\d,.]+ \| "
                              r"[\d,]+ tokens/s \| ETA \S+")
        self.assertRegex(out, r"\[valid\] epoch 1/1 step 2/2 \| ppl so far [\d,.]+ \| [\d,]+ tokens/s \| ETA 0s")
        self.assertRegex(out, r"\[test\] step 1/1 \| ppl so far")

    def test_huge_perplexities_in_scientific_notation(self):
        self.assertEqual(perplexity_text(3.2e22), "3.20e+22")
        self.assertEqual(perplexity_text(1234.5), "1,234.5")

    def test_summary_never_cuts_a_note(self):
        note = "logs/7 was run with other max_batches: pass --force to overwrite it or use another --log_dir"
        text = format_summary([{"label": "7: MiniGPT1 x1, sgd", "status": "conflict", "message": note}])
        self.assertIn(note, text)


if __name__ == "__main__":
    unittest.main()
