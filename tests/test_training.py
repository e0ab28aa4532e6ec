"""Training and evaluation: exact perplexity, the course loss, logs, resume, divergence, sweeps."""
import contextlib
import io
import json
import math
import os
import tempfile
import unittest
from unittest import mock

from tests import fixtures

import torch
from torch.utils.data import DataLoader

import run_exp
from gpt1_solution import MiniGPT1
from lstm_solution import LSTM
from utils.data.batches import TensorBatches
from utils.data.wikitext2 import Wikitext2
from utils.models.base import TokenNLL
from run_exp import evaluate, train
from utils.train.watch import TrainingDiverged
from utils.train.settings import Arguments, UsageError
from utils.train.stop import RunInterrupted

V, E = fixtures.TINY_VOCAB, fixtures.TINY_WIDTH


def tiny_models():
    torch.manual_seed(0)
    return {
        "lstm": LSTM(vocabulary_size=V, embedding_size=E, hidden_size=16),
        "gpt1": MiniGPT1(vocabulary_size=V, embedding_size=E, sequence_length=32, num_heads=3, num_layers=2),
    }


def reference_perplexity(model, dataset):
    """exp(total NLL / real targets), one item at a time through the course's forward()."""
    total, count = 0.0, 0.0
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            source = item["source"][None]
            if isinstance(model, LSTM):
                log_probas, _ = model(source, model.initial_states(1))
            else:
                log_probas = model(source)
            nll = -log_probas[0].gather(1, item["target"][:, None]).squeeze(1).double()
            total += float((nll * item["mask"].double()).sum())
            count += float(item["mask"].sum())
    return math.exp(total / count), count


class ExactPerplexityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        fixtures.write_corpus(cls.tmp.name)
        # lines mode leaves many short, padded items: the case the old per-batch formula got wrong.
        cls.dataset = Wikitext2(cls.tmp.name, split="validation", break_mode="lines", max_length=32)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_same_for_any_batch_size_and_equal_to_reference(self):
        self.assertGreater(len(self.dataset), 8)
        args = Arguments(print_every=1000)
        for name, model in tiny_models().items():
            model.double()  # float64, so the only differences left would be real ones
            expected, count = reference_perplexity(model, self.dataset)
            loaders = [TensorBatches(self.dataset, 3), TensorBatches(self.dataset, 7),
                       DataLoader(self.dataset, batch_size=5)]
            for loader in loaders:
                mean_nll, ppl, _ = result = evaluate(0, model, loader, args)
                with self.subTest(model=name, loader=type(loader).__name__):
                    self.assertEqual(result.tokens, count)
                    self.assertEqual(result.tokens, self.dataset.num_targets())
                    self.assertAlmostEqual(ppl / expected, 1.0, places=10)
                    self.assertAlmostEqual(mean_nll, math.log(expected), places=10)

    def test_padding_changes_the_naive_formula_but_not_ours(self):
        """Guard that the split really is padded: dividing by B*T would give another number."""
        batch = next(iter(TensorBatches(self.dataset, len(self.dataset))))
        self.assertLess(float(batch["mask"].sum()), batch["mask"].numel())


class OptimisesCourseLossTest(unittest.TestCase):
    def test_sgd_step_follows_the_gradient_of_model_loss(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        fixtures.write_corpus(tmp.name)
        dataset = Wikitext2(tmp.name, split="test", break_mode="lines", max_length=32)
        batch = next(iter(TensorBatches(dataset, 4)))
        for name, model in tiny_models().items():
            params = [p for p in model.parameters() if p.requires_grad]
            before = [p.detach().clone() for p in params]
            if name == "lstm":
                log_probas, _ = model(batch["source"], model.initial_states(4))
            else:
                log_probas = model(batch["source"])
            grads = torch.autograd.grad(model.loss(log_probas, batch["target"], batch["mask"]), params)
            optimizer = torch.optim.SGD(params, lr=0.5)
            train(0, model, [batch], optimizer, Arguments(print_every=1000))
            for p, p0, g in zip(params, before, grads):
                torch.testing.assert_close(p.detach(), p0 - 0.5 * g, rtol=1e-5, atol=1e-6)


def tiny_args(folder, **overrides):
    fields = dict(data_folder=folder, embeddings=os.path.join(folder, "emb.npz"), model="lstm", layers=1,
                  epochs=2, batch_size=4, device="cpu", log_dir=os.path.join(folder, "logs"), exp_id="run",
                  max_batches=3, print_every=1000, num_workers=0)
    fields.update(overrides)
    return Arguments(**fields)


class RunTestCase(unittest.TestCase):
    def setUp(self):
        self.enterContext(contextlib.redirect_stdout(io.StringIO()))  # the runs' progress lines
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.folder = fixtures.write_corpus(self.tmp.name)
        fixtures.write_embeddings(os.path.join(self.folder, "emb.npz"))

    def run_dir(self, exp_id="run"):
        return os.path.join(self.folder, "logs", exp_id)

    def read_json(self, exp_id, name):
        with open(os.path.join(self.run_dir(exp_id), name)) as handle:
            return json.load(handle)

    def read_metrics(self, exp_id):
        with open(os.path.join(self.run_dir(exp_id), "metrics.jsonl")) as handle:
            return [json.loads(line) for line in handle]


class MainTest(RunTestCase):
    def test_main_returns_the_notebooks_ten_values_and_writes_logs(self):
        results = run_exp.main(tiny_args(self.folder))
        self.assertEqual(len(results), 10)
        train_losses, train_ppls, _, valid_losses, valid_ppls, _, test_loss, test_ppl, _, memory = results
        self.assertEqual(len(train_losses), 2)
        for loss, ppl in zip(valid_losses + [test_loss], valid_ppls + [test_ppl]):
            self.assertAlmostEqual(ppl, math.exp(loss), places=6)
        self.assertTrue(math.isnan(memory), "CPU memory must be reported as not measured (NaN), not 0")
        self.assertLess(train_ppls[0], V, "training on a predictable corpus beats uniform guessing")
        names = ["args.json", "metrics.jsonl", "status.json", "provenance.json", "checkpoint.pt",
                 "test_ppl.txt", "avg_steady_state_memory.txt"]
        for name in names + [f"{s}_{m}.txt" for s in ("train", "valid") for m in ("loss", "ppl", "time")]:
            self.assertTrue(os.path.isfile(os.path.join(self.run_dir(), name)), name)
        with open(os.path.join(self.run_dir(), "valid_ppl.txt")) as handle:
            self.assertEqual([float(x) for x in handle.read().split()], valid_ppls)
        self.assertEqual(self.read_json("run", "status.json")["status"], "completed")
        metrics = self.read_metrics("run")
        self.assertEqual([m["epoch"] for m in metrics], [1, 2])
        # The tiny split fits in 3 batches of 4: every real target is counted once.
        self.assertEqual(metrics[0]["train_tokens"], Wikitext2(self.folder, "train").num_targets())
        self.assertIsNone(metrics[0]["peak_memory_mb"])
        prov = self.read_json("run", "provenance.json")
        self.assertEqual(prov["params_frozen"], V * E)
        self.assertEqual(len(prov["embeddings"]["sha256"]), 64)

    def test_completed_run_is_not_overwritten_without_force(self):
        run_exp.main(tiny_args(self.folder, epochs=1))
        with self.assertRaises(UsageError):
            run_exp.main(tiny_args(self.folder, epochs=1))
        run_exp.main(tiny_args(self.folder, epochs=1, force=True))

    def test_resume_equals_uninterrupted_run(self):
        for model in ("lstm", "gpt1"):
            with self.subTest(model=model):
                whole = run_exp.main(tiny_args(self.folder, model=model, exp_id=f"{model}-whole"))
                real_train = run_exp.train

                def killed_in_second_epoch(epoch, *a, **k):
                    if epoch == 1:
                        raise KeyboardInterrupt("simulated kill")
                    return real_train(epoch, *a, **k)

                with mock.patch.object(run_exp, "train", killed_in_second_epoch):
                    with self.assertRaises(RunInterrupted):
                        run_exp.main(tiny_args(self.folder, model=model, exp_id=f"{model}-cut"))
                self.assertEqual(self.read_json(f"{model}-cut", "status.json")["status"], "interrupted")
                out = io.StringIO()
                with contextlib.redirect_stdout(out):  # a plain rerun continues, and says so
                    resumed = run_exp.main(tiny_args(self.folder, model=model, exp_id=f"{model}-cut"))
                self.assertIn("from its checkpoint at the start of epoch 2 of 2", out.getvalue())
                for index in (0, 1, 3, 4, 6, 7):  # losses and perplexities; times differ
                    self.assertEqual(resumed[index], whole[index])
                keys = ("train_loss", "valid_loss", "train_ppl", "valid_ppl", "epoch")
                strip = lambda ms: [{k: m[k] for k in keys} for m in ms]  # noqa: E731
                self.assertEqual(strip(self.read_metrics(f"{model}-cut")), strip(self.read_metrics(f"{model}-whole")))

    def test_resume_mid_epoch_equals_uninterrupted_with_cosine_warmup_and_clipping(self):
        from utils.train import passes

        knobs = dict(lr_schedule="cosine", warmup_steps=2, grad_clip=0.5, epochs=2, checkpoint_every=1, lr=0.01)
        whole = run_exp.main(tiny_args(self.folder, exp_id="whole", **knobs))
        real, calls = passes.Pass.add, {"n": 0}

        def killed_at_fifth_step(pass_, *a, **k):  # epoch 2, step 2: its step-1 checkpoint stands
            real(pass_, *a, **k)
            calls["n"] += pass_.training
            if pass_.training and calls["n"] == 5:
                raise KeyboardInterrupt("simulated kill")

        with mock.patch.object(passes.Pass, "add", killed_at_fifth_step), self.assertRaises(RunInterrupted):
            run_exp.main(tiny_args(self.folder, exp_id="cut", **knobs))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            resumed = run_exp.main(tiny_args(self.folder, exp_id="cut", **knobs))
        self.assertIn("checkpoint at epoch 2, step 1", out.getvalue())  # continued in the middle of an epoch
        for index in (0, 1, 3, 4, 6, 7):  # losses and perplexities, bit for bit
            self.assertEqual(resumed[index], whole[index])
        lrs = [m["lr"] for m in self.read_metrics("whole")]
        self.assertEqual(lrs, [m["lr"] for m in self.read_metrics("cut")])
        self.assertLess(lrs[1], lrs[0])  # the cosine decays: the schedule ran
        self.assertEqual(self.read_json("cut", "args.json")["lr_schedule"], "cosine")

    def test_non_finite_loss_marks_the_run_diverged(self):
        real = TokenNLL.forward
        calls = {"n": 0}

        def nan_on_second_step(module, source, target):
            calls["n"] += 1
            nll = real(module, source, target)
            return nll * float("nan") if calls["n"] == 2 else nll

        with mock.patch.object(TokenNLL, "forward", nan_on_second_step):
            with self.assertRaises(TrainingDiverged):
                run_exp.main(tiny_args(self.folder))
        status = self.read_json("run", "status.json")
        self.assertEqual((status["status"], status["epoch"], status["step"]), ("diverged", 1, 1))


class SweepTest(RunTestCase):
    def test_sweep_skips_completed_and_keeps_going_past_a_divergence(self):
        overrides = dict(data_folder=self.folder, embeddings=os.path.join(self.folder, "emb.npz"), epochs=1,
                         batch_size=4, max_batches=2, device="cpu", log_dir=os.path.join(self.folder, "logs"),
                         print_every=1000)
        real_train = run_exp.train

        def lstm_diverges(epoch, model, *a, **k):
            if isinstance(model, LSTM):
                raise TrainingDiverged(epoch, 0)
            return real_train(epoch, model, *a, **k)

        with mock.patch.object(run_exp, "train", lstm_diverges):
            first = run_exp.run_sweep([3, 7], **overrides)
        self.assertEqual([s["status"] for s in first], ["diverged", "completed"])
        self.assertEqual(self.read_json("3", "status.json")["status"], "diverged")
        self.assertEqual(self.read_json("7", "args.json")["optimizer"], "sgd")
        self.assertEqual(self.read_json("7", "args.json")["config"], 7)
        second = run_exp.run_sweep([7], **overrides)
        self.assertEqual(second[0]["status"], "skipped")
        before = self.read_metrics("7")
        third = run_exp.run_sweep([7], **dict(overrides, max_batches=3))  # not the same run: refuse
        self.assertEqual(third[0]["status"], "conflict")
        self.assertIn("max_batches", third[0]["message"])
        self.assertEqual(self.read_metrics("7"), before)


class CliErrorTest(RunTestCase):
    def cli(self, *extra):
        argv = ["--data_folder", self.folder, "--embeddings", os.path.join(self.folder, "emb.npz"), "--device",
                "cpu", "--log_dir", os.path.join(self.folder, "logs"), "--max_batches", "1", "--epochs", "1"]
        code, _, err = fixtures.run_main(run_exp.cli, *argv, *extra)
        return code, err.strip()

    def assert_refused(self, words, *extra):
        code, message = self.cli(*extra)
        self.assertEqual(code, 2, message)
        self.assertEqual(len(message.splitlines()), 1, message)
        for word in words:
            self.assertIn(word, message)
        self.assertFalse(os.path.exists(os.path.join(self.folder, "logs")), "nothing may be written")

    def test_bad_inputs_get_one_line_and_exit_code_2(self):
        import numpy as np

        self.assert_refused(["no_such_model", "lstm"], "--model", "no_such_model")
        self.assert_refused(["no_such_optimizer", "adamw"], "--optimizer", "no_such_optimizer")
        self.assert_refused(["batch_size"], "--batch_size", "0")
        self.assert_refused(["wiki.train.npz"], "--data_folder", os.path.join(self.folder, "nowhere"))
        self.assert_refused(["build_embeddings", "not found"], "--embeddings", os.path.join(self.folder, "x.npz"))
        small = os.path.join(self.folder, "small.npz")
        fixtures.write_embeddings(small, vocab=10)
        self.assert_refused(["10 token rows"], "--embeddings", small)
        flat = os.path.join(self.folder, "flat.npz")
        np.savez(flat, tokens=np.zeros(5, np.float32), position=np.zeros((256, 4), np.float32))
        self.assert_refused(["flat.npz"], "--embeddings", flat)
        self.assert_refused(["--config 3 sets model=lstm"], "--config", "3", "--model", "gpt1")
        self.assert_refused(["1-12"], "--config", "13")


if __name__ == "__main__":
    unittest.main()
