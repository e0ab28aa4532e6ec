"""`python -m utils.build_embeddings` (utils/data/build_embeddings.py) on a small synthetic corpus:
format, determinism, safety, meaning."""
import hashlib
import os
import re
import shlex
import tempfile
import unittest
from unittest import mock

import numpy as np
import torch

from gpt1_solution import MiniGPT1
from lstm_solution import LSTM
from tests import fixtures
from utils.data import build_embeddings as be
from utils.data import standins as st
from utils.data.embeddings import EmbeddingsError, read_embeddings

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


def write_split(folder, split, lines):
    tokens = np.concatenate(lines).astype(np.uint16)
    sizes = np.array([len(x) for x in lines], np.int64)
    np.savez(os.path.join(folder, f"wiki.{split}.npz"), tokens=tokens, sizes=sizes)
    return tokens


def write_corpus(folder):
    write_split(folder, "validation", synthetic_lines(seed=1, n_lines=30))
    write_split(folder, "test", synthetic_lines(seed=2, n_lines=30))
    return write_split(folder, "train", synthetic_lines())


def centred_log_frequency_by_hand(train):
    """log((count + 0.1) / (N + 0.1 V)) minus its token-weighted mean, for ids 0..VOCAB-1."""
    counts = np.array([np.sum(train == i) for i in range(VOCAB)], np.float64)
    log_p = np.log((counts + 0.1) / (len(train) + 0.1 * VOCAB))
    return log_p - np.sum(counts * log_p) / len(train)


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
        code, _, err = fixtures.run_main(be.main, *argv)
        return code, err

    def load(self, path=None):
        with np.load(path or self.out) as data:
            return data["tokens"], data["position"]

    def unreflected(self, tokens):
        """Rows in the builder's coordinates before its reflection (an involution): columns 0 and 1
        the frequency weights, then the context half, then the target half."""
        rows = tokens.astype(np.float64)
        st.reflect_first_to_ones(rows)
        half = (DIM - 2) // 2
        return rows, rows[:, 2 : 2 + half], rows[:, 2 + half :]

    # --- the default method, next-token-svd -------------------------------------------------

    def test_format_padding_and_positions(self):
        self.assertEqual(self.run_main()[0], 0)
        tokens, position = self.load()
        self.assertEqual((tokens.shape, tokens.dtype), ((VOCAB, DIM), np.float32))
        self.assertEqual((position.shape, position.dtype), ((be.N_POSITIONS, DIM), np.float32))
        self.assertTrue(np.all(tokens[0] == 0.0))
        self.assertTrue(np.isfinite(tokens).all() and np.isfinite(position).all())
        # every position row is the sinusoid plus one constant of norm POSITION_CONSTANT, orthogonal to ones
        constant = position.astype(np.float64) - st.sinusoidal_positions(be.N_POSITIONS, DIM, st.SCALE)
        np.testing.assert_allclose(constant, np.broadcast_to(constant[0], constant.shape), atol=1e-5)
        self.assertAlmostEqual(float(np.linalg.norm(constant[0])), st.POSITION_CONSTANT, places=4)
        self.assertAlmostEqual(float(constant[0].sum()), 0.0, places=4)

    def test_frequency_directions_order_tokens_by_count(self):
        self.run_main()
        tokens, position = self.load()
        frequency = centred_log_frequency_by_hand(self.train)
        along_ones = tokens[1:].astype(np.float64) @ np.full(DIM, 1 / np.sqrt(DIM))
        np.testing.assert_allclose(along_ones, st.FREQ_ONES * frequency[1:], atol=1e-5)
        m = position[0].astype(np.float64) - st.sinusoidal_positions(1, DIM, st.SCALE)[0]
        along_m = tokens[1:].astype(np.float64) @ (m / np.linalg.norm(m))
        weight = st.position_weight(st.SCALE, DIM, st.POSITION_CONSTANT)
        np.testing.assert_allclose(along_m, weight * frequency[1:], atol=1e-5)
        counts = np.bincount(self.train, minlength=VOCAB)
        by_count = np.argsort(counts[1:], kind="stable") + 1
        self.assertTrue(np.all(np.diff(along_ones[by_count - 1]) >= -1e-6))
        self.assertLess(along_ones[HAPAXES[0] - 1], along_ones[SYNONYMS[0] - 1])
        self.assertLess(along_ones[1 - 1], along_ones[HAPAXES[0] - 1])  # id 1 never occurs

    def test_frequency_columns_and_equal_half_norms(self):
        self.run_main()
        rows, context, target = self.unreflected(self.load()[0])
        frequency = centred_log_frequency_by_hand(self.train)[1:]
        np.testing.assert_allclose(rows[1:, 0], st.FREQ_ONES * frequency, atol=1e-5)
        np.testing.assert_allclose(rows[1:, 1], st.position_weight(st.SCALE, DIM, st.POSITION_CONSTANT) * frequency,
                                   atol=1e-5)
        half_norm = st.SCALE * np.sqrt(DIM / 2)
        followed = [3, 4, 5, *SYNONYMS, *FILLERS]  # ids with a successor in their line: non-zero context half
        np.testing.assert_allclose(np.linalg.norm(context[followed], axis=1), half_norm, rtol=1e-5)
        preceded = [4, 5, 6, *SYNONYMS, *FILLERS]  # ids with a predecessor: non-zero target half
        np.testing.assert_allclose(np.linalg.norm(target[preceded], axis=1), half_norm, rtol=1e-5)

    def test_swapping_halves_predicts_the_next_token(self):
        self.run_main()
        _, context, target = self.unreflected(self.load()[0])
        scores = context @ target.T  # the logits of features = the input row with its halves swapped
        self.assertEqual(int(np.argmax(scores[3])), 4)
        self.assertIn(int(np.argmax(scores[4])), SYNONYMS)
        self.assertEqual(int(np.argmax(scores[SYNONYMS[0]])), 5)
        self.assertEqual(int(np.argmax(scores[5])), 6)
        self.assertGreater(cosine(target[SYNONYMS[0]], target[SYNONYMS[1]]), 0.9)  # both follow 4

    def test_unseen_ids_get_mean_of_hapax_halves_and_lower_frequency(self):
        self.run_main()
        tokens, _ = self.load()
        rows, _, _ = self.unreflected(tokens)
        unseen = np.setdiff1d(np.arange(1, VOCAB), self.train)
        self.assertGreater(len(unseen), 10)
        expected = rows[list(HAPAXES), 2:].mean(axis=0)
        np.testing.assert_allclose(rows[unseen, 2:], np.broadcast_to(expected, (len(unseen), DIM - 2)), atol=1e-6)
        self.assertGreater(np.linalg.norm(expected), 0.0)
        self.assertTrue(np.all(rows[unseen, 0] < rows[HAPAXES[0], 0]))

    def test_same_seed_gives_identical_bytes(self):
        for method in be.METHODS:
            with self.subTest(method=method):
                first, again = (os.path.join(self.folder, f"{method}-{i}.npz") for i in (1, 2))
                self.run_main("--seed", "3", "--method", method, out=first)
                self.run_main("--seed", "3", "--method", method, out=again)
                self.assertEqual(be.file_sha256(first), be.file_sha256(again))

    def test_only_the_train_split_is_read(self):
        for method in be.METHODS:
            with self.subTest(method=method):
                before = os.path.join(self.folder, f"{method}-before.npz")
                self.run_main("--method", method, out=before)
                write_split(self.folder, "validation", synthetic_lines(seed=5, n_lines=80))  # other counts, other ids
                write_split(self.folder, "test", [[1, 2, 3, 61, 62, 63] * 50])
                after = os.path.join(self.folder, f"{method}-after.npz")
                self.run_main("--method", method, out=after)
                self.assertEqual(be.file_sha256(before), be.file_sha256(after))
                os.remove(os.path.join(self.folder, "wiki.validation.npz"))
                os.remove(os.path.join(self.folder, "wiki.test.npz"))
                alone = os.path.join(self.folder, f"{method}-alone.npz")
                self.assertEqual(self.run_main("--method", method, out=alone)[0], 0)
                self.assertEqual(be.file_sha256(before), be.file_sha256(alone))
                write_corpus(self.folder)

    def test_minigpt1_starts_near_the_unigram(self):
        """The position constant puts MiniGPT1's LayerNormed features along m, which the rows'
        log-frequency turns into unigram logits: its initial loss is near the unigram entropy,
        far below the ppmi-svd stand-in's (current-token logit) and below the uniform log V."""
        losses = {}
        for method in be.METHODS:
            path = os.path.join(self.folder, f"{method}.npz")
            self.run_main("--method", method, out=path)
            torch.manual_seed(0)
            gpt = MiniGPT1.load_embeddings_from(path, num_layers=1, sequence_length=16)
            inputs = torch.from_numpy(self.train[: 16 * 40].astype(np.int64)).view(40, 16)
            with torch.no_grad():
                log_probas = gpt(inputs[:, :-1])
            losses[method] = -log_probas.gather(2, inputs[:, 1:, None]).mean().item()
        counts = np.bincount(self.train, minlength=VOCAB) + 0.1
        unigram = -np.mean(np.log(counts / counts.sum())[self.train[1 : 16 * 40]])
        self.assertLess(losses["next-token-svd"], unigram + 0.2)
        self.assertLess(losses["next-token-svd"], np.log(VOCAB) - 0.3)
        self.assertLess(losses["next-token-svd"], losses["ppmi-svd"])

    # --- ppmi-svd ---------------------------------------------------------------------------

    def test_ppmi_format_padding_and_scale(self):
        self.assertEqual(self.run_main("--method", "ppmi-svd")[0], 0)
        tokens, position = self.load()
        self.assertEqual((tokens.shape, tokens.dtype), ((VOCAB, DIM), np.float32))
        self.assertEqual((position.shape, position.dtype), ((be.N_POSITIONS, DIM), np.float32))
        self.assertTrue(np.all(tokens[0] == 0.0))
        seen = np.unique(self.train)
        self.assertAlmostEqual(float(np.sqrt(np.mean(tokens[seen] ** 2))), st.SCALE, places=5)
        self.assertAlmostEqual(float(np.sqrt(np.mean(position**2))), st.SCALE, places=5)
        self.assertTrue(np.isfinite(tokens).all() and np.isfinite(position).all())

    def test_ppmi_unseen_ids_get_mean_of_hapax_rows(self):
        self.run_main("--method", "ppmi-svd")
        tokens, _ = self.load()
        unseen = np.setdiff1d(np.arange(1, VOCAB), self.train)
        self.assertGreater(len(unseen), 10)
        expected = tokens[list(HAPAXES)].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(tokens[unseen], np.broadcast_to(expected, (len(unseen), DIM)), atol=1e-6)
        self.assertGreater(np.linalg.norm(expected), 0.0)

    def test_ppmi_captures_cooccurrence(self):
        self.run_main("--method", "ppmi-svd")
        tokens, _ = self.load()
        same = cosine(tokens[SYNONYMS[0]], tokens[SYNONYMS[1]])
        unrelated = max(cosine(tokens[SYNONYMS[0]], tokens[f]) for f in FILLERS)
        self.assertGreater(same, 0.9)
        self.assertGreater(same, unrelated + 0.5)

    # --- both -------------------------------------------------------------------------------

    def test_unseen_vector_falls_back_to_mean_of_seen_rows(self):
        rows = np.arange(6.0).reshape(3, 2)
        np.testing.assert_array_equal(st.unseen_vector(rows, np.array([5, 2, 3])), rows.mean(axis=0))
        np.testing.assert_array_equal(st.unseen_vector(rows, np.array([5, 1, 3])), rows[1])

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

    def test_a_web_page_is_named_and_the_suggested_command_replaces_it(self):
        # What the course's urlretrieve of the dl=0 link leaves: Dropbox's HTML preview page.
        os.makedirs(os.path.dirname(self.out))
        with open(self.out, "w") as handle:
            handle.write("\n  <!DOCTYPE html><html><head><title>Dropbox - embeddings.npz</title></head></html>")
        with self.assertRaises(EmbeddingsError) as ctx:
            read_embeddings(self.out)
        message = str(ctx.exception)
        self.assertIn("is a web page", message)
        self.assertIn("embeddings.npz?dl=1", message)
        self.assertEqual(len(message.splitlines()), 1)
        command = shlex.split(re.search(r"`([^`]*)`", message).group(1))
        self.assertEqual(command[:3], ["python", "-m", "utils.build_embeddings"])
        self.assertEqual(command[command.index("--out") + 1], self.out)
        small = ["--data_folder", self.folder, "--vocabulary_size", str(VOCAB), "--dim", str(DIM)]
        without_force = [word for word in command[3:] if word != "--force"]
        self.assertEqual(fixtures.run_main(be.main, *without_force, *small)[0], 2)  # the page is not overwritten...
        with self.assertRaises(EmbeddingsError):
            read_embeddings(self.out)
        self.assertEqual(fixtures.run_main(be.main, *command[3:], *small)[0], 0)  # ...but the command as given does
        tokens, position = read_embeddings(self.out)
        self.assertEqual(tuple(tokens.shape), (VOCAB, DIM))

    def test_rejects_bad_sizes(self):
        for extra in (["--window", "0"], ["--scale", "0"], ["--dim", "2"], ["--dim", "7"]):
            with self.subTest(extra=extra):
                code, err = self.run_main(*extra, out=os.path.join(self.folder, "bad.npz"))
                self.assertEqual(code, 2)
                self.assertIn("error", err)
                self.assertFalse(os.path.exists(os.path.join(self.folder, "bad.npz")))

    def test_missing_data_names_the_path(self):
        os.remove(os.path.join(self.folder, "wiki.train.npz"))
        code, err = self.run_main(out=os.path.join(self.folder, "y.npz"))
        self.assertEqual(code, 2)
        self.assertIn(os.path.join(self.folder, "wiki.train.npz"), err)
        self.assertFalse(os.path.exists(os.path.join(self.folder, "y.npz")))

    def test_describe_embeddings(self):
        self.run_main()
        info = be.describe_embeddings(self.out)
        with open(self.out, "rb") as handle:
            self.assertEqual(info["sha256"], hashlib.sha256(handle.read()).hexdigest())
        self.assertEqual(info["path"], os.path.abspath(self.out))
        self.assertEqual(info["kind"], "next-token-svd")
        self.assertEqual(info["train_sha256"], be.file_sha256(os.path.join(self.folder, "wiki.train.npz")))
        for key in ("method", "seed", "scale", "seconds", "window", "freq_ones", "position_constant"):
            self.assertIn(key, info)
        with open(be.sidecar_path(self.out), "a") as handle:
            handle.write("\n")  # still valid JSON, still this file's sidecar
        self.assertEqual(be.describe_embeddings(self.out)["kind"], "next-token-svd")
        self.run_main("--seed", "5", "--method", "ppmi-svd", out=os.path.join(self.folder, "other.npz"))
        self.assertEqual(be.describe_embeddings(os.path.join(self.folder, "other.npz"))["kind"], "ppmi-svd")
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
        self.assertTrue(torch.isfinite(log_probas).all() and torch.isfinite(gpt(inputs)).all())

    def test_a_corpus_without_pairs_is_one_line_and_exit_2(self):
        for method in st.METHODS:
            with self.subTest(method=method):
                write_split(self.folder, "train", [[3], [4], [5]])
                out = os.path.join(self.folder, f"{method}-pairs.npz")
                code, err = self.run_main("--method", method, out=out)
                self.assertEqual(code, 2)
                self.assertIn("no line of two tokens", err)
                self.assertEqual(len(err.strip().splitlines()), 1)
                self.assertFalse(os.path.exists(out))
        write_corpus(self.folder)


if __name__ == "__main__":
    unittest.main()
