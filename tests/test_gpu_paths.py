"""The GPU paths, proven on the CPU where the mechanism runs there, and run on a GPU by
bench/gpu_check.py (LM_TEST_DEVICE=cuda): precision by compute capability, fp16 overflow of the
tied gradient, a stalled scaler or loss, the LSTM's recurrence dtype, no host sync on quiet
training steps, the fused loss path against the CPU one, LayerNorm, the causal mask, GPU memory
by device."""
import io
import math
import os
import unittest
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

from bench.host_syncs import count_host_syncs, cuda_branches, cuda_sync_errors
from bench.common import RandomItems
from gpt1_solution import LayerNorm, MiniGPT1
from lstm_solution import LSTM
from utils import gpu_usage
from utils.data.batches import TensorBatches
from utils.models.base import TokenNLL
from utils.models.losses import tied_token_nll
from utils.runs.provenance import provenance
from utils.train.distributed import POLL_EVERY, SINGLE, Distributed
import run_exp
from utils.train.optim import make_optimizer
from utils.train.precision import Precision
from utils.train.run import Run
from utils.train.settings import Arguments
from utils.train.watch import STALL_STEPS, TrainingDiverged

DEVICE = torch.device(os.environ.get("LM_TEST_DEVICE", "cpu"))
V, T = 60, 16


def tiny(kind, seed=0):
    torch.manual_seed(seed)
    if kind == "lstm":
        return LSTM(vocabulary_size=V, embedding_size=16, hidden_size=8).to(DEVICE)
    return MiniGPT1(vocabulary_size=V, embedding_size=24, sequence_length=T, num_heads=3, num_layers=2).to(DEVICE)


def train_epoch(nll, batches, optimizer, precision, epoch=0, **settings):
    """run_exp.train over `batches` with `nll` as the run's NLL module (one process, no folder):
    (its EpochResult, the Run)."""
    s = Arguments(**dict(dict(print_every=10**6), **settings))
    model = getattr(nll, "model", nll)
    run = Run(s, model, nll, optimizer, precision, precision.make_scaler())
    return run_exp.train(epoch, model, batches, optimizer, s, run), run


def on_gpu(name):
    """The precision as it runs on DEVICE (fp16 on a CPU is refused by resolve(): built directly)."""
    return Precision(name, DEVICE.type)


class PrecisionByCapability(unittest.TestCase):
    def resolve(self, requested, capability):
        with mock.patch("torch.cuda.get_device_capability", return_value=capability), \
                mock.patch("torch.cuda.is_bf16_supported", side_effect=AssertionError("not asked")):
            return Precision.resolve(requested, "cuda:0")

    def test_auto_by_compute_capability(self):
        t4, a100, h100 = self.resolve("auto", (7, 5)), self.resolve("auto", (8, 0)), self.resolve("auto", (9, 0))
        self.assertEqual((t4.name, a100.name, h100.name), ("fp16", "bf16", "bf16"))
        self.assertTrue(t4.uses_scaler)
        self.assertFalse(a100.uses_scaler or h100.uses_scaler)
        self.assertIn("sm_75 < sm_80", t4.reason)
        self.assertIn("sm_90 >= sm_80", h100.reason)
        self.assertIn("emulated", self.resolve("bf16", (7, 5)).reason)

    def test_tf32_for_fp32_on_sm80_only(self):
        self.assertTrue(self.resolve("fp32", (8, 0)).tf32)
        self.assertIn("TF32", self.resolve("fp32", (9, 0)).reason)
        self.assertFalse(self.resolve("fp32", (7, 5)).tf32)
        self.assertFalse(self.resolve("bf16", (8, 0)).tf32)
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        try:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            self.resolve("fp32", (8, 0)).configure()
            self.assertTrue(torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def test_provenance_records_what_and_why(self):
        # TF32 as in force: cuDNN's allow_tf32 defaults to True, so an fp32 LSTM recurrence runs TF32 on sm_80+.
        # Finding 6: below sm_80 fp16 autocast (with its scaler) runs the recurrence on the tensor cores, in fp16.
        for capability, requested, recurrence, tf32 in (((7, 5), "auto", "fp16", False), ((8, 0), "auto", "tf32", False),
                                                        ((8, 0), "fp32", "tf32", True)):
            precision = self.resolve(requested, capability)
            saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            try:
                precision.configure()
                with mock.patch("torch.cuda.get_device_name", return_value="GPU"), \
                        mock.patch("torch.cuda.current_device", return_value=0), \
                        mock.patch("torch.cuda.get_device_capability", return_value=capability):
                    record = provenance(SimpleNamespace(max_batches=None, init="course"), tiny("lstm"), torch.device("cuda", 0),
                                        precision, {}, SINGLE, ["GPU"])
            finally:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
            with self.subTest(capability=capability, requested=requested):
                self.assertEqual(record["precision_reason"], precision.reason)
                self.assertIs(record["tf32"], tf32)
                self.assertEqual(record["recurrence_precision"], recurrence)
                self.assertIs(record["bitwise_reproducible"], False)  # atomics in attention and cuDNN backward
                self.assertEqual(record["init"], "course")


def spread_rows(vocab=16384, width=8, scale=8.0, seed=0):
    """Tied rows of about +1 each, scaled, and row 0 (padding) zero, as in GPT-1's file. With a
    uniform softmax a padding target's unnormalised gradient row is vocab * (mean row - row 0),
    about vocab * scale = 131,072: twice fp16's 65,504."""
    generator = torch.Generator().manual_seed(seed)
    weight = scale * (1 + 0.1 * torch.randn(vocab, width, generator=generator))
    weight[0] = 0.0
    return weight.to(DEVICE)


class Fp16TiedGradient(unittest.TestCase):
    def grads(self, precision, weight, features, targets, half_features=False):
        x = features.clone().requires_grad_(True)
        optimizer = torch.optim.SGD([x], lr=0.0)
        scaler = precision.make_scaler()
        with precision.autocast():
            nll = tied_token_nll(x.half() if half_features else x, weight, targets, chunk_size=16)
        scaler.scale(nll.mean()).backward()
        scaler.unscale_(optimizer)
        grad = x.grad.clone()
        scaler.step(optimizer)
        scaler.update()
        return nll.detach(), grad, scaler

    def test_fp16_gradient_is_finite_and_equals_fp32(self):
        weight = spread_rows()
        generator = torch.Generator().manual_seed(1)
        features = (1e-3 * torch.randn(16, weight.shape[1], generator=generator)).to(DEVICE)
        targets = torch.randint(1, weight.shape[0], (16,), generator=generator)
        targets[::2] = 0  # padding positions (mask 0 in a batch; the loss still computes their rows)
        targets = targets.to(DEVICE)
        for _ in (0,):
            reference_nll, reference, _ = self.grads(on_gpu("fp32"), weight, features, targets)
            self.assertGreater(float(reference.abs().max()), 0.1)
            for half_features in (False, True):
                with self.subTest(half_features=half_features):
                    nll, grad, scaler = self.grads(on_gpu("fp16"), weight, features, targets, half_features)
                    self.assertTrue(bool(torch.isfinite(grad).all()), "fp16 gradient overflowed")
                    self.assertEqual(scaler.get_scale(), 65536.0, "the scaler skipped the step")
                    torch.testing.assert_close(grad, reference, rtol=2e-2, atol=2e-3)
                    torch.testing.assert_close(nll, reference_nll, rtol=1e-3, atol=1e-3)


class _InfGradient(torch.autograd.Function):
    """A constant per-token NLL of 2 whose gradient with respect to `weight` is infinite."""

    @staticmethod
    def forward(ctx, weight, source):
        return torch.full(source.shape, 2.0, device=source.device, dtype=weight.dtype)

    @staticmethod
    def backward(ctx, grad):
        return torch.full((), math.inf, device=grad.device), None


class _Stuck(torch.nn.Module):
    """A TokenNLL stand-in with a constant per-token NLL, whose gradient is infinite (`inf_grad`:
    fp16's overflow) or zero (a model stuck at one output)."""

    def __init__(self, inf_grad):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones((), device=DEVICE))
        self.inf_grad = inf_grad

    def forward(self, source, target):
        if self.inf_grad:
            return _InfGradient.apply(self.weight, source)
        return (self.weight * 0.0 + 2.5).expand(source.shape)


def constant_batches(steps, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, V, (steps, 2, T + 1), generator=generator).to(DEVICE)
    ones = torch.ones(2, T, device=DEVICE)
    return [{"source": t[:, :-1], "target": t[:, 1:], "mask": ones} for t in tokens]


class StalledRunStops(unittest.TestCase):
    def run_stuck(self, inf_grad, precision):
        model = _Stuck(inf_grad)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return train_epoch(model, constant_batches(STALL_STEPS + 5), optimizer, precision, epoch=2)

    def test_scaler_skipping_every_step_stops_with_one_line(self):
        with self.assertRaises(TrainingDiverged) as caught:
            self.run_stuck(True, on_gpu("fp16"))
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        self.assertIn("scaler skipped", message)
        self.assertIn("--precision bf16", message)
        self.assertIn("fp32", message)
        self.assertEqual(caught.exception.epoch, 2)
        self.assertEqual(caught.exception.step, STALL_STEPS + 4)  # 0-based index of the last step done

    def test_unchanged_loss_stops(self):
        with self.assertRaises(TrainingDiverged) as caught:
            self.run_stuck(False, on_gpu("fp32"))
        self.assertIn("stayed exactly the same", str(caught.exception))
        self.assertIn("--precision bf16", str(caught.exception))

    def test_healthy_fp16_run_goes_on(self):
        model = TokenNLL(tiny("lstm"))
        precision = on_gpu("fp16")
        optimizer = make_optimizer(Arguments(optimizer="adamw", lr=1e-3), model.model, fused=True)
        result, run = train_epoch(model, constant_batches(STALL_STEPS + 5), optimizer, precision)
        self.assertTrue(math.isfinite(result[0]))
        self.assertGreater(run.scaler.get_scale(), 2.0**-20)  # the scaler kept stepping


class LstmRecurrenceDtype(unittest.TestCase):
    def test_recurrence_runs_in_what_provenance_says(self):
        for name in ("bf16", "fp16"):
            with self.subTest(precision=name):
                model = tiny("lstm")
                seen = {}

                def before(module, args):
                    seen["input"], seen["autocast"] = args[0].dtype, torch.is_autocast_enabled(DEVICE.type)
                    seen["weights"] = {p.dtype for p in module.parameters()}

                def after(module, args, output):
                    seen["output"] = output[0].dtype

                def classifier(module, args, output):
                    seen["classifier"] = output.dtype

                model.lstm.register_forward_pre_hook(before)
                model.lstm.register_forward_hook(after)
                model.classifier[0].register_forward_hook(classifier)
                source = torch.randint(1, V, (2, T), device=DEVICE)
                with on_gpu(name).autocast():
                    TokenNLL(model)(source, source)
                recorded = {"fp32": torch.float32}[model.recurrence_precision]
                self.assertEqual(seen["input"], recorded)
                self.assertEqual(seen["output"], recorded)
                self.assertEqual(seen["weights"], {recorded})
                self.assertFalse(seen["autocast"], "autocast would recast the recurrence")
                self.assertEqual(seen["classifier"], {"bf16": torch.bfloat16, "fp16": torch.float16}[name])



def syncs_per_step(kind, precision, steps=7, every=3, bar=False):
    """Would-synchronise calls in each training step (batch making, step, sums, progress, hook) and
    the steps that print; on CUDA, a synchronisation on a quiet step is also an error."""
    model = tiny(kind)
    nll = TokenNLL(model)
    optimizer = make_optimizer(Arguments(optimizer="adamw", lr=1e-3), model, fused=True)  # as on CUDA
    batches = TensorBatches(RandomItems(2 * steps - 1, T, V), 2, shuffle=True, device=DEVICE)
    counts, marks = [], []

    def hook(run, pass_, done):  # Run.after_step: what a run does between steps
        counts.append(counter.calls)
        marks.append(pass_.reporter.reads(done))  # with a bar, due() is every step: the bar moves

    with mock.patch("builtins.print"), cuda_branches(), mock.patch.object(Run, "after_step", hook), \
            count_host_syncs() as counter:
        train_epoch(nll, batches, optimizer, precision, epochs=1, max_batches=steps, print_every=every,
                    progress_bar=bar)
    per_step = [b - a for a, b in zip([0] + counts, counts)]
    return per_step, marks, counter


class NoHostSyncOnQuietSteps(unittest.TestCase):
    def test_quiet_steps_make_no_sync_calls(self):
        for kind in ("lstm", "gpt1"):
            for name in ("fp32", "bf16", "fp16"):
                with self.subTest(kind=kind, precision=name):
                    per_step, printing, counter = syncs_per_step(kind, on_gpu(name))
                    self.assertEqual(printing, [False, False, True, False, False, True, True])
                    quiet = [n for n, loud in zip(per_step, printing) if not loud]
                    self.assertEqual(quiet, [0] * len(quiet), counter.where[:8])
                    self.assertGreater(sum(per_step), 0)  # the counter sees the printing steps' reads

    def test_a_progress_bar_moves_every_step_without_reading_the_device(self):
        with mock.patch("sys.stderr", io.StringIO()):  # tqdm draws there
            per_step, reading, counter = syncs_per_step("gpt1", on_gpu("fp32"), bar=True)
        self.assertEqual(reading, [False, False, True, False, False, True, True])
        quiet = [n for n, loud in zip(per_step, reading) if not loud]
        self.assertEqual(quiet, [0] * len(quiet), counter.where[:8])

    def test_counter_sees_each_kind_of_read(self):
        x = torch.ones(2)
        with count_host_syncs() as counter:
            x.sum().item(), x.tolist(), float(x[0]), bool(x[0]), torch.tensor(1.0)
        self.assertEqual(counter.calls, 5)
        self.assertEqual(float(torch.ones(())), 1.0)  # restored

    def test_gpu_processes_ask_for_stops_every_poll_steps_only(self):
        steps = range(1, 2 * POLL_EVERY + 1)
        with mock.patch.object(Distributed, "any", return_value=True) as asked:
            answers = [Distributed(rank=0, world=2, backend="nccl").any_every(False, step) for step in steps]
        self.assertEqual(asked.call_count, 2)
        self.assertEqual([i + 1 for i, a in enumerate(answers) if a], [POLL_EVERY, 2 * POLL_EVERY])
        with mock.patch.object(Distributed, "any", return_value=True) as asked:  # CPUs: nothing to drain
            [Distributed(rank=0, world=2, backend="gloo").any_every(False, step) for step in steps]
        self.assertEqual(asked.call_count, len(steps))
        self.assertTrue(SINGLE.any_every(True, 1))
        self.assertFalse(SINGLE.any_every(False, POLL_EVERY))

    @unittest.skipUnless(DEVICE.type == "cuda", "CUDA's sync debug mode (bench/gpu_check.py runs it)")
    def test_quiet_steps_under_cuda_sync_errors(self):
        model = TokenNLL(tiny("gpt1"))
        optimizer = make_optimizer(Arguments(optimizer="adamw", lr=1e-3), model.model)
        precision = Precision.resolve("auto", DEVICE)
        batches = list(TensorBatches(RandomItems(12, T, V), 2, device=DEVICE).iterate(0))
        _, run = train_epoch(model, batches[:1], optimizer, precision)  # warm-up
        with cuda_sync_errors(DEVICE), mock.patch.object(Run, "after_step", lambda *a: None):
            run_exp.train(0, model.model, batches[1:], optimizer, run.settings, run)  # the Pass's end reads: after


class TiedLossEqualsAutograd(unittest.TestCase):
    """The chunked loss (one path on every device since the CPU's transposed one went) against
    autograd through log_softmax: same loss and every gradient, also with the table learnt."""

    def losses_of(self, loss, features, weight, targets, learn, dtype):
        x = features.to(dtype).clone().requires_grad_(True)
        w = weight.to(dtype).clone().requires_grad_(learn)
        nll = loss(x, w, targets)
        upstream = torch.linspace(0.5, 1.5, len(targets), dtype=nll.dtype, device=DEVICE)
        (nll * upstream).sum().backward()
        return nll.detach(), x.grad, (w.grad if learn else None)

    def test_loss_and_every_gradient(self):
        generator = torch.Generator().manual_seed(0)
        features, weight = torch.randn(30, 12, generator=generator), torch.randn(V, 12, generator=generator) * 3
        targets = torch.randint(0, V, (30,), generator=generator).to(DEVICE)
        features, weight = features.to(DEVICE), weight.to(DEVICE)
        chunked = lambda x, w, t: tied_token_nll(x, w, t, chunk_size=7)  # noqa: E731
        autograd = lambda x, w, t: -torch.log_softmax(x @ w.t(), 1).gather(1, t[:, None]).squeeze(1)  # noqa: E731
        for dtype, tol in ((torch.float32, dict(rtol=1e-5, atol=1e-5)), (torch.float64, dict(rtol=1e-12, atol=1e-12))):
            for learn in (False, True):
                with self.subTest(dtype=dtype, learn_embeddings=learn):
                    reference = self.losses_of(autograd, features, weight, targets, learn, dtype)
                    found = self.losses_of(chunked, features, weight, targets, learn, dtype)
                    self.assertGreater(float(reference[0].min()), 0.0)
                    for name, a, b in zip(("nll", "grad_x", "grad_w"), found, reference):
                        if b is not None:
                            self.assertEqual(a.dtype, b.dtype)
                            torch.testing.assert_close(a, b, **tol, msg=name)
                    with torch.no_grad():
                        torch.testing.assert_close(tied_token_nll(features.to(dtype), weight.to(dtype), targets),
                                                   reference[0], **tol)

    def test_under_autocast(self):
        model = tiny("gpt1")
        source = torch.randint(1, V, (2, T), device=DEVICE)
        name = "bf16" if DEVICE.type == "cpu" else Precision.resolve("auto", DEVICE).name
        results = {}
        for precision in ("fp32", name):  # chunked, against autograd over the same half-precision logits in fp32
            model.zero_grad(set_to_none=True)
            with on_gpu(name).autocast():
                features = model.sequence_features(source)  # (B, T, E)
                x, t = features.reshape(-1, features.shape[-1]), source.reshape(-1)
                if precision == "fp32":
                    logits = (x @ model.tied_weight.t()).float()  # (B*T, V): the autocast dtype's logits, in fp32
                    nll = -torch.log_softmax(logits, 1).gather(1, t[:, None]).squeeze(1)
                else:
                    nll = tied_token_nll(x, model.tied_weight, t)
            nll.mean().backward()
            results[precision] = nll.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        torch.testing.assert_close(results[name][0], results["fp32"][0], rtol=2e-2, atol=2e-2)
        for key, grad in results["fp32"][1].items():
            torch.testing.assert_close(results[name][1][key], grad, rtol=5e-2, atol=5e-3, msg=key)

    def test_half_copy_of_the_table_is_cast_once(self):
        from utils.models.losses import cast_weight

        weight = torch.randn(V, 12, device=DEVICE)
        first = cast_weight(weight, torch.bfloat16)
        self.assertIs(cast_weight(weight, torch.bfloat16), first)  # a frozen table: no recast per call
        self.assertEqual(first.dtype, torch.bfloat16)
        self.assertIsNot(cast_weight(weight, torch.float16), first)  # another dtype: another copy
        with torch.no_grad():
            weight.mul_(2.0)  # an optimizer step on a learnt table
        again = cast_weight(weight, torch.bfloat16)
        self.assertIsNot(again, first)
        torch.testing.assert_close(again, (weight).bfloat16())
        self.assertIs(cast_weight(weight, torch.float32), weight)


class LayerNormAndMask(unittest.TestCase):
    def test_layer_norm_equals_the_formula(self):
        for dtype in (torch.float32, torch.float64):
            norm = LayerNorm(10).to(DEVICE, dtype)
            with torch.no_grad():
                norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)
            x = torch.randn(3, 4, 10, dtype=dtype, device=DEVICE) * 3 + 1
            mean, variance = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
            expected = (x - mean) / torch.sqrt(variance + 1e-5) * norm.weight + norm.bias
            torch.testing.assert_close(norm(x), expected)
        self.assertEqual(norm(x.to(torch.bfloat16)).dtype, torch.bfloat16)
        self.assertEqual([n for n, _ in norm.named_parameters()], ["weight", "bias"])

    def test_old_state_dict_with_the_mask_loads(self):
        model = tiny("gpt1")
        state = model.state_dict()
        self.assertFalse(any(k.endswith("causal_mask") for k in state))
        old = dict(state, **{f"layers.{i}.attention.causal_mask": torch.ones(T, T, dtype=torch.bool).tril()
                             for i in range(2)})
        fresh = tiny("gpt1", seed=1)
        fresh.load_state_dict(old, strict=True)
        for key, value in state.items():
            self.assertTrue(torch.equal(fresh.state_dict()[key], value), key)
        self.assertTrue(torch.equal(fresh.layers[0].attention.causal_mask.cpu(), torch.ones(T, T).tril().bool()))


class GpuMemoryOfTheRunsDevice(unittest.TestCase):
    def test_reads_the_given_device(self):
        with mock.patch("torch.cuda.is_available", return_value=True), \
                mock.patch("torch.cuda.memory_allocated", return_value=3 * 2**20) as allocated, \
                mock.patch("torch.cuda.max_memory_allocated", return_value=5 * 2**20) as peak:
            self.assertEqual(gpu_usage.get_gpu_memory_usage(torch.device("cuda", 1)), 3.0)
            self.assertEqual(allocated.call_args[0][0], torch.device("cuda", 1))
            self.assertEqual(gpu_usage.peak_gpu_memory_mb(device="cuda:1"), 5.0)
            self.assertEqual(peak.call_args[0][0], torch.device("cuda", 1))
            self.assertTrue(math.isnan(gpu_usage.get_gpu_memory_usage("cpu")))
            self.assertIsNone(gpu_usage.peak_gpu_memory_mb(device="cpu"))


@pytest.mark.slow
class GpuCheckDryRun(unittest.TestCase):
    """bench/gpu_check.py --dry: the device check's whole code path on the CPU, so it cannot rot."""

    def test_dry_run_prints_the_table(self):
        import json
        import subprocess
        import sys
        import tempfile

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "check.json")
            done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry", "--out", out], cwd=root,
                                  capture_output=True, text=True, timeout=900)
            self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
            with open(out) as handle:
                record = json.load(handle)
        table = record["table"]
        self.assertIn("| check | result | target |", done.stdout)
        self.assertIn("DRY RUN", table)
        self.assertEqual(record["tests"]["returncode"], 0)
        self.assertEqual({m: v["calls"] for m, v in record["quiet_step_syncs"].items()}, {"lstm": 0, "gpt1": 0})
        timed = {(e["model"], e["layers"], e["asked"]) for e in record["epochs"]}
        expected = {(m, n, "auto") for m in ("lstm", "gpt1") for n in (1, 2, 4)}
        expected |= {(m, n, "fp16") for m in ("lstm", "gpt1") for n in (1, 4)}
        self.assertEqual(timed, expected)
        for epoch in record["epochs"]:
            self.assertGreater(epoch["epoch_s"], 0.0)
            self.assertTrue(math.isfinite(epoch["train_loss"]))
        self.assertGreater(record["study_s_one_at_a_time"], 0.0)
        self.assertEqual(set(record["shared"]["2"]["speedup"]), {"lstm", "gpt1"})  # sharing measured per model
        self.assertTrue(all(v > 0.0 for v in record["shared"]["2"]["speedup"].values()))
        self.assertIn("12 x 10 study, 2 runs sharing the GPU", table)
        self.assertNotIn("errors", record)  # every guarded row ran
        self.assertEqual(record["resumed"]["cpu"], {"returncode": 0, "resumes": 1})  # run_exp.py killed, rerun
        self.assertGreater(record["bandwidth_gb_s"], 0.0)
        self.assertEqual({(e["model"], e["layers"]) for e in record["epochs"] if e["compile"]}, {("lstm", 1), ("gpt1", 1)})


class OptimizerStateAcrossDevices(unittest.TestCase):
    def test_a_state_from_an_unfused_optimizer_keeps_the_fused_step(self):
        from utils.train.optim import load_optimizer_state

        model = torch.nn.Linear(3, 2)
        settings = Arguments(optimizer="adamw", lr=1e-3)
        written = make_optimizer(settings, model)  # as on a CPU: the default kernel
        model(torch.randn(4, 3)).sum().backward()
        written.step()
        resumed = make_optimizer(settings, model, fused=True)  # as on CUDA
        load_optimizer_state(resumed, written.state_dict())
        self.assertEqual([g["fused"] for g in resumed.param_groups], [True])
        torch.testing.assert_close(resumed.state_dict()["state"][0]["exp_avg"],
                                   written.state_dict()["state"][0]["exp_avg"])
        resumed.load_state_dict(written.state_dict())  # what the runner did before: the flag is lost
        self.assertEqual([g["fused"] for g in resumed.param_groups], [None])
