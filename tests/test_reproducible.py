"""Reproducibility between processes (issue 25 item 7, docs/resilience.md "What is reproducible"):
the same command run twice in two processes on the same machine gives the same numbers bit for bit,
in fp32 and in bf16, with the thread count the run records."""
import json
import os
import tempfile
import unittest

import pytest

from tests import fixtures

TIME_KEYS = ("train_seconds", "valid_seconds", "train_tokens_per_s", "test_seconds")


@pytest.mark.slow  # real processes
class TwoProcessesOfOneRun(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.data = fixtures.write_corpus(os.path.join(self.tmp, "data"))
        self.emb = fixtures.write_embeddings(os.path.join(self.tmp, "emb.npz"))

    def run_once(self, exp_id, precision, **env):
        done = fixtures.run_python(
            "run_exp.py", "--data_folder", self.data, "--embeddings", self.emb, "--device", "cpu", "--log_dir",
            os.path.join(self.tmp, "logs"), "--exp_id", exp_id, "--model", "gpt1", "--epochs", "2", "--batch_size", "2",
            "--max_batches", "3", "--precision", precision, "--print_every", "1000",
            env=fixtures.python_env(**env))
        self.assertEqual(done.returncode, 0, done.stderr)
        folder = os.path.join(self.tmp, "logs", exp_id)
        with open(os.path.join(folder, "metrics.jsonl")) as handle:
            epochs = [{k: v for k, v in json.loads(line).items() if k not in TIME_KEYS} for line in handle]
        with open(os.path.join(folder, "test_metrics.json")) as handle:
            test = {k: v for k, v in json.load(handle).items() if k not in TIME_KEYS}
        with open(os.path.join(folder, "provenance.json")) as handle:
            threads = json.load(handle)["cpu_threads"]
        return epochs, test, threads

    def test_the_same_command_twice_is_equal_bit_for_bit(self):
        for precision, threads in (("fp32", "2"), ("bf16", "1")):
            with self.subTest(precision=precision, threads=threads):
                first = self.run_once(f"{precision}-a", precision, OMP_NUM_THREADS=threads)
                second = self.run_once(f"{precision}-b", precision, OMP_NUM_THREADS=threads)
                self.assertEqual(first[2], int(threads))  # the thread count is recorded
                self.assertEqual(first, second)  # floats compared exactly (JSON keeps repr)
