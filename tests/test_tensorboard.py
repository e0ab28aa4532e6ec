"""--tensorboard: each epoch's metrics also go to TensorBoard event files in the run's folder (a
SummaryWriter of torch.utils.tensorboard); without the tensorboard package, one line saying to
install it, before torch is imported; the flag does not identify the run."""
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import types
import unittest
from unittest import mock

import pytest

import run_exp
from tests import fixtures

FIND_SPEC = importlib.util.find_spec


class FakeWriter:
    """What the run asks of torch.utils.tensorboard.SummaryWriter, recorded."""
    made = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_exp.cli(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
class TensorBoardEvents(unittest.TestCase):
    def test_each_epochs_metrics_are_written_and_the_flag_does_not_identify_the_run(self):
        board = types.ModuleType("torch.utils.tensorboard")
        board.SummaryWriter = FakeWriter
        FakeWriter.made.clear()
        installed = mock.patch("importlib.util.find_spec",
                               lambda name, *a: object() if name == "tensorboard" else FIND_SPEC(name, *a))
        with tempfile.TemporaryDirectory() as tmp:
            data = fixtures.write_corpus(os.path.join(tmp, "data"))
            emb = fixtures.write_embeddings(os.path.join(tmp, "emb.npz"))
            argv = ["--data_folder", data, "--embeddings", emb, "--device", "cpu", "--log_dir", os.path.join(tmp, "logs"),
                    "--exp_id", "tb", "--epochs", "2", "--batch_size", "4", "--print_every", "1000"]
            with installed, fixtures.stand_in_modules({"torch.utils.tensorboard": board}):
                code, _, err = run_cli(*argv, "--tensorboard")
            self.assertEqual(code, 0, err)
            with open(os.path.join(tmp, "logs", "tb", "metrics.jsonl")) as handle:
                metrics = [json.loads(line) for line in handle]
            with open(os.path.join(tmp, "logs", "tb", "args.json")) as handle:
                self.assertIs(json.load(handle)["tensorboard"], True)
            code, _, err = run_cli(*argv)  # the same run without the flag: complete, not "made with other settings"
            self.assertEqual(code, 2)
            self.assertIn("already complete", err)
        [writer] = FakeWriter.made
        self.assertEqual(writer.log_dir, os.path.join(tmp, "logs", "tb", "tensorboard"))
        self.assertEqual(writer.purge_step, 1)  # a rerun's epochs replace the ones logged before
        self.assertTrue(writer.closed)
        for key in ("valid_ppl", "train_loss", "train_ppl"):
            self.assertEqual([(step, value) for tag, value, step in writer.scalars if tag == key],
                             [(m["epoch"], m[key]) for m in metrics], key)

    def test_without_the_package_one_line_before_torch(self):
        script = ("import importlib.util, json, sys\n"
                  "found = importlib.util.find_spec\n"  # as where tensorboard is not installed
                  "importlib.util.find_spec = lambda name, *a: None if name == 'tensorboard' else found(name, *a)\n"
                  "import run_exp\n"
                  "code = run_exp.cli(['--tensorboard', '--log_dir', 'logs'])\n"
                  "print(json.dumps([code, 'torch' in sys.modules]))\n")
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True, timeout=60,
                                  env=fixtures.python_env())
            self.assertEqual(os.listdir(tmp), [])
        self.assertEqual(json.loads(done.stdout), [2, False], done.stderr)
        self.assertEqual(done.stderr.strip(), "error: --tensorboard needs the tensorboard package: pip install "
                                              "tensorboard, then rerun.")


if __name__ == "__main__":
    unittest.main()
