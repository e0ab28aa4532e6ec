"""GPT1Embedding and loading `embeddings.npz` (utils/data/embeddings.py) into the embedding, the LSTM
and MiniGPT1, from small files written by the tests."""
import os
import shutil
import tempfile
import unittest


import numpy as np
import torch

from tests import fixtures
from gpt1_solution import MiniGPT1
from lstm_solution import LSTM
from utils.data import embeddings as embeddings_module
from utils.data.embeddings import (
    EmbeddingsError,
    GPT1Embedding,
    missing_embeddings_message,
    read_embeddings,
)

V, E, P = 13, 8, 10  # the small embeddings file: 13 tokens, width 8, 10 positions


class GPT1EmbeddingTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.emb = GPT1Embedding(vocabulary_size=V, embedding_size=E, sequence_length=P)

    def test_forward_is_token_plus_position(self):
        tokens = torch.tensor([[1, 5, 12, 0, 3], [7, 7, 2, 9, 11]])
        positions = torch.tensor([[0, 1, 2, 3, 4], [9, 0, 5, 5, 8]])  # any positions, not only arange
        out = self.emb(tokens, positions)
        self.assertEqual(out.shape, (2, 5, E))
        tok_w, pos_w = self.emb.tokens.weight, self.emb.position.weight
        for b in range(2):
            for t in range(5):
                expected = tok_w[tokens[b, t]] + pos_w[positions[b, t]]
                self.assertTrue(torch.equal(out[b, t], expected), (b, t))

    def test_padding_row_is_zero(self):
        self.assertTrue(torch.all(self.emb.tokens.weight[0] == 0))
        self.assertEqual(self.emb.tokens.padding_idx, 0)
        out = self.emb(torch.tensor([[0, 0]]), torch.tensor([[2, 3]]))
        self.assertTrue(torch.equal(out[0], self.emb.position.weight[[2, 3]]))

    def test_out_of_range_raises(self):
        ok_tokens, ok_positions = torch.tensor([[1, 2]]), torch.tensor([[0, 1]])
        self.emb(ok_tokens, ok_positions)
        self.emb(torch.tensor([[V - 1]]), torch.tensor([[P - 1]]))  # the last valid ids
        for tokens, positions, what in [
            (torch.tensor([[1, V]]), ok_positions, "token"),
            (torch.tensor([[-1, 2]]), ok_positions, "token"),
            (ok_tokens, torch.tensor([[0, P]]), "position"),
            (ok_tokens, torch.tensor([[-1, 0]]), "position"),
        ]:
            with self.subTest(tokens=tokens.tolist(), positions=positions.tolist()):
                with self.assertRaises(IndexError) as ctx:
                    self.emb(tokens, positions)
                self.assertIn(what, str(ctx.exception))
                self.assertIn("out of range", str(ctx.exception))

    def test_minigpt1_rejects_too_long_inputs(self):
        model = MiniGPT1(vocabulary_size=V, embedding_size=E, sequence_length=6, num_heads=2, num_layers=1)
        model(torch.randint(1, V, (1, 6)))
        with self.assertRaises(IndexError):
            model(torch.randint(1, V, (1, 7)))
        with self.assertRaises(IndexError):
            model(torch.tensor([[1, V]]))


class LoadEmbeddingsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="embeddings_test_")
        rng = np.random.default_rng(0)
        cls.tokens = rng.standard_normal((V, E)).astype(np.float32)
        cls.tokens[0] = 0.0
        cls.position = rng.standard_normal((P, E)).astype(np.float32)
        cls.path = cls.write("embeddings.npz", tokens=cls.tokens, position=cls.position)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.folder, ignore_errors=True)

    @classmethod
    def write(cls, name, **arrays):
        path = os.path.join(cls.folder, name)
        np.savez(path, **arrays)
        return path

    def test_read_embeddings(self):
        tokens, position = read_embeddings(self.path)
        self.assertEqual((tokens.dtype, position.dtype), (torch.float32, torch.float32))
        np.testing.assert_array_equal(tokens.numpy(), self.tokens)
        np.testing.assert_array_equal(position.numpy(), self.position)
        read_embeddings(self.path, vocabulary_size=V, embedding_size=E)  # expected shapes: fine

    def test_float64_file_is_read_as_float32(self):
        path = self.write("float64.npz", tokens=self.tokens.astype(np.float64), position=self.position.astype(np.float64))
        tokens, position = read_embeddings(path)
        self.assertEqual(tokens.dtype, torch.float32)
        np.testing.assert_array_equal(tokens.numpy(), self.tokens)
        np.testing.assert_array_equal(position.numpy(), self.position)

    def test_gpt1_embedding_round_trip(self):
        emb = GPT1Embedding.load_embeddings_from(self.path)
        self.assertEqual((emb.vocabulary_size, emb.sequence_length), (V, P))
        np.testing.assert_array_equal(emb.tokens.weight.detach().numpy(), self.tokens)
        np.testing.assert_array_equal(emb.position.weight.detach().numpy(), self.position)
        out = emb(torch.tensor([[3, 4]]), torch.tensor([[0, 9]]))
        np.testing.assert_allclose(out[0].detach().numpy(), self.tokens[[3, 4]] + self.position[[0, 9]], rtol=0, atol=0)

    def test_lstm_round_trip(self):
        model = LSTM.load_embeddings_from(self.path, hidden_size=5, num_layers=2)
        self.assertEqual((model.vocabulary_size, model.embedding_size, model.hidden_size, model.num_layers), (V, E, 5, 2))
        np.testing.assert_array_equal(model.embedding.weight.detach().numpy(), self.tokens)
        self.assertIs(model.classifier[2].weight, model.embedding.weight)
        self.assertFalse(model.embedding.weight.requires_grad)
        log_probas, _ = model(torch.tensor([[1, 2, 3]]), model.initial_states(1))
        self.assertEqual(log_probas.shape, (1, 3, V))
        self.assertTrue(LSTM.load_embeddings_from(self.path, learn_embeddings=True).embedding.weight.requires_grad)

    def test_minigpt1_round_trip_truncates_positions(self):
        model = MiniGPT1.load_embeddings_from(self.path, num_heads=2, num_layers=1, sequence_length=6)
        self.assertEqual((model.vocabulary_size, model.embedding_size, model.sequence_length), (V, E, 6))
        np.testing.assert_array_equal(model.embedding.tokens.weight.detach().numpy(), self.tokens)
        np.testing.assert_array_equal(model.embedding.position.weight.detach().numpy(), self.position[:6])
        self.assertIs(model.classifier.weight, model.embedding.tokens.weight)
        self.assertFalse(model.embedding.tokens.weight.requires_grad)
        self.assertFalse(model.embedding.position.weight.requires_grad)
        self.assertEqual(model(torch.tensor([[1, 2, 3, 4, 5, 6]])).shape, (1, 6, V))
        # all positions of the file when sequence_length == P
        full = MiniGPT1.load_embeddings_from(self.path, num_heads=2, num_layers=1, sequence_length=P)
        np.testing.assert_array_equal(full.embedding.position.weight.detach().numpy(), self.position)
        # too few positions in the file for the model: a clear error
        with self.assertRaises(ValueError) as ctx:
            MiniGPT1.load_embeddings_from(self.path, num_heads=2, num_layers=1, sequence_length=P + 1)
        self.assertIn(self.path, str(ctx.exception))

    def test_minigpt1_sequence_length_comes_from_the_file_as_in_the_skeleton(self):
        # The course skeleton: no sequence_length -> one position per row of the file (512 for GPT-1's).
        model = MiniGPT1.load_embeddings_from(self.path, num_heads=2, num_layers=1)
        self.assertEqual(model.sequence_length, P)
        np.testing.assert_array_equal(model.embedding.position.weight.detach().numpy(), self.position)
        self.assertEqual(model(torch.arange(1, P + 1)[None] % V).shape, (1, P, V))
        # A file with fewer positions than an input loads, and fails only on the longer input.
        with self.assertRaisesRegex(IndexError, "position out of range"):
            model(torch.ones(1, P + 1, dtype=torch.long))

    def test_loading_does_not_alias_between_models(self):
        a = MiniGPT1.load_embeddings_from(self.path, num_heads=2, num_layers=1, sequence_length=6)
        b = MiniGPT1.load_embeddings_from(self.path, num_heads=2, num_layers=1, sequence_length=6)
        self.assertNotEqual(a.tied_weight.data_ptr(), b.tied_weight.data_ptr())

    def test_wrong_shapes_raise_clear_errors(self):
        cases = {
            "tokens_1d.npz": dict(tokens=self.tokens[:, 0], position=self.position),
            "position_1d.npz": dict(tokens=self.tokens, position=self.position[:, 0]),
            "widths_differ.npz": dict(tokens=self.tokens, position=self.position[:, :E - 1]),
            "tokens_3d.npz": dict(tokens=self.tokens[None], position=self.position),
        }
        for name, arrays in cases.items():
            path = self.write(name, **arrays)
            for loader in (read_embeddings, GPT1Embedding.load_embeddings_from, LSTM.load_embeddings_from,
                           MiniGPT1.load_embeddings_from):
                with self.subTest(file=name, loader=loader.__qualname__):
                    with self.assertRaises(EmbeddingsError) as ctx:
                        loader(path)
                    self.assertIsInstance(ctx.exception, ValueError)
                    self.assertIn(path, str(ctx.exception))
                    self.assertIn("expected", str(ctx.exception))

    def test_unexpected_vocabulary_or_width(self):
        with self.assertRaises(EmbeddingsError) as ctx:
            read_embeddings(self.path, vocabulary_size=40479, embedding_size=768)
        self.assertIn(str((V, E)), str(ctx.exception))
        self.assertIn(str((40479, 768)), str(ctx.exception))
        with self.assertRaises(EmbeddingsError):
            read_embeddings(self.path, embedding_size=E + 1)

    def test_not_an_embeddings_file(self):
        missing_key = self.write("no_position.npz", tokens=self.tokens)
        garbage = os.path.join(self.folder, "garbage.npz")
        with open(garbage, "wb") as handle:
            handle.write(b"this is not a zip file")
        for path in (missing_key, garbage):
            with self.subTest(path=path):
                with self.assertRaises(EmbeddingsError) as ctx:
                    read_embeddings(path)
                self.assertIn(path, str(ctx.exception))

    def test_missing_file_names_path_and_remedy(self):
        path = os.path.join(self.folder, "nowhere", "embeddings.npz")
        message = missing_embeddings_message(path)
        self.assertIn(path, message)
        self.assertIn("download", message.lower())
        self.assertIn("build", message.lower())
        self.assertIn(embeddings_module.BUILD_COMMAND, message)
        for loader in (read_embeddings, GPT1Embedding.load_embeddings_from, LSTM.load_embeddings_from,
                       MiniGPT1.load_embeddings_from):
            with self.subTest(loader=loader.__qualname__):
                with self.assertRaises(EmbeddingsError) as ctx:
                    loader(path)
                self.assertEqual(str(ctx.exception), message)

    def test_build_command_names_an_existing_module(self):
        # the remedy in the message must be runnable: `python -m utils.build_embeddings ...`
        words = embeddings_module.BUILD_COMMAND.split()
        self.assertEqual(words[:2], ["python", "-m"])
        module_file = os.path.join(fixtures.REPO_ROOT, *words[2].split(".")) + ".py"
        self.assertTrue(os.path.isfile(module_file), module_file)


if __name__ == "__main__":
    unittest.main()
