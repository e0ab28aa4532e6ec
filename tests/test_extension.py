"""The extension path, as a student takes it (README, "Change the training"): each change is made to a
fresh copy of the project by editing its files as text (the diff a student writes), then run from
the command line on tiny data. Each touches at most 2 files of the library: a setting used by the
step, a per-epoch metric that reaches metrics.jsonl and results.md, a model hyperparameter, and a
fifth optimizer without a fused kernel. A new setting identifies its runs: a sweep never skips or
continues a run made with another value."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import pytest

from tests import fixtures

QUIET = ["--device", "cpu", "--epochs", "1", "--batch_size", "2", "--max_batches", "2", "--print_every", "1000"]


class Project:
    """A copy of the project's code (the root's .py files and utils/) in `folder`, with tiny data."""

    def __init__(self, folder):
        self.root = os.path.join(folder, "project")
        os.makedirs(self.root)
        for name in os.listdir(fixtures.REPO_ROOT):
            if name.endswith(".py"):
                shutil.copy(os.path.join(fixtures.REPO_ROOT, name), self.root)
        shutil.copytree(os.path.join(fixtures.REPO_ROOT, "utils"), os.path.join(self.root, "utils"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.data = fixtures.write_corpus(os.path.join(folder, "data"))
        self.emb = fixtures.write_embeddings(os.path.join(folder, "emb.npz"))
        self.logs = os.path.join(folder, "logs")
        self.touched = set()  # the library files edited so far

    def edit(self, path, old, new):
        """Replace the one occurrence of `old` in the project's file `path` by `new`."""
        full = os.path.join(self.root, path)
        with open(full) as handle:
            text = handle.read()
        assert text.count(old) == 1, f"{path}: {old!r} occurs {text.count(old)} times"
        with open(full, "w") as handle:
            handle.write(text.replace(old, new))
        self.touched.add(path)

    def run(self, *argv, module=None):
        """(exit code, stdout + stderr) of run_exp.py (or `python -m module`) in the copy."""
        command = [sys.executable] + (["-m", module] if module else ["run_exp.py", "--data_folder", self.data,
                                                                       "--embeddings", self.emb, "--log_dir", self.logs])
        done = subprocess.run(command + list(argv), cwd=self.root, capture_output=True, text=True, timeout=600)
        return done.returncode, done.stdout + done.stderr

    def read(self, exp_id, name):
        with open(os.path.join(self.logs, exp_id, name)) as handle:
            return [json.loads(line) for line in handle] if name.endswith(".jsonl") else json.load(handle)


@pytest.mark.slow  # runs of edited copies in subprocesses
class AStudentExtendsTheKit(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.project = Project(tmp.name)

    def test_a_setting_used_by_the_step_identifies_its_runs(self):
        p = self.project
        p.edit("utils/train/settings.py", '''    warmup_steps: int = _arg(''', '''    clip_value: float = _arg(0.0, "clip each gradient to [-X, X] (0: off)")
    warmup_steps: int = _arg(''')
        p.edit("run_exp.py", '''        if s.grad_clip:''', '''        if s.clip_value:
            torch.nn.utils.clip_grad_value_(model.parameters(), s.clip_value)
        if s.grad_clip:''')
        self.assertLessEqual(len(p.touched), 2, p.touched)
        code, out = p.run("--help")
        self.assertIn("--clip_value", out)
        code, out = p.run(*QUIET, "--exp_id", "plain")
        self.assertEqual(code, 0, out)
        code, out = p.run(*QUIET, "--exp_id", "clipped", "--clip_value", "1e-6")
        self.assertEqual(code, 0, out)
        self.assertEqual(p.read("clipped", "args.json")["clip_value"], 1e-6)
        plain, clipped = p.read("plain", "metrics.jsonl"), p.read("clipped", "metrics.jsonl")
        self.assertNotEqual(plain[0]["valid_loss"], clipped[0]["valid_loss"])  # the step used it
        # The study: the same configuration with another value is refused, with the same one skipped.
        study = ["--config", "2", *QUIET]
        self.assertEqual(p.run(*study, "--clip_value", "1e-6")[0], 0)
        before = p.read("2", "metrics.jsonl")
        code, out = p.run(*study, "--clip_value", "1e-3")
        self.assertEqual(code, 2, out)
        self.assertIn("clip_value", out)  # named as what differs
        self.assertEqual(p.read("2", "metrics.jsonl"), before)  # untouched
        code, out = p.run(*study, "--clip_value", "1e-6")
        self.assertEqual(code, 0, out)
        self.assertIn("skipped", out)
        # A run that did not finish is not continued with another value either.
        status = p.read("clipped", "status.json")
        with open(os.path.join(p.logs, "clipped", "status.json"), "w") as handle:
            json.dump(dict(status, status="interrupted"), handle)
        code, out = p.run(*QUIET, "--exp_id", "clipped", "--clip_value", "1e-3")
        self.assertEqual(code, 2, out)
        self.assertIn("clip_value", out)

    def test_a_per_epoch_metric_reaches_metrics_jsonl_and_results_md(self):
        p = self.project
        p.edit("utils/runs/schema.py", '''    EpochMetric("lr", "Learning rate", "lr"),''', '''    EpochMetric("lr", "Learning rate", "lr"),
    EpochMetric("train_grad_norm", "Gradient norm", "raw", "train", step_mean=True),''')
        p.edit("utils/runs/schema.py", '''    RunMetric("steady_memory_mb",''', '''    RunMetric("grad_norm", "Grad norm", "raw", "train_grad_norm", "mean"),
    RunMetric("steady_memory_mb",''')
        p.edit("run_exp.py", '''        run.scaler.step(optimizer)  #''', '''        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))  # measures only
        run.scaler.step(optimizer)  #''')
        p.edit("run_exp.py", '''        steps.add(nll, batch, loss)''', '''        steps.add(nll, batch, loss, grad_norm=grad_norm)''')
        self.assertLessEqual(len(p.touched), 2, p.touched)
        code, out = p.run(*QUIET, "--epochs", "2", "--exp_id", "norms")
        self.assertEqual(code, 0, out)
        norms = [m["train_grad_norm"] for m in p.read("norms", "metrics.jsonl")]
        self.assertEqual(len(norms), 2)
        self.assertTrue(all(n > 0 and n == n for n in norms), norms)
        out_dir = os.path.join(p.logs, "..", "plots")
        code, out = p.run("--log_dir", p.logs, "--out", out_dir, module="utils.report")
        self.assertEqual(code, 0, out)
        with open(os.path.join(out_dir, "results.md")) as handle:
            self.assertIn("Grad norm", handle.read())

    def test_a_model_hyperparameter(self):
        p = self.project
        p.edit("utils/train/settings.py", '''    layers: int = _arg(1, "LSTM layers or Transformer blocks")''',
               '''    layers: int = _arg(1, "LSTM layers or Transformer blocks")
    hidden_size: int = _arg(512, "the LSTM's hidden size")''')
        p.edit("utils/models/registry.py", '''LSTM_HIDDEN_SIZE, s.layers''', '''s.hidden_size, s.layers''')
        self.assertLessEqual(len(p.touched), 2, p.touched)
        for size in ("512", "8"):
            code, out = p.run(*QUIET, "--exp_id", f"h{size}", "--hidden_size", size)
            self.assertEqual(code, 0, out)
        small, large = (p.read(e, "provenance.json")["params_learnable"] for e in ("h8", "h512"))
        self.assertLess(small, large)
        self.assertEqual(p.read("h8", "args.json")["hidden_size"], 8)

    def test_a_fifth_optimizer_without_a_fused_kernel(self):
        p = self.project
        p.edit("utils/train/optim.py", '''OPTIMIZERS = {''', '''OPTIMIZERS = {
    "rmsprop": OptimizerSpec(lambda o, p, s, **kw: o.RMSprop(p, lr=s.lr, weight_decay=s.weight_decay, **kw),
                             ("lr", "weight_decay"), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),  # no fused kernel in torch''')
        self.assertLessEqual(len(p.touched), 2, p.touched)
        code, out = p.run(*QUIET, "--exp_id", "rms", "--optimizer", "rmsprop")
        self.assertEqual(code, 0, out)
        self.assertEqual(p.read("rms", "args.json")["optimizer"], "rmsprop")
        # On CUDA the optimizer gets fused=True only where torch has the kernel: none asked for here.
        script = ("import torch; from utils.train.optim import make_optimizer; from utils.train.settings import "
                  "Arguments\nopt = make_optimizer(Arguments(optimizer='rmsprop'), torch.nn.Linear(2, 2), fused=True)\n"
                  "print(type(opt).__name__, opt.param_groups[0].get('fused'))")
        done = subprocess.run([sys.executable, "-c", script], cwd=p.root, capture_output=True, text=True, timeout=120)
        self.assertEqual(done.stdout.split(), ["RMSprop", "None"], done.stderr)


if __name__ == "__main__":
    unittest.main()
