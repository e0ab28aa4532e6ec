"""utils.build_embeddings on a small synthetic corpus: format, determinism, safety, meaning."""
import contextlib
import hashlib
import io
import os
import tempfile
import unittest
from unittest import mock

import numpy as np
import torch


from gpt1_solution import MiniGPT1
from lstm_solution import LSTM
from utils.data import build_embeddings as be
from utils.data.embeddings import read_embeddings

VOCAB, DIM = 64, 24  # DIM divisible by MiniGPT1's 12 heads
SYNONYMS = (10, 11)  # always between "3 4" and "5 6", never elsewhere
HAPAXES = (7, 8)  # seen exactly once
FILLERS = range(20, 60)


def synthetic_lines(seed=0, n_lines=300):
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_lines):
        line = rng.integers(FILLERS.start, FILLERS.stop, size=rng.integers(8, 20)).tolist()
        at = int(rng.integers(0, len(line) + 1))
        line[at:at] = [3, 4, int(rng.choice(SYNONYMS)), 5, 6]
        lines.append(line)
    lines[0].append(HAPAXES[0])
    lines[1].append(HAPAXES[1])
    return lines


def write_corpus(folder):
    lines = synthetic_lines()
    tokens = np.concatenate(lines).astype(np.uint16)
    np.savez(os.path.join(folder, "wiki.train.npz"), tokens=tokens, sizes=np.array([len(x) for x in lines], np.int64))
    return tokens


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class BuildEmbeddingsTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.folder = self._tmp.name
        self.train = write_corpus(self.folder)
        self.out = os.path.join(self.folder, "out", "embeddings.npz")

    def tearDown(self):
        self._tmp.cleanup()

    def run_main(self, *extra, out=None):
        argv = ["--data_folder", self.folder, "--out", out or self.out,
                "--vocabulary_size", str(VOCAB), "--dim", str(DIM), *extra]
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = be.main(argv)
        return code, err.getvalue()

    def load(self, path=None):
        with np.load(path or self.out) as data:
            return data["tokens"], data["position"]

    def test_format_padding_and_scale(self):
        self.assertEqual(self.run_main()[0], 0)
        tokens, position = self.load()
        self.assertEqual((tokens.shape, tokens.dtype), ((VOCAB, DIM), np.float32))
        self.assertEqual((position.shape, position.dtype), ((be.N_POSITIONS, DIM), np.float32))
        self.assertTrue(np.all(tokens[0] == 0.0))
        seen = np.unique(self.train)
        self.assertAlmostEqual(float(np.sqrt(np.mean(tokens[seen] ** 2))), be.SCALE, places=5)
        self.assertAlmostEqual(float(np.sqrt(np.mean(position**2))), be.SCALE, places=5)
        self.assertTrue(np.isfinite(tokens).all() and np.isfinite(position).all())

    def test_unseen_ids_get_mean_of_hapax_rows(self):
        self.run_main()
        tokens, _ = self.load()
        unseen = np.setdiff1d(np.arange(1, VOCAB), self.train)
        self.assertGreater(len(unseen), 10)
        expected = tokens[list(HAPAXES)].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(tokens[unseen], np.broadcast_to(expected, (len(unseen), DIM)), atol=1e-6)
        self.assertGreater(np.linalg.norm(expected), 0.0)

    def test_unseen_vector_falls_back_to_mean_of_seen_rows(self):
        rows = np.arange(6.0).reshape(3, 2)
        np.testing.assert_array_equal(be.unseen_vector(rows, np.array([5, 2, 3])), rows.mean(axis=0))
        np.testing.assert_array_equal(be.unseen_vector(rows, np.array([5, 1, 3])), rows[1])

    def test_same_seed_gives_identical_bytes(self):
        other = os.path.join(self.folder, "again.npz")
        self.run_main("--seed", "3")
        self.run_main("--seed", "3", out=other)
        for a, b in zip(self.load(), self.load(other)):
            np.testing.assert_array_equal(a, b)
        self.assertEqual(be.file_sha256(self.out), be.file_sha256(other))

    def test_failed_write_leaves_nothing(self):
        def broken(handle, array, **kwargs):
            handle.write(b"\x93NUMPY partial")
            raise RuntimeError("disk full")

        arrays = {"tokens": np.zeros((VOCAB, DIM), np.float32), "position": np.zeros((8, DIM), np.float32)}
        with mock.patch.object(np.lib.format, "write_array", broken), self.assertRaises(RuntimeError):
            be.save(self.out, arrays, {"kind": "test"})
        self.assertFalse(os.path.exists(self.out))
        self.assertEqual(os.listdir(os.path.dirname(self.out)), [])

    def test_refuses_to_overwrite_without_force(self):
        self.run_main()
        before = be.file_sha256(self.out)
        code, err = self.run_main("--seed", "1")
        self.assertEqual(code, 2)
        self.assertIn("--force", err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        self.assertEqual(be.file_sha256(self.out), before)
        self.assertEqual(self.run_main("--seed", "1", "--force")[0], 0)
        self.assertEqual(be.describe_embeddings(self.out)["seed"], 1)

    def test_missing_data_names_the_path(self):
        os.remove(os.path.join(self.folder, "wiki.train.npz"))
        code, err = self.run_main(out=os.path.join(self.folder, "y.npz"))
        self.assertEqual(code, 2)
        self.assertIn(os.path.join(self.folder, "wiki.train.npz"), err)
        self.assertFalse(os.path.exists(os.path.join(self.folder, "y.npz")))

    def test_captures_cooccurrence(self):
        self.run_main()
        tokens, _ = self.load()
        same = cosine(tokens[SYNONYMS[0]], tokens[SYNONYMS[1]])
        unrelated = max(cosine(tokens[SYNONYMS[0]], tokens[f]) for f in FILLERS)
        self.assertGreater(same, 0.9)
        self.assertGreater(same, unrelated + 0.5)

    def test_describe_embeddings(self):
        self.run_main()
        info = be.describe_embeddings(self.out)
        with open(self.out, "rb") as handle:
            self.assertEqual(info["sha256"], hashlib.sha256(handle.read()).hexdigest())
        self.assertEqual(info["path"], os.path.abspath(self.out))
        self.assertEqual(info["kind"], "ppmi-svd")
        self.assertEqual(info["train_sha256"], be.file_sha256(os.path.join(self.folder, "wiki.train.npz")))
        for key in ("method", "seed", "scale", "seconds"):
            self.assertIn(key, info)
        with open(be.sidecar_path(self.out), "a") as handle:
            handle.write("\n")  # still valid JSON, still this file's sidecar
        self.assertEqual(be.describe_embeddings(self.out)["kind"], "ppmi-svd")
        self.run_main("--seed", "5", out=os.path.join(self.folder, "other.npz"))
        os.replace(be.sidecar_path(os.path.join(self.folder, "other.npz")), be.sidecar_path(self.out))
        self.assertEqual(be.describe_embeddings(self.out)["kind"], be.UNKNOWN["kind"])
        os.remove(be.sidecar_path(self.out))
        self.assertEqual(be.describe_embeddings(self.out), dict(be.UNKNOWN, path=info["path"], sha256=info["sha256"]))


    def test_loads_into_both_models(self):
        self.run_main()
        tokens, position = read_embeddings(self.out)
        self.assertEqual(tuple(tokens.shape), (VOCAB, DIM))
        inputs = torch.from_numpy(self.train[:32].astype(np.int64)).view(2, 16)
        lstm = LSTM.load_embeddings_from(self.out, hidden_size=8)
        log_probas, _ = lstm(inputs, lstm.initial_states(2))
        self.assertEqual(tuple(log_probas.shape), (2, 16, VOCAB))
        self.assertTrue(torch.equal(lstm.tied_weight, tokens))
        gpt = MiniGPT1.load_embeddings_from(self.out, num_layers=1, sequence_length=16)
        self.assertEqual(tuple(gpt(inputs).shape), (2, 16, VOCAB))
        self.assertTrue(torch.equal(gpt.embedding.position.weight, position[:16]))
        self.assertTrue(torch.isfinite(log_probas).all())


if __name__ == "__main__":
    unittest.main()
