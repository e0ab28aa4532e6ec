"""What a rerun may change: the checkpoint carries its settings (a lost or damaged args.json cannot
relabel a run), another requested precision is refused, a precision that differs because the
device differs continues with a fresh gradient scaler and is recorded in provenance.json (both
directions, fp16 autocast and GradScaler on the CPU), another code version is recorded. And every
bad value of issue 19 is one line, exit 2, before anything is written."""
import os
import signal
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from tests import fixtures
from tests.test_faults import FaultCase
from tests.test_resilience import at_step, send
from utils.runs.schema import CHECKPOINT
from utils.study import tuning
from utils.train import run as runner
from utils.train import watch
from utils.train.precision import Precision
from utils.train.settings import UsageError


def resolving_to(name):
    """This machine's precision for 'auto' (as on another GPU: sm_75 gives fp16, sm_80 bf16)."""
    return mock.patch.object(runner.Precision, "resolve", lambda requested, device: Precision(name, "cpu"))


@pytest.mark.slow  # in-process training runs: the slow tier (CI runs it)
class CheckpointCarriesItsSettings(FaultCase):
    def interrupted(self, exp_id="run", *extra):
        with at_step(3, send(signal.SIGTERM)):  # epoch 2, step 1
            code, _, err = self.cli(*self.argv(exp_id, *extra))
        self.assertEqual(code, 143, err)

    def test_lost_or_damaged_args_json_cannot_relabel_a_run(self):
        self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        self.interrupted()
        for damage in ("delete", "garbage"):
            with self.subTest(damage=damage):
                path = self.path("run", "args.json")
                if damage == "delete":
                    os.remove(path)
                else:
                    with open(path, "w") as handle:
                        handle.write("{not json")
                code, _, err = self.cli(*self.argv("run", "--lr", "0.01"))
                self.assert_refused(code, err, "other lr", "--force")
        self.assertEqual(self.cli(*self.argv("run"))[0], 0)
        self.assertEqual(self.outcome("run"), self.outcome("whole"))

    def test_another_requested_precision_is_refused(self):
        self.interrupted("run", "--precision", "fp32")
        before = Path(self.path("run", CHECKPOINT)).read_bytes()
        with mock.patch.object(runner, "cpu_has_bf16", return_value=True):  # no warning about this CPU
            code, _, err = self.cli(*self.argv("run", "--precision", "bf16"))
        self.assert_refused(code, err, "other precision (precision fp32 there, bf16 here)", "--force")
        self.assertEqual(Path(self.path("run", CHECKPOINT)).read_bytes(), before)

    def test_another_code_version_is_recorded_never_overwritten(self):
        with mock.patch.object(runner, "git_commit", return_value="aaaa"):
            self.interrupted()
        with mock.patch.object(runner, "git_commit", return_value="bbbb"):
            code, out, err = self.cli(*self.argv())
        self.assertEqual(code, 0, err)
        self.assertIn("the code changed since the checkpoint (aaaa -> bbbb)", out)
        record = self.read_json("run", "provenance.json")
        self.assertEqual(record["git_commit"], "aaaa")
        self.assertEqual(len(record["resumes"]), 1)
        self.assertEqual(record["resumes"][0]["git_commit"], "bbbb")
        self.assertEqual(record["resumes"][0]["at"], "at epoch 2, step 1")
        state = torch.load(self.path("run", CHECKPOINT), weights_only=False)
        self.assertEqual((state["git_commit"], state["origin"]["git_commit"]), ("bbbb", "aaaa"))


@pytest.mark.slow  # in-process training runs: the slow tier (CI runs it)
class ResumeUnderAnotherPrecision(FaultCase):
    """A checkpoint of an A100 (bf16) continued on a T4 (fp16), and the reverse, with --precision auto."""

    def cut_in(self, first, exp_id):
        with resolving_to(first), at_step(3, send(signal.SIGTERM)):
            self.assertEqual(self.cli(*self.argv(exp_id))[0], 143)
        return torch.load(self.path(exp_id, CHECKPOINT), weights_only=False)

    def test_bf16_checkpoint_continues_in_fp16_with_a_fresh_scaler(self):
        state = self.cut_in("bf16", "run")
        self.assertEqual((state["precision"], state["scaler"]), ("bf16", {}))
        with resolving_to("fp16"):
            code, out, err = self.cli(*self.argv())
        self.assertEqual(code, 0, err)
        self.assertIn("trained in bf16; this run continues in fp16 on cpu with a fresh gradient scaler", out)
        state = torch.load(self.path("run", CHECKPOINT), weights_only=False)
        self.assertEqual(state["precision"], "fp16")
        self.assertEqual(state["origin"]["precision"], "bf16")
        self.assertEqual(state["scaler"]["scale"], 65536.0)  # the default start, no overflow skipped a step
        self.assertEqual(state["scaler"]["_growth_tracker"], 1)  # the one fp16 step after the resume
        record = self.read_json("run", "provenance.json")
        self.assertEqual(record["precision"], "bf16")
        self.assertEqual(record["resumes"][0]["precision_changed"], {"checkpoint": "bf16", "now": "fp16", "scaler": "fresh"})
        self.assertTrue(all(np.isfinite(m["train_loss"]) for m in self.metrics("run")))

    def test_fp16_checkpoint_continues_in_bf16_and_its_scaler_is_dropped(self):
        state = self.cut_in("fp16", "run")
        self.assertEqual((state["precision"], state["scaler"]["_growth_tracker"]), ("fp16", 3))
        with resolving_to("bf16"):
            code, out, err = self.cli(*self.argv())
        self.assertEqual(code, 0, err)
        self.assertIn("trained in fp16; this run continues in bf16 on cpu (recorded", out)
        state = torch.load(self.path("run", CHECKPOINT), weights_only=False)
        self.assertEqual((state["precision"], state["scaler"]), ("bf16", {}))
        record = self.read_json("run", "provenance.json")["resumes"][0]["precision_changed"]
        self.assertEqual(record, {"checkpoint": "fp16", "now": "bf16", "scaler": "none"})

    def test_fp16_to_fp16_restores_the_scaler_exactly(self):
        with resolving_to("fp16"):
            self.assertEqual(self.cli(*self.argv("whole"))[0], 0)
        self.cut_in("fp16", "run")
        with resolving_to("fp16"):
            code, out, err = self.cli(*self.argv())
        self.assertEqual(code, 0, err)
        self.assertNotIn("Note: the checkpoint was trained in", out)
        self.assertEqual(self.outcome("run"), self.outcome("whole"))
        ends = [torch.load(self.path(e, CHECKPOINT), weights_only=False)["scaler"] for e in ("run", "whole")]
        self.assertEqual(ends[0], ends[1])


class BadValuesAreOneLine(FaultCase):
    def refused(self, *extra, words=(), data=None):
        argv = self.argv("run", *extra)
        if data is not None:
            argv[argv.index("--data_folder") + 1] = data
        code, _, err = self.cli(*argv)
        self.assert_refused(code, err, *words)
        self.assertFalse(os.path.exists(self.logs), "nothing may be written")

    def test_settings(self):
        cases = [("--seed", "-1"), ("--seed", "99999999999"), ("--momentum", "-1"), ("--momentum", "nan"),
                 ("--weight_decay", "-1"), ("--weight_decay", "nan"), ("--weight_decay", "inf"), ("--lr", "1e308"),
                 ("--lr", "inf"), ("--lr", "nan"), ("--lr", "0")]
        for flag, value in cases:
            with self.subTest(flag=flag, value=value):
                self.refused(flag, value, words=(flag,))

    def test_tune_grid_values(self):
        for grid in ("adam=inf", "adam=nan", "sgd=1e308", "adam=0.1,-1"):
            with self.subTest(grid=grid), self.assertRaisesRegex(UsageError, "Bad --tune_grid"):
                tuning.parse_grid(grid)
        code, _, err = self.cli("--config", "1", "--tune_lr", "--tune_grid", "adam=inf", "--data_folder", self.data,
                                "--embeddings", self.emb, "--device", "cpu", "--log_dir", self.logs)
        self.assert_refused(code, err, "--tune_grid")
        self.assertFalse(os.path.exists(self.logs))

    def test_data_files(self):
        good = dict(np.load(os.path.join(self.data, "wiki.train.npz")))
        cases = {"no tokens": dict(sizes=good["sizes"]), "empty": dict(tokens=good["tokens"][:0], sizes=good["sizes"][:0]),
                 "negative id": dict(good, tokens=good["tokens"].astype(np.int64) - 5),
                 "float ids": dict(good, tokens=good["tokens"].astype(np.float32) + 0.5),
                 "NaN": dict(good, tokens=np.where(np.arange(len(good["tokens"])) == 3, np.nan, good["tokens"]))}
        words = {"no tokens": "no 'tokens'", "empty": "non-empty", "negative id": "negative", "float ids": "integers",
                 "NaN": "integers"}
        for name, arrays in cases.items():
            with self.subTest(case=name):
                folder = os.path.join(self.tmp, name.replace(" ", "-"))
                fixtures.write_corpus(folder)
                np.savez(os.path.join(folder, "wiki.train.npz"), **arrays)
                self.refused(data=folder, words=(words[name],))

    def test_bf16_on_a_cpu_without_it_is_a_one_line_warning(self):
        with mock.patch.object(runner, "cpu_has_bf16", return_value=False):
            code, _, err = self.cli(*self.argv("run", "--precision", "bf16", "--data_folder", self.tmp))
        lines = err.strip().splitlines()
        self.assertEqual(code, 2, err)  # the missing data refused next: the warning came first
        self.assertEqual(len(lines), 2, err)
        self.assertIn("no native bf16", lines[0])

    def test_ctrl_c_while_the_command_starts_is_one_line(self):
        import contextlib
        import io

        import run_exp

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            run_exp._startup_interrupted(KeyboardInterrupt, KeyboardInterrupt(), None)
        self.assertEqual(err.getvalue(), "interrupted while starting: nothing was written.\n")

    def test_epochs_count_from_one_in_the_divergence_message(self):
        self.assertIn("at epoch 1, step 5", str(watch.TrainingDiverged(0, 4)))


@pytest.mark.slow  # in-process training runs: the slow tier (CI runs it)
class StatusAndStopMessages(FaultCase):
    def test_status_step_follows_mid_epoch_checkpoints(self):
        seen = []
        with at_step(3, lambda: seen.append(self.read_json("run", "status.json"))):
            self.assertEqual(self.cli(*self.argv("run", "--max_batches", "5", "--checkpoint_every", "2"))[0], 0)
        self.assertEqual((seen[0]["status"], seen[0]["epoch"], seen[0]["step"]), ("running", 1, 2))

    def test_a_stop_in_the_test_split_says_so(self):
        from tests.test_resilience import in_evaluation

        with in_evaluation(5, send(signal.SIGTERM)):  # 2 validation batches per epoch, then the test split
            code, _, err = self.cli(*self.argv())
        self.assertEqual(code, 143, err)
        self.assertIn("in the test evaluation after all 2 epochs; their checkpoint is kept", err)
        self.assertNotIn("before training started", err)
        code, out, err = self.cli(*self.argv())
        self.assertEqual(code, 0, err)
        self.assertIn("(interrupted after training (all 2 epochs)) from its checkpoint after its last epoch "
                      "(2 of 2", out)


if __name__ == "__main__":
    unittest.main()
