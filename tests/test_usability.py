"""What a new user meets first: --help without torch, the plan and the whole run's estimate,
one-line errors for a malformed --config list and for a file that is not an embeddings .npz."""
import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import unittest
import zipfile

import numpy as np
import pytest
import torch

from tests import fixtures
import run_exp
from utils.study.configs import CONFIGS, parse_config_list
from utils.data.embeddings import EmbeddingsError, read_embeddings
from utils.train import progress
from utils.study.launchers import LAUNCHERS
from utils.study.parser import STUDY_FLAGS
from utils.train.settings import Arguments


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_exp.cli(argv)
    return code, out.getvalue(), err.getvalue()


class ConfigListTest(unittest.TestCase):
    def test_good_lists(self):
        self.assertEqual(parse_config_list("1,3,5-8"), [1, 3, 5, 6, 7, 8])
        self.assertEqual(parse_config_list("all"), sorted(CONFIGS))
        self.assertEqual(parse_config_list(" 12 "), [12])
        self.assertEqual(parse_config_list("2-2"), [2])

    def test_malformed_lists_are_errors(self):
        for text in ("2-", "1,,2", "0", "13", "3-1", "a", "", "-2", "1-2-3", "1,1", "2,1-3"):
            with self.subTest(text=text), self.assertRaises(ValueError) as ctx:
                parse_config_list(text)
            self.assertIn(repr(text), str(ctx.exception))
            self.assertIn("1,3,5-8", str(ctx.exception))

    def test_command_line_says_one_line_and_exits_2(self):
        for text in ("2-", "1,,2", "0", "13", "3-1", "a"):
            with self.subTest(text=text):
                code, out, err = run_cli(["--config", text, "--smoke"])
                self.assertEqual(code, 2)
                self.assertEqual(out, "")
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertTrue(err.startswith("error: "), err)


class EmbeddingsFileTest(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp()

    def path(self, name, content):
        path = os.path.join(self.folder, name)
        with open(path, "wb") as handle:
            handle.write(content)
        return path

    def check_message(self, path, why):
        with self.assertRaises(EmbeddingsError) as ctx:
            read_embeddings(path)
        message = str(ctx.exception)
        self.assertEqual(len(message.splitlines()), 1, message)
        self.assertIn(f"{path} is not an .npz of embeddings ({why}", message)
        self.assertNotIn("pickle", message.lower())
        self.assertIn("build_embeddings", message)
        return message

    def test_text_npy_and_pickle_files(self):
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((3, 2), np.float32))
        cases = {"vectors.txt": b"the 0.1 0.2 0.3\nof 0.4 0.5 0.6\n", "table.npy": buffer.getvalue(),
                 "table.pkl": pickle.dumps({"tokens": [[0.0]]})}
        for name, content in cases.items():
            with self.subTest(name=name):
                self.check_message(self.path(name, content), "not a NumPy .npz archive")

    def test_npz_with_objects_or_without_arrays(self):
        objects = os.path.join(self.folder, "objects.npz")
        np.savez(objects, tokens=np.array([{"a": 1}], dtype=object), position=np.zeros((2, 2)))
        self.check_message(objects, "its arrays are not plain numbers")
        text = os.path.join(self.folder, "text.npz")
        np.savez(text, tokens=np.array([["a", "b"]]), position=np.zeros((2, 2)))
        self.check_message(text, "its arrays are not plain numbers")
        other = os.path.join(self.folder, "other.npz")
        np.savez(other, weights=np.zeros((2, 2)))
        self.check_message(other, "no array 'tokens' or 'position'")
        empty_zip = os.path.join(self.folder, "empty.npz")
        zipfile.ZipFile(empty_zip, "w").close()
        self.check_message(empty_zip, "no array")

    def test_command_line_exits_2_with_the_message(self):
        path = self.path("vectors.txt", b"the 0.1 0.2 0.3\n")
        code, out, err = run_cli(["--embeddings", path, "--device", "cpu", "--no_log", "--smoke"])
        self.assertEqual(code, 2)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("is not an .npz of embeddings (not a NumPy .npz archive)", err)
        self.assertNotIn("pickle", err.lower())


class FakeTotals:
    """What Reporter.show reads: the pass's sums and seconds."""

    def __init__(self, tokens):
        self.sums = {"nll_sum": torch.tensor(tokens * 7.0, dtype=torch.float64), "tokens": torch.tensor(float(tokens))}

    def seconds(self):
        return 1.0


class FakeTimer:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class PlanAndEstimateTest(unittest.TestCase):
    schedule = progress.Schedule(epochs=10, train=100, valid=20, test=30, batch_size=16)

    def test_steps_left(self):
        s = self.schedule
        self.assertEqual(s.left("train", 0, 0), (1000, 230))
        self.assertEqual(s.left("train", 0, 3), (997, 230))
        self.assertEqual(s.left("valid", 0, 5), (900, 15 + 9 * 20 + 30))
        self.assertEqual(s.left("train", 9, 100), (0, 50))
        self.assertEqual(s.left("test", None, 10), (0, 20))

    def test_plan_line(self):
        line = progress.plan_text(self.schedule, "cpu", "fp32")
        self.assertEqual(len(line.splitlines()), 1)
        for words in ("10 epoch(s)", "100 training steps", "16 sequences", "20 validation steps", "30 test steps",
                      "on cpu, fp32"):
            self.assertIn(words, line)
        self.assertIn("continuing at epoch 4", progress.plan_text(self.schedule, "cpu", "fp32", start_epoch=3))

    def first_pass(self, device_type, seconds_per_step, first_step=5.0):
        """Lines of a first training pass whose first step takes first_step seconds (warm-up), the
        others seconds_per_step."""
        timer = FakeTimer()
        clock = progress.RunClock(self.schedule, device_type, timer)
        reporter = progress.Reporter("train", 100, 0, 10, every=10, clock=clock)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for step in range(1, 21):
                timer.now += first_step if step == 1 else seconds_per_step
                if reporter.due(step):
                    reporter.show(step, FakeTotals(step * 64.0), loss=torch.tensor(7.0))
        return out.getvalue().splitlines(), clock

    def test_estimate_after_the_first_steps_is_the_whole_run(self):
        lines, clock = self.first_pass("cpu", 4.0)
        steps = [line.split(" | ")[0] for line in lines if line.startswith("[train]")]
        self.assertEqual(steps, ["[train] epoch 1/10 step 1/100", "[train] epoch 1/10 step 3/100",
                                 "[train] epoch 1/10 step 10/100", "[train] epoch 1/10 step 20/100"])
        # after step 3: 997 training steps at 4 s (the warm-up step is left out) and 230 evaluation
        # steps at a third of that: over an hour
        left = 997 * 4.0 + 230 * 4.0 / 3
        estimate = [line for line in lines if line.startswith("estimate:")]
        self.assertEqual(len(estimate), 1)
        self.assertIn(f"about {progress.duration(left)} for the rest of the run (10 epoch(s) at 4s per training step",
                      estimate[0])
        self.assertEqual(lines.index(estimate[0]), 2)  # right after the step-3 line
        hint = lines[3]
        self.assertTrue(hint.startswith("That is hours on a CPU: --smoke"), hint)
        self.assertIn("--max_batches", hint)
        self.assertIn("GPU", hint)
        # every line gives the split's time left and the whole run's
        self.assertIn(f"ETA {progress.duration(80 * 4.0)}, run {progress.duration(980 * 4.0 + 230 * 4.0 / 3)}",
                      lines[-1])

    def test_no_cpu_hint_for_a_short_run_or_a_gpu(self):
        for device_type, seconds in (("cpu", 0.1), ("cuda", 2.0)):
            with self.subTest(device=device_type):
                lines, _ = self.first_pass(device_type, seconds)
                self.assertEqual(sum(line.startswith("estimate:") for line in lines), 1)
                self.assertFalse(any("hours on a CPU" in line for line in lines))

    def test_measured_evaluation_replaces_the_guess(self):
        _, clock = self.first_pass("cpu", 2.0)
        timer = clock.timer
        reporter = progress.Reporter("valid", 20, 0, 10, every=10, clock=clock)
        with contextlib.redirect_stdout(io.StringIO()):
            for step in range(1, 21):
                timer.now += 0.5
                if reporter.due(step):
                    reporter.show(step, FakeTotals(step * 64.0))
        self.assertEqual(clock.per_step, {"train": 2.0, "eval": 0.5})
        self.assertEqual(clock.seconds_left("valid", 0, 20), 900 * 2.0 + (9 * 20 + 30) * 0.5)

    def test_without_a_clock_lines_are_as_before(self):
        reporter = progress.Reporter("valid", 4, 0, 1, every=2)
        self.assertEqual([reporter.due(s) for s in (1, 2, 3, 4)], [False, True, False, True])


@pytest.mark.slow
class RunSaysItsPlanTest(unittest.TestCase):
    def test_plan_first_then_the_estimate_after_step_3(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = fixtures.write_corpus(os.path.join(tmp, "data"))  # 10 training items: 5 steps of 2
            emb = fixtures.write_embeddings(os.path.join(tmp, "emb.npz"))
            code, out, err = run_cli(["--data_folder", data, "--embeddings", emb, "--device", "cpu", "--no_log",
                                      "--epochs", "1", "--batch_size", "2", "--print_every", "1000"])
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        plan = [i for i, line in enumerate(lines) if line.startswith("plan: ")]
        self.assertEqual(len(plan), 1, out)
        self.assertIn("1 epoch(s) x 5 training steps of 2 sequences", lines[plan[0]])
        from utils.train.precision import Precision

        self.assertIn(f"on cpu, {Precision.resolve('auto', 'cpu')}", lines[plan[0]])  # bf16 where the CPU has it
        first_train = next(i for i, line in enumerate(lines) if line.startswith("[train]"))
        self.assertLess(plan[0], first_train)
        self.assertTrue(lines[first_train].startswith("[train] epoch 1/1 step 1/5 |"), lines[first_train])
        self.assertTrue(lines[first_train + 1].startswith("[train] epoch 1/1 step 3/5 |"), lines[first_train + 1])
        self.assertRegex(lines[first_train + 1], r"ETA \S+, run \S+$")
        self.assertTrue(lines[first_train + 2].startswith("estimate: about "), out)
        self.assertEqual(sum(line.startswith("estimate:") for line in lines), 1)


class HelpTest(unittest.TestCase):
    def test_help_is_complete(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as ctx:
            run_exp.cli(["--help"])
        self.assertEqual(ctx.exception.code, 0)
        text = out.getvalue()
        flags = ["--no_log"] + [f"--{f}" for f in Arguments.__dataclass_fields__ if f != "log"] + [
            f"--{name}" for name in STUDY_FLAGS]
        for flag in flags:
            self.assertRegex(text, rf"{flag}\b")
        for name in LAUNCHERS:
            self.assertIn(f"{name}:", text)
        self.assertIn("exit status", text)


@pytest.mark.slow
class HelpWithoutTorchTest(unittest.TestCase):
    def test_help_and_a_typo_import_no_torch(self):
        script = ("import contextlib, io, sys, run_exp\n"
                  "out = io.StringIO()\n"
                  "with contextlib.redirect_stdout(out):\n"
                  "    try:\n"
                  "        run_exp.cli(['--help'])\n"
                  "    except SystemExit as stop:\n"
                  "        assert stop.code == 0, stop.code\n"
                  "assert '--max_batches' in out.getvalue() and '--config' in out.getvalue()\n"
                  "assert run_exp.cli(['--config', '2-']) == 2\n"
                  "print(sorted(m for m in ('torch', 'numpy', 'submitit') if m in sys.modules))\n")
        done = subprocess.run([sys.executable, "-c", script], cwd=fixtures.REPO_ROOT, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "[]", done.stderr)
        self.assertIn("Bad configuration list '2-'", done.stderr)

    def test_bad_values_are_refused_before_torch_is_imported(self):
        commands = [["--lr", "0"], ["--seed", "-1"], ["--config", "1", "--lr", "0"], ["--print_every", "0"],
                    ["--config", "all", "--momentum", "2"], ["--model", "gpt1", "--dropout", "1.5"]]
        script = ("import json, sys, run_exp\n"
                  f"codes = [run_exp.cli(argv) for argv in {commands!r}]\n"
                  "print(json.dumps([codes, 'torch' in sys.modules]))\n")
        with tempfile.TemporaryDirectory() as tmp:  # nothing may be written: the runs would go to logs/ here
            done = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True, timeout=60,
                                  env=fixtures.python_env())
            self.assertEqual(os.listdir(tmp), [])
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout), [[2] * len(commands), False], done.stderr)
        errors = done.stderr.strip().splitlines()
        self.assertEqual(len(errors), len(commands), done.stderr)  # one line each
        self.assertIn("--lr must be a number in (0, 1000] (got 0.0)", errors[0])
        self.assertIn("--seed", errors[1])
        self.assertIn("--lr", errors[2])
        self.assertIn("--print_every must be >= 1", errors[3])


if __name__ == "__main__":
    unittest.main()
