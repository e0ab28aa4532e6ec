"""Sampling (utils/models/generation.py) and the generate.py command line, on tiny models."""
import os
import tempfile
import unittest

import torch

from tests import fixtures

import generate as generate_cli
from gpt1_solution import MiniGPT1
from lstm_solution import LSTM
from utils.models.generation import filter_distribution, generate, log_proba_steps

BPE_FOLDER = fixtures.BPE
PROMPT = [3, 17, 5, 42, 9]
_THREADS = []


def setUpModule():
    # Tiny matmuls on a shared 2-core machine: one thread avoids OpenMP contention (10x faster here).
    _THREADS.append(torch.get_num_threads())
    torch.set_num_threads(1)


def tearDownModule():
    torch.set_num_threads(_THREADS.pop())


def tiny_lstm():
    torch.manual_seed(0)
    return LSTM(vocabulary_size=50, embedding_size=16, hidden_size=8).eval()


def tiny_gpt(sequence_length=8):
    torch.manual_seed(0)
    return MiniGPT1(vocabulary_size=50, embedding_size=24, sequence_length=sequence_length,
                    num_heads=2, num_layers=1).eval()


def full_run_log_probas(model, ids):
    """Next-token log-probabilities computed from scratch: the whole sequence for the LSTM, the last
    sequence_length tokens for MiniGPT1 -- independent of generation.py's incremental paths."""
    with torch.no_grad():
        if isinstance(model, LSTM):
            return model(torch.tensor([ids]), model.initial_states(1))[0][0, -1]
        return model(torch.tensor([ids[-model.sequence_length:]]))[0, -1]


class SamplingTest(unittest.TestCase):
    def test_same_seed_same_output(self):
        for model in (tiny_lstm(), tiny_gpt()):
            # Random tied embeddings make peaked distributions: a high temperature lets seeds differ.
            runs = [generate(model, PROMPT, 20, 3.0, 40, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
            self.assertEqual(runs[0], runs[1])
            self.assertNotEqual(runs[0], runs[2])
            self.assertEqual(len(runs[0]), 20)
            self.assertTrue(all(1 <= t < 50 for t in runs[0]))

    def test_greedy_is_stepwise_argmax(self):
        for model in (tiny_lstm(), tiny_gpt()):
            produced = generate(model, PROMPT, 12, temperature=0.0)
            context = list(PROMPT)
            for token in produced:
                expected = 1 + int(torch.argmax(full_run_log_probas(model, context)[1:]))  # padding excluded
                self.assertEqual(token, expected)
                context.append(token)

    def test_top_k_one_is_greedy(self):
        model = tiny_gpt()
        sampled = generate(model, PROMPT, 10, 0.8, 1, torch.Generator().manual_seed(3))
        self.assertEqual(sampled, generate(model, PROMPT, 10, 0.0))

    def test_filter_keeps_top_k_without_padding(self):
        log_probas = torch.log_softmax(torch.tensor([9.0, 1.0, 5.0, 3.0, 4.0, 2.0]), dim=0)
        scores = filter_distribution(log_probas, temperature=2.0, top_k=3)
        kept = torch.isfinite(scores).nonzero().flatten().tolist()
        self.assertEqual(kept, [2, 3, 4])  # id 0 (padding) is never kept, however likely
        self.assertTrue(torch.allclose(scores[kept], log_probas[kept].double() / 2.0))

    def test_lstm_state_matches_full_rerun(self):
        model, ids = tiny_lstm(), list(PROMPT)
        with torch.no_grad():
            steps = log_proba_steps(model, ids)
            incremental = next(steps)
            for token in [11, 4, 4, 30, 2]:
                self.assertTrue(torch.allclose(incremental, full_run_log_probas(model, ids), atol=1e-5))
                ids.append(token)
                incremental = steps.send(token)
            self.assertTrue(torch.allclose(incremental, full_run_log_probas(model, ids), atol=1e-5))

    def test_gpt_window_slides_past_sequence_length(self):
        model = tiny_gpt(sequence_length=8)
        lengths = []
        model.register_forward_pre_hook(lambda module, inputs: lengths.append(inputs[0].shape[1]))
        produced = generate(model, PROMPT, 15, temperature=0.0)  # 5 + 15 tokens > 8 positions
        self.assertEqual(max(lengths), 8)
        context = PROMPT + produced
        with torch.no_grad():  # the last step, by hand: the 8 tokens before the last one
            last = model(torch.tensor([context[-9:-1]]))[0, -1]
        self.assertEqual(produced[-1], 1 + int(torch.argmax(last[1:])))

    def test_bad_arguments(self):
        model = tiny_lstm()
        with self.assertRaises(ValueError):
            generate(model, [], 5)
        with self.assertRaises(ValueError):
            generate(model, [0, 3], 5)  # padding is not a prompt token
        with self.assertRaises(ValueError):
            generate(model, [50], 5)
        with self.assertRaises(ValueError):
            generate(model, [3], 5, temperature=-1.0)
        self.assertEqual(generate(model, [3], 0), [])


def save_tiny_checkpoint(run_dir, kind, **settings):
    """A checkpoint as training writes it (learned parameters only, the embeddings file's sha256),
    with the full GPT-1 vocabulary (the tokenizer's ids) but narrow embeddings in a file beside it."""
    from utils.data.embeddings import file_sha256, read_embeddings
    from utils.models.registry import model_spec
    from utils.runs.checkpoint import learned_state, save_checkpoint

    embeddings = fixtures.write_embeddings(os.path.join(run_dir, "emb.npz"), vocab=40479, width=24, positions=32)
    tokens, position = read_embeddings(embeddings)
    torch.manual_seed(0)
    from dataclasses import asdict

    from utils.train.settings import Arguments

    model = model_spec(kind).build(Arguments(), tokens, position)
    settings = dict(asdict(Arguments()), **settings, model=kind, layers=1, learn_embeddings=False,
                    embeddings=embeddings)
    save_checkpoint(run_dir, {"model": learned_state(model), "embeddings_sha256": file_sha256(embeddings),
                              "settings": settings})


class CommandLineTest(unittest.TestCase):
    def run_cli(self, *argv):
        return fixtures.run_main(generate_cli.main, *argv, "--bpe_folder", BPE_FOLDER)

    def test_generates_deterministically_for_both_models(self):
        for kind in ("lstm", "gpt1"):
            with tempfile.TemporaryDirectory() as run_dir:
                save_tiny_checkpoint(run_dir, kind)
                argv = ["--run", run_dir, "--prompt", "The history of", "--max_new_tokens", "12", "--seed", "0"]
                first, second = self.run_cli(*argv), self.run_cli(*argv)
                self.assertEqual(first[0], 0, first[2])
                self.assertEqual(first, second)
                self.assertTrue(first[1].startswith("the history of"))
                greedy = self.run_cli(*argv, "--temperature", "0")
                self.assertEqual(greedy[0], 0, greedy[2])

    def test_unfinished_run_is_named_then_generates(self):
        """An interrupted run generates from its last checkpoint after one stderr line naming its status
        and epoch; a completed run prints nothing but the text."""
        import json

        with tempfile.TemporaryDirectory() as run_dir:
            save_tiny_checkpoint(run_dir, "lstm", epochs=10)
            argv = ["--run", run_dir, "--prompt", "the history of", "--max_new_tokens", "5"]
            silent = self.run_cli(*argv)  # no status.json (a hand-made checkpoint): no note
            for status, note in ((dict(status="interrupted", epoch=3, step=40), "interrupted at epoch 3 of 10, step 40"),
                                 (dict(status="running", epoch=1, step=None), "running at epoch 1 of 10)"),
                                 (dict(status="completed", epoch=10, step=None), None)):
                with open(os.path.join(run_dir, "status.json"), "w") as handle:
                    json.dump(status, handle)
                code, out, err = self.run_cli(*argv)
                self.assertEqual((code, out), silent[:2])  # the same text from the same weights
                if note is None:
                    self.assertEqual(err, "")
                else:
                    self.assertEqual(len(err.strip().splitlines()), 1, err)
                    self.assertIn(note, err)
                    self.assertIn("last checkpoint", err)

    def test_bad_input_exits_2_with_one_line(self):
        with tempfile.TemporaryDirectory() as run_dir:
            save_tiny_checkpoint(run_dir, "lstm")
            missing = os.path.join(run_dir, "nothing-here")
            corrupt = os.path.join(run_dir, "corrupt")
            os.makedirs(corrupt)
            with open(os.path.join(corrupt, "checkpoint.pt"), "wb") as handle:
                handle.write(b"not a checkpoint")
            cases = [
                ["--run", missing, "--prompt", "the history of"],
                ["--run", run_dir, "--prompt", "   "],
                ["--run", run_dir, "--prompt", "戦場"],  # only characters outside the vocabulary
                ["--run", run_dir, "--prompt", "the", "--temperature", "-1"],
                ["--run", corrupt, "--prompt", "the history of"],
            ]
            for argv in cases:
                code, out, err = self.run_cli(*argv)
                self.assertEqual(code, 2, argv)
                self.assertEqual(out, "")
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertTrue(err.startswith("error: "))
