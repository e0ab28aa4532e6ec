"""A model or an optimizer is added in one place: a registry entry (plus the model's own file).
Shown here by registering a third model and a fifth optimizer for the length of a test and
training them through the command line, checkpoints and resume included."""
import os
import tempfile
import unittest
from unittest import mock

import torch
import torch.nn as nn

from tests import fixtures
import run_exp
from utils.models.base import TiedLanguageModel
from utils.models.registry import MODELS, ModelSpec, model_spec
from utils.runs.run_dir import RunDir
from utils.train.optim import OPTIMIZERS, OptimizerSpec, make_optimizer
from utils.train.settings import Arguments


class TinyGRU(TiedLanguageModel):
    """What a third model's file holds: the layers, tied_weight, sequence_features, _tie."""

    recurrent = True

    def __init__(self, tokens, learn_embeddings=False):
        super().__init__()
        self.vocabulary_size = tokens.shape[0]
        self.embedding = nn.Embedding(tokens.shape[0], tokens.shape[1], padding_idx=0, _weight=tokens)
        self.gru = nn.GRU(tokens.shape[1], 16, batch_first=True)
        self.project = nn.Linear(16, tokens.shape[1])
        self.classifier = nn.Linear(tokens.shape[1], tokens.shape[0], bias=False)
        self._tie(self.classifier, learn_embeddings)

    @property
    def tied_weight(self):
        return self.embedding.weight

    def sequence_features(self, inputs):
        return self.project(self.gru(self.embedding(inputs))[0])  # (B, T, E)


GRU_SPEC = ModelSpec("GRU", lambda s, tokens, position: TinyGRU(tokens, s.learn_embeddings), lambda *shapes: None)
RMSPROP = OptimizerSpec(lambda o, p, s, **kw: o.RMSprop(p, lr=s.lr, weight_decay=s.weight_decay, **kw),
                        ("lr", "weight_decay"), (1e-4, 1e-3))


class OnePlaceToAdd(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.data = fixtures.write_corpus(os.path.join(tmp.name, "data"))
        self.emb = fixtures.write_embeddings(os.path.join(tmp.name, "emb.npz"))
        self.logs = os.path.join(tmp.name, "logs")

    def cli(self, *extra):
        argv = ["--data_folder", self.data, "--embeddings", self.emb, "--device", "cpu", "--log_dir", self.logs,
                "--epochs", "2", "--batch_size", "2", "--max_batches", "2", "--print_every", "1000", *extra]
        code, _, err = fixtures.run_main(run_exp.cli, *argv)
        return code, err

    def test_a_third_model_and_a_fifth_optimizer(self):
        with mock.patch.dict(MODELS, gru=GRU_SPEC), mock.patch.dict(OPTIMIZERS, rmsprop=RMSPROP):
            code, err = self.cli("--model", "gru", "--optimizer", "rmsprop", "--exp_id", "gru")
            self.assertEqual(code, 0, err)
            args = RunDir(self.logs, "gru").recorded_settings()
            self.assertEqual((args["model"], args["optimizer"]), ("gru", "rmsprop"))
            state = torch.load(os.path.join(self.logs, "gru", "checkpoint.pt"), weights_only=False)
            self.assertIn("gru.weight_hh_l0", state["model"])
            self.assertNotIn("embedding.weight", state["model"])  # frozen: the base class leaves it out
            self.assertEqual(type(state["optimizer"]["param_groups"][0].get("alpha")), float)  # RMSprop's own
        code, err = self.cli("--model", "gru", "--exp_id", "gone")  # unregistered again: refused, one line
        self.assertEqual(code, 2)
        self.assertIn("gru", err)

    def test_unknown_names_are_errors_never_fallbacks(self):
        model = model_spec("lstm").build(Arguments(), torch.zeros(10, 4), torch.zeros(8, 4))
        with self.assertRaises(KeyError) as caught:
            make_optimizer(Arguments(optimizer="no_such_optimizer"), model)
        self.assertIn("no_such_optimizer", str(caught.exception))  # names it, and every choice
        self.assertTrue(all(name in str(caught.exception) for name in OPTIMIZERS))
        with self.assertRaises(KeyError) as caught:
            model_spec("no_such_model")
        self.assertIn("no_such_model", str(caught.exception))
        self.assertTrue(all(name in str(caught.exception) for name in MODELS))


if __name__ == "__main__":
    unittest.main()
