"""bench/embeddings_quality.py end to end on a tiny corpus: every variant for both models, the
unigram baseline on the same targets, the JSON result, and the same numbers when run twice."""
import json
import os
import tempfile
import unittest

import numpy as np
import pytest
import torch

from tests import fixtures
from bench import embeddings_quality as eq
from utils.data import build_embeddings as be
from utils.data.standins import METHODS


class EmbeddingsQualityBenchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.folder = fixtures.write_corpus(cls._tmp.name)
        for method in METHODS:
            argv = ["--data_folder", cls.folder, "--out", os.path.join(cls.folder, f"{method}.npz"),
                    "--vocabulary_size", str(fixtures.TINY_VOCAB), "--dim", str(fixtures.TINY_WIDTH), "--method", method]
            assert fixtures.run_main(be.main, *argv)[0] == 0

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def run_bench(self, out):
        argv = ["--data_folder", self.folder, "--standin", os.path.join(self.folder, "ppmi-svd.npz"),
                "--candidate", "new=" + os.path.join(self.folder, "next-token-svd.npz"), "--steps", "2",
                "--batch_size", "2", "--seq_len", "16", "--eval_items", "3", "--out", out]
        self.assertEqual(fixtures.run_main(eq.main, *argv)[0], 0)
        with open(out) as handle:
            return json.load(handle)

    @pytest.mark.slow
    def test_runs_every_variant_and_is_repeatable(self):
        first = self.run_bench(os.path.join(self.folder, "a.json"))
        self.assertEqual(set(first["runs"]), {"lstm", "gpt1"})
        for kind, runs in first["runs"].items():
            self.assertEqual(set(runs), {"standin", "learnable", "random", "new"})
            for run in runs.values():
                self.assertTrue(np.isfinite(run["valid_perplexity"]))
                self.assertEqual(run["valid_targets"], 3 * 16)
        self.assertEqual(first["embeddings"]["new"]["kind"], "next-token-svd")
        self.assertEqual(set(first["acceptance"]["by_variant"]), {"standin", "random", "new"})
        for kind, runs in first["runs"].items():  # same initial weights, same first batch, same rows
            self.assertEqual(runs["standin"]["train_losses"][0], runs["learnable"]["train_losses"][0])
            # other rows, other losses (MiniGPT1's first loss is uniform whatever the rows: from its second step)
            self.assertNotEqual(runs["standin"]["train_losses"][-1], runs["random"]["train_losses"][-1])
        self.assertLess(first["unigram_perplexity"], fixtures.TINY_VOCAB)
        again = self.run_bench(os.path.join(self.folder, "b.json"))
        for kind in first["runs"]:
            for name, run in first["runs"][kind].items():
                self.assertEqual(run["train_losses"], again["runs"][kind][name]["train_losses"])
                self.assertEqual(run["valid_perplexity"], again["runs"][kind][name]["valid_perplexity"])

    def test_bad_arguments_are_one_line_and_exit_2(self):
        standin = os.path.join(self.folder, "ppmi-svd.npz")
        for extra, words in ((["--variants", "standin,nope"], "unknown --variants nope"),
                             (["--models", "rnn"], "Unknown model 'rnn'"),
                             (["--candidate", "x"], "NAME=PATH"),
                             (["--standin", os.path.join(self.folder, "missing.npz")], "missing.npz")):
            with self.subTest(extra=extra):
                code, _, err = fixtures.run_main(eq.main, "--data_folder", self.folder, "--standin", standin, *extra)
                self.assertEqual(code, 2)
                self.assertIn(words, err)
                self.assertEqual(len(err.strip().splitlines()), 1)

    def test_unigram_is_add_one_tenth_train_counts_on_the_scored_targets(self):
        batch = {"target": torch.tensor([[1, 2, 0]]), "mask": torch.tensor([[1.0, 1.0, 0.0]])}
        with tempfile.TemporaryDirectory() as folder:
            np.savez(os.path.join(folder, "wiki.train.npz"), tokens=np.array([1, 1, 1, 3], np.uint16),
                     sizes=np.array([4]))
            ppl = eq.unigram_perplexity(folder, batch, vocabulary_size=4)
        p1, p2 = 3.1 / 4.4, 0.1 / 4.4
        self.assertAlmostEqual(ppl, float(np.exp(-(np.log(p1) + np.log(p2)) / 2)), places=10)


if __name__ == "__main__":
    unittest.main()
