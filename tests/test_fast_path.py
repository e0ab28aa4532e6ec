"""The fast training path (utils.models.losses.tied_token_nll via TokenNLL and run_exp.train's step)
against the course's plain path (model(x) -> log-probabilities -> model.loss): same loss, same
gradients, same perplexity; plus fused attention, bf16 causality, precision and frozen weights."""
import math
import unittest


import torch

from gpt1_solution import MiniGPT1
from lstm_solution import LSTM
from utils.models.base import TokenNLL
from utils.models.losses import course_loss, tied_token_nll
from run_exp import evaluate, train
from utils.train.optim import make_optimizer
from utils.train.precision import Precision
from utils.train.run import course_run
from utils.train.settings import Arguments

FP32 = Precision("fp32", "cpu")
QUIET = Arguments(print_every=10**6)


def evaluate_split(model, batches, precision="fp32"):
    """run_exp.evaluate over `batches` in `precision`, one process."""
    return evaluate(0, model, batches, QUIET, "valid", course_run(model, None, QUIET, batches, precision))


def train_step(model, batch, optimizer):
    """One step of run_exp.train on `batch`; its EpochResult."""
    return train(0, model, [batch], optimizer, QUIET)

V, T = 60, 16
TOLERANCE = {torch.float32: dict(rtol=1e-4, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def tiny(kind, dtype=torch.float32, seed=0, **kwargs):
    torch.manual_seed(seed)
    if kind == "lstm":
        model = LSTM(vocabulary_size=V, embedding_size=16, hidden_size=8, **kwargs)
    else:
        model = MiniGPT1(vocabulary_size=V, embedding_size=24, sequence_length=T, num_heads=3, num_layers=2, **kwargs)
    return model.to(dtype)


def padded_batch(lengths=(T, 9, 4), dtype=torch.float32, seed=1):
    """Sequences of the given lengths, zero-padded to T, with mask 1 on real targets only."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, V, (len(lengths), T + 1), generator=generator)
    real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    return {"source": tokens[:, :-1] * real, "target": tokens[:, 1:] * real, "mask": real.to(dtype)}


def course_log_probas(model, source):
    if isinstance(model, LSTM):
        return model(source, model.initial_states(source.shape[0]))[0]
    return model(source)


def course_path_loss(model, batch):
    """The course notebook's loss: full (B, T, V) log-probabilities, then model.loss."""
    return model.loss(course_log_probas(model, batch["source"]), batch["target"], batch["mask"])


def fast_path_loss(model, batch):
    return course_loss(TokenNLL(model)(batch["source"], batch["target"]), batch["mask"])


def loss_and_grads(model, loss_fn, batch):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


class FastLossEqualsCourseLoss(unittest.TestCase):
    def check_same(self, model, batch, dtype):
        fast, fast_grads = loss_and_grads(model, fast_path_loss, batch)
        course, course_grads = loss_and_grads(model, course_path_loss, batch)
        self.assertEqual(fast.dtype, dtype)
        self.assertGreater(float(course), 1.0)  # a real loss (about log 60 here), not a zero
        torch.testing.assert_close(fast, course, **TOLERANCE[dtype])
        self.assertEqual(fast_grads.keys(), course_grads.keys())
        for name in course_grads:
            self.assertGreater(float(course_grads[name].abs().max()), 0.0, name)
            torch.testing.assert_close(fast_grads[name], course_grads[name], **TOLERANCE[dtype], msg=name)
        return fast_grads

    def test_loss_and_gradients_with_padding(self):
        for kind in ("lstm", "gpt1"):
            for dtype in (torch.float32, torch.float64):
                with self.subTest(kind=kind, dtype=dtype):
                    self.check_same(tiny(kind, dtype), padded_batch(dtype=dtype), dtype)

    def test_padding_changes_the_loss(self):
        # The mask matters: the same tokens with everything real give another loss.
        model, padded = tiny("gpt1"), padded_batch()
        full = dict(padded, mask=torch.ones_like(padded["mask"]))
        with torch.no_grad():
            padded_loss, full_loss = float(fast_path_loss(model, padded)), float(fast_path_loss(model, full))
        self.assertNotAlmostEqual(padded_loss, full_loss, places=3)

    def test_learned_tied_embeddings_get_the_course_gradient(self):
        # The tied matrix's gradient sums the lookup and the classifier parts; both must match.
        for kind in ("lstm", "gpt1"):
            with self.subTest(kind=kind):
                model = tiny(kind, torch.float64, learn_embeddings=True)
                grads = self.check_same(model, padded_batch(dtype=torch.float64), torch.float64)
                tied = [n for n, p in model.named_parameters() if p is model.tied_weight]
                self.assertEqual(len(tied), 1)
                self.assertIn(tied[0], grads)


class ChunkedNLL(unittest.TestCase):
    def reference(self, features, weight, targets):
        return -torch.log_softmax(features @ weight.t(), dim=-1).gather(1, targets[:, None]).squeeze(1)

    def test_chunk_sizes_that_do_not_divide_n(self):
        torch.manual_seed(0)
        n, e = 23, 8
        features, weight = torch.randn(n, e, dtype=torch.float64), torch.randn(V, e, dtype=torch.float64) * 2
        targets, upstream = torch.randint(0, V, (n,)), torch.rand(n, dtype=torch.float64)
        for learn in (False, True):
            x, w = features.clone().requires_grad_(), weight.clone().requires_grad_(learn)
            expected = self.reference(x, w, targets)
            (expected * upstream).sum().backward()
            want = (expected.detach(), x.grad.clone(), w.grad.clone() if learn else None)
            for chunk in (1, 5, 7, 22, 23, 64):
                with self.subTest(learn=learn, chunk=chunk):
                    x.grad, w.grad = None, None
                    nll = tied_token_nll(x, w, targets, chunk_size=chunk)
                    (nll * upstream).sum().backward()
                    torch.testing.assert_close(nll.detach(), want[0], rtol=1e-12, atol=1e-12)
                    torch.testing.assert_close(x.grad, want[1], rtol=1e-10, atol=1e-12)
                    if learn:
                        torch.testing.assert_close(w.grad, want[2], rtol=1e-10, atol=1e-12)

    def test_confident_predictions_keep_their_gradient(self):
        # p_target = 1 - 1e-3: the one-hot is subtracted before the division by the row sum,
        # so (p_t - 1) keeps float32's relative precision, as autograd's log_softmax does.
        weight = torch.eye(4, dtype=torch.float32)
        features = torch.tensor([[8.0, 0.0, 0.0, 0.0]], requires_grad=True)
        tied_token_nll(features, weight, torch.tensor([0])).sum().backward()
        logits = features.detach().double() @ weight.double().t()
        exact = torch.softmax(logits, -1)[0] - torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
        self.assertLess(float(exact[0]), -1e-3)
        torch.testing.assert_close(features.grad[0].double(), exact, rtol=2e-4, atol=0.0)

    def test_huge_logit_spread_is_still_exact(self):
        # Logits spread over ~400: exp() underflows for most of the vocabulary (the floor on its
        # argument must not change the float32 loss or gradient).
        torch.manual_seed(0)
        features = (torch.randn(20, 8) * 40).requires_grad_()
        weight, targets = torch.randn(V, 8), torch.randint(0, V, (20,))
        nll = tied_token_nll(features, weight, targets, chunk_size=6)
        nll.sum().backward()
        x64 = features.detach().double().requires_grad_()
        expected = self.reference(x64, weight.double(), targets)
        expected.sum().backward()
        self.assertGreater(float(expected.detach().max()), 100.0)
        torch.testing.assert_close(nll.double(), expected.detach(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(features.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)

    def test_fp16_nll_past_the_underflow_of_its_probability(self):
        # fp16's p_t underflows below 6e-8 (an NLL above 16.6); the training path's NLL, from the
        # row's largest probability, must stay exact to the fp16 logits' rounding far beyond that.
        generator = torch.Generator().manual_seed(0)
        weight, features = torch.randn(5000, 16, generator=generator) * 3, torch.randn(64, 16, generator=generator) * 2
        targets = torch.randint(0, 5000, (64,), generator=generator)
        logits = (features.half() @ weight.half().t()).float()  # what the fp16 matmul gives, then exact
        expected = -torch.log_softmax(logits, 1).gather(1, targets[:, None]).squeeze(1)
        with torch.autocast("cpu", dtype=torch.float16):
            trained = tied_token_nll(features.clone().requires_grad_(), weight, targets, chunk_size=24)
            with torch.no_grad():
                evaluated = tied_token_nll(features, weight, targets, chunk_size=24)
        self.assertGreater(int((expected > 30).sum()), 10)  # most of these p_t are 0 in fp16
        self.assertEqual(trained.dtype, torch.float32)
        torch.testing.assert_close(trained.detach(), expected, rtol=1e-4, atol=2e-3)
        torch.testing.assert_close(evaluated, expected, rtol=1e-3, atol=2e-3)  # log_softmax's fp16 output

    def test_no_grad_path_equals_autograd_path(self):
        torch.manual_seed(0)
        features, weight, targets = torch.randn(30, 8), torch.randn(V, 8), torch.randint(0, V, (30,))
        with torch.no_grad():
            plain = tied_token_nll(features, weight, targets, chunk_size=7)
        tracked = tied_token_nll(features.requires_grad_(), weight, targets, chunk_size=7)
        torch.testing.assert_close(plain, tracked.detach(), rtol=0, atol=0)
        torch.testing.assert_close(plain, self.reference(features.detach(), weight, targets), rtol=1e-5, atol=1e-5)


class FusedAttention(unittest.TestCase):
    def test_fused_equals_reference_path(self):
        for dtype in (torch.float32, torch.float64):
            with self.subTest(dtype=dtype):
                model, batch = tiny("gpt1", dtype), padded_batch(dtype=dtype)
                results = {}
                for fused in (True, False):
                    model.set_fused_attention(fused)
                    out = course_log_probas(model, batch["source"])
                    loss, grads = loss_and_grads(model, course_path_loss, batch)
                    results[fused] = (out.detach(), loss, grads)
                torch.testing.assert_close(results[True][0], results[False][0], **TOLERANCE[dtype])
                torch.testing.assert_close(results[True][1], results[False][1], **TOLERANCE[dtype])
                for name, grad in results[False][2].items():
                    torch.testing.assert_close(results[True][2][name], grad, **TOLERANCE[dtype], msg=name)


class BF16OnCPU(unittest.TestCase):
    def test_causal_mask_holds_bit_for_bit(self):
        model = tiny("gpt1").eval()
        source = padded_batch(lengths=(T, T))["source"]
        changed = source.clone()
        changed[:, 10:] = (changed[:, 10:] + 7) % (V - 1) + 1  # new future tokens
        for fused in (True, False):
            with self.subTest(fused=fused), torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                model.set_fused_attention(fused)
                a, b = model.features(source), model.features(changed)
                self.assertTrue(torch.equal(a[:, :10], b[:, :10]), "a past output changed with future tokens")
                self.assertFalse(torch.equal(a[:, 10:], b[:, 10:]))
                la, lb = model(source), model(changed)
                self.assertTrue(torch.equal(la[:, :10], lb[:, :10]))

    def test_bf16_eval_perplexity_is_close_to_fp32(self):
        for kind in ("lstm", "gpt1"):
            with self.subTest(kind=kind):
                model, batches = tiny(kind), [padded_batch(seed=s) for s in range(3)]
                ppl = {p: evaluate_split(model, batches, p)[1] for p in ("fp32", "bf16")}
                self.assertGreater(ppl["fp32"], 10.0)
                self.assertLess(abs(ppl["bf16"] / ppl["fp32"] - 1), 0.02, ppl)

    def test_the_residual_stream_is_half_only_when_evaluating(self):
        # Evaluation keeps MiniGPT1's stream in bf16 (a quarter of the traffic); training keeps it
        # in float32, whose gradients LayerNorm's backward would otherwise amplify (docs/gpu.md).
        model, source = tiny("gpt1"), padded_batch(lengths=(T, T))["source"]
        with torch.no_grad():
            exact = model.features(source)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            trained = model.features(source)
            with torch.no_grad():
                evaluated = model.features(source)
        self.assertEqual((trained.dtype, evaluated.dtype), (torch.float32, torch.bfloat16))
        for found in (trained.detach(), evaluated.float()):
            torch.testing.assert_close(found, exact, rtol=0.05, atol=0.05)

    def test_fp16_on_cpu_is_refused_clearly(self):
        with self.assertRaisesRegex(ValueError, "fp16.*bf16 or fp32"):
            Precision.resolve("fp16", "cpu")
        self.assertIn(Precision.resolve("auto", "cpu").name, ("fp32", "bf16"))


class FrozenTiedClassifier(unittest.TestCase):
    def test_no_weight_gradient_and_no_optimizer_state(self):
        for kind in ("lstm", "gpt1"):
            with self.subTest(kind=kind):
                model = tiny(kind)
                optimizer = make_optimizer(Arguments(optimizer="adamw", lr=1e-2), model)
                frozen = model.tied_weight.detach().clone()
                batch = padded_batch()
                result = train_step(model, batch, optimizer)
                self.assertIsNone(model.tied_weight.grad)
                in_groups = [p for group in optimizer.param_groups for p in group["params"]]
                self.assertFalse(any(p is model.tied_weight for p in in_groups))
                self.assertEqual(len(in_groups), sum(1 for p in model.parameters() if p.requires_grad))
                self.assertTrue(torch.equal(model.tied_weight, frozen))
                self.assertTrue(math.isfinite(result.loss))
                self.assertEqual(result.tokens, int(batch["mask"].sum()))  # every real target of the (3, T) batch

    def test_train_step_is_the_course_step(self):
        # One SGD step by train_step lands where the plain course step does.
        for kind in ("lstm", "gpt1"):
            with self.subTest(kind=kind):
                fast, course = tiny(kind, torch.float64), tiny(kind, torch.float64)
                batch = padded_batch(dtype=torch.float64)
                opt_fast = make_optimizer(Arguments(optimizer="sgd", lr=0.5, weight_decay=0.0), fast)
                opt_course = make_optimizer(Arguments(optimizer="sgd", lr=0.5, weight_decay=0.0), course)
                train_step(fast, batch, opt_fast)
                course_path_loss(course, batch).backward()
                opt_course.step()
                for (name, a), b in zip(fast.named_parameters(), course.parameters()):
                    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


class EvaluationPerplexity(unittest.TestCase):
    def test_fast_eval_equals_course_style_fp32_within_0_1_percent(self):
        for kind in ("lstm", "gpt1"):
            with self.subTest(kind=kind):
                model = tiny(kind)
                batches = [padded_batch(seed=s, lengths=(T, 11, 3)) for s in range(4)]
                result = evaluate_split(model, batches)
                nll_sum, count = 0.0, 0.0
                with torch.no_grad():
                    for batch in batches:
                        log_probas = course_log_probas(model, batch["source"])  # (B, T, V)
                        picked = log_probas.gather(2, batch["target"][..., None]).squeeze(2)
                        nll_sum -= float((picked * batch["mask"]).sum())
                        count += float(batch["mask"].sum())
                self.assertEqual(result.tokens, int(count))
                expected = math.exp(nll_sum / count)
                self.assertLess(abs(result[1] / expected - 1), 1e-3, (result[1], expected))


if __name__ == "__main__":
    unittest.main()
