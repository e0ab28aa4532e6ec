"""Data-parallel training (torch.distributed, Gloo on CPU, 2 processes) equals one process.

Tolerances. Engine level, in float64: N processes and one process differ only in summation order
(two half-batch sums plus an all-reduce against one sum), a relative error of order 1e-16 per
operation; after 52 SGD steps 1e-9 leaves several orders of margin, while any real mistake
(a dropped or duplicated sequence, a wrong loss scale, padding counted) shows at 1e-3 or more.
Perplexities are sums of float64 NLLs all-reduced in float64: equal to 1e-10. Command level, in
float32 (what runs use): epoch-boundary resume with the same number of processes is exact, and
everything else within 1e-4 relative (float32 reduction order).
"""
import glob
import json
import math
import os
import socket
import sys
import tempfile
import unittest
from unittest import mock

import pytest
import torch
import torch.multiprocessing as mp

from tests import fixtures
import run_exp
from utils.data.batches import TensorBatches
from utils.data.wikitext2 import Wikitext2
from utils.models.base import TokenNLL
from utils.models.registry import model_spec
from utils.train import passes
from utils.train.distributed import SINGLE, Distributed
from utils.train.precision import Precision
from utils.train.run import Run
from utils.train.settings import Arguments

GLOBAL_BATCH, EPOCHS = 4, 2


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def join_group(rank, world, port):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    return Distributed.from_env("cpu")


def tiny_data(folder):
    """Splits whose item counts leave a short last batch that 2 processes must pad."""
    splits = {s: Wikitext2(folder, s, break_mode="lines", max_length=30) for s in ("train", "validation", "test")}
    return splits


def train_and_evaluate(folder, model_name, dist):
    """Global per-step losses, every epoch's train/valid results, the test result and the final weights."""
    splits = tiny_data(folder)
    torch.manual_seed(0)
    tokens = torch.randn(fixtures.TINY_VOCAB, fixtures.TINY_WIDTH, dtype=torch.float64) * 0.5
    position = torch.randn(32, fixtures.TINY_WIDTH, dtype=torch.float64) * 0.05
    model = model_spec(model_name).build(Arguments(), tokens, position).double()
    nll = dist.wrap(TokenNLL(model))
    # SGD with momentum, not Adam: Adam divides by sqrt(v), so a parameter whose true gradient is 0
    # (MiniGPT1's key bias: softmax ignores a shift shared by a row of scores) turns rounding noise of
    # 1e-17 into steps of +-lr, different in any two runs. SGD passes gradient equality on linearly.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    shard = dict(rank=dist.rank, world=dist.world)
    batches = TensorBatches(splits["train"], GLOBAL_BATCH, shuffle=True, seed=3, **shard)
    losses, epochs = [], []
    real_loss = passes.batch_loss

    def recording_loss(*args, **kwargs):
        loss = real_loss(*args, **kwargs)
        losses.append(float(dist.all_reduce_sum(loss.detach().clone())) / dist.world)  # the global batch's loss
        return loss

    fp64 = Precision("fp32", "cpu")  # no autocast: the model itself is float64
    settings = Arguments(epochs=EPOCHS, print_every=10**6)
    run = Run(settings, model, nll, optimizer, fp64, fp64.make_scaler(), dist)  # the loop's run, without a folder
    with mock.patch.object(passes, "batch_loss", recording_loss):
        for epoch in range(EPOCHS):
            batches.set_epoch(epoch)
            train = run_exp.train(epoch, model, batches, optimizer, settings, run)
            valid = run_exp.evaluate(epoch, model, TensorBatches(splits["validation"], GLOBAL_BATCH, **shard),
                                     settings, "valid", run)
            epochs.append((train.nll_sum, train.tokens, valid.nll_sum, valid.tokens, valid[1]))
    test = run_exp.evaluate(None, model, TensorBatches(splits["test"], GLOBAL_BATCH, **shard), settings, "test", run)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return {"losses": losses, "epochs": epochs, "test": (test.nll_sum, test.tokens, test[1]), "weights": weights}


def engine_worker(rank, world, port, folder, model_name, out):
    dist = join_group(rank, world, port)
    result = train_and_evaluate(folder, model_name, dist)
    if dist.is_main:
        torch.save(result, out)
    dist.close()


def cli_worker(rank, world, port, argv, kill_epoch):
    """run_exp.cli in one process of the group; kill_epoch: every process is interrupted as that epoch
    starts (a Ctrl-C reaching all of them, as torchrun forwards it)."""
    join_group(rank, world, port)
    real = run_exp.train

    def train(epoch, *args, **kwargs):
        if epoch == kill_epoch:
            raise KeyboardInterrupt
        return real(epoch, *args, **kwargs)

    with mock.patch.object(run_exp, "train", train):
        code = run_exp.cli(argv)
    sys.exit(code)


def failing_worker(rank, world, port, argv):
    """Rank 1 raises in its second training step; rank 0 must not hang or leave a broken folder."""
    join_group(rank, world, port)
    real, calls = passes.batch_loss, {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if rank == 1 and calls["n"] == 2:
            raise RuntimeError("rank 1 failed on purpose")
        return real(*args, **kwargs)

    with mock.patch.object(passes, "batch_loss", step):
        run_exp.cli(argv)


def spawn(fn, *args, world=2):
    """Run fn(rank, world, port, *args) in `world` processes; the exit codes, by rank."""
    context = mp.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=fn, args=(rank, world, port, *args)) for rank in range(world)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)
    for process in processes:
        if process.is_alive():
            process.kill()
    return [process.exitcode for process in processes]


@pytest.mark.slow
class EngineEqualsOneProcess(unittest.TestCase):
    def test_losses_weights_and_perplexities(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = fixtures.write_corpus(os.path.join(tmp, "data"))
            items = len(tiny_data(folder)["train"])
            self.assertEqual(items % GLOBAL_BATCH % 2, 1, "the last batch must be odd so that a process pads")
            for model_name in ("lstm", "gpt1"):
                with self.subTest(model=model_name):
                    single = train_and_evaluate(folder, model_name, SINGLE)
                    out = os.path.join(tmp, f"{model_name}.pt")
                    self.assertEqual(spawn(engine_worker, folder, model_name, out), [0, 0])
                    two = torch.load(out, weights_only=False)
                    self.assertEqual(len(two["losses"]), EPOCHS * math.ceil(items / GLOBAL_BATCH))
                    for a, b in zip(two["losses"], single["losses"]):
                        self.assertAlmostEqual(a / b, 1.0, delta=1e-9)
                    for a, b in zip(two["epochs"] + [two["test"]], single["epochs"] + [single["test"]]):
                        self.assertEqual(a[1], b[1])  # token counts: nothing dropped or counted twice
                        for x, y in zip(a, b):
                            self.assertAlmostEqual(x / y, 1.0, delta=1e-10)
                    for name, weight in single["weights"].items():
                        torch.testing.assert_close(two["weights"][name], weight, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.slow
class CommandLineUnderTwoProcesses(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.data = fixtures.write_corpus(os.path.join(self.tmp, "data"))
        self.emb = fixtures.write_embeddings(os.path.join(self.tmp, "emb.npz"))
        self.logs = os.path.join(self.tmp, "logs")

    def argv(self, exp_id, model="gpt1"):
        return ["--data_folder", self.data, "--embeddings", self.emb, "--device", "cpu", "--log_dir", self.logs,
                "--exp_id", exp_id, "--model", model, "--epochs", "2", "--batch_size", "4", "--print_every", "1000",
                "--precision", "fp32"]  # the processes' equivalence in fp32 (auto is bf16 on some CPUs)

    def read(self, exp_id, name):
        with open(os.path.join(self.logs, exp_id, name)) as handle:
            return [json.loads(line) for line in handle] if name.endswith(".jsonl") else json.load(handle)

    def losses(self, exp_id):
        keys = ("train_loss", "valid_loss", "train_ppl", "valid_ppl", "train_tokens", "valid_tokens", "valid_words")
        return [[m[k] for k in keys] for m in self.read(exp_id, "metrics.jsonl")]

    def assert_close(self, a, b, rtol):
        for row_a, row_b in zip(a, b):
            for x, y in zip(row_a, row_b):
                self.assertAlmostEqual(x / y, 1.0, delta=rtol)

    def test_resume_under_two_and_under_one_process(self):
        self.assertEqual(spawn(cli_worker, self.argv("whole"), None), [0, 0])
        self.assertEqual(spawn(cli_worker, self.argv("cut"), 1), [130, 130])
        self.assertEqual(self.read("cut", "status.json")["status"], "interrupted")
        self.assertEqual(spawn(cli_worker, self.argv("cut"), None), [0, 0])
        self.assertEqual(self.losses("cut"), self.losses("whole"))  # same processes: exact
        self.assertEqual(spawn(cli_worker, self.argv("moved"), 1), [130, 130])
        self.assertEqual(run_exp.cli(self.argv("moved")), 0)  # the 2-process checkpoint, resumed by one process
        self.assert_close(self.losses("moved"), self.losses("whole"), 1e-4)
        single = run_exp.cli(self.argv("single"))
        self.assertEqual(single, 0)
        self.assert_close(self.losses("whole"), self.losses("single"), 1e-4)
        provenance = self.read("whole", "provenance.json")
        self.assertEqual(provenance["distributed"]["world_size"], 2)
        self.assertEqual(provenance["distributed"]["backend"], "gloo")
        self.assertEqual(len(provenance["devices"]), 2)
        self.assertEqual(self.read("whole", "metrics.jsonl")[0]["peak_memory_mb_per_rank"], None)  # CPU: not measured

    def test_a_failing_rank_ends_the_job_and_leaves_the_folder_intact(self):
        codes = spawn(failing_worker, self.argv("fail", model="lstm"))
        self.assertTrue(all(code != 0 for code in codes), codes)
        folder = os.path.join(self.logs, "fail")
        self.assertEqual(glob.glob(os.path.join(folder, ".tmp-*")), [], "no half-written file")
        for name in os.listdir(folder):
            if name.endswith(".json"):
                self.read("fail", name)  # every JSON file parses
        self.assertIn(self.read("fail", "status.json")["status"], ("running", "failed"))

    def test_batch_that_does_not_divide_is_refused(self):
        argv = self.argv("odd")
        argv[argv.index("--batch_size") + 1] = "3"
        self.assertEqual(spawn(cli_worker, argv, None), [2, 2])
        self.assertFalse(os.path.exists(os.path.join(self.logs, "odd")))

    def test_torchrun_launches_the_same_command(self):
        done = fixtures.run_python("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                                   str(free_port()), os.path.join(fixtures.REPO_ROOT, "run_exp.py"),
                                   *self.argv("torchrun"), cwd=self.tmp, env=fixtures.python_env(OMP_NUM_THREADS="1"))
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        self.assertEqual(done.stdout.count("===== Best validation perplexity"), 1, "rank 0 alone prints")
        self.assertEqual(self.read("torchrun", "status.json")["status"], "completed")
        self.assertEqual(self.read("torchrun", "provenance.json")["distributed"]["world_size"], 2)


if __name__ == "__main__":
    unittest.main()
