"""LayerNorm, attention, Block and MiniGPT1 (gpt1_solution.py), the LSTM (lstm_solution.py) and
the losses (utils/models/losses.py): values checked against hand computations, not only shapes."""
import copy
import inspect
import io
import math
import re
import tokenize
import unittest
from unittest import mock


import torch
import torch.nn as nn
import torch.nn.functional as F

import gpt1_solution
from gpt1_solution import Block, LayerNorm, MiniGPT1, MultiHeadedAttention
from lstm_solution import LSTM
from utils.models.losses import course_loss, nll_from_log_probas, tied_token_nll

V, E, T, HEADS = 50, 32, 16, 4  # a tiny MiniGPT1 / LSTM


def tiny_gpt(seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(vocabulary_size=V, embedding_size=E, sequence_length=T, num_heads=HEADS, num_layers=2)
    args.update(kwargs)
    return MiniGPT1(**args)


def tiny_lstm(seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(vocabulary_size=V, embedding_size=E, hidden_size=12, num_layers=2)
    args.update(kwargs)
    return LSTM(**args)


def randomize_layer_norms(module, generator):
    """Give every LayerNorm a non-trivial weight and bias."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, LayerNorm):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=generator))


def assert_close(actual, expected, atol=1e-6, rtol=1e-6):
    """Like torch.testing.assert_close (same dtype and shape, |a - e| <= atol + rtol |e|) without
    its first-call import of torch.distributed, which costs seconds on a busy machine."""
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    if actual.dtype != expected.dtype:
        raise AssertionError(f"dtype {actual.dtype} != {expected.dtype}")
    a, e = actual.detach().double(), expected.detach().double()
    bad = ~((a - e).abs() <= atol + rtol * e.abs())  # NaN anywhere is a failure
    if bad.any():
        raise AssertionError(
            f"{int(bad.sum())} of {bad.numel()} values differ; max |diff| {(a - e).abs().max().item():.3g} "
            f"(atol {atol}, rtol {rtol})"
        )


def code_without_strings_and_comments(source):
    """The source's code tokens only (docstrings may well mention F.layer_norm)."""
    skip = (tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    kept = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type not in skip]
    return re.sub(r"\s*\.\s*", ".", " ".join(kept))


def _raise(*args, **kwargs):
    raise AssertionError("LayerNorm must not call the library's layer_norm")


# ---------------------------------------------------------------- LayerNorm


class LayerNormTest(unittest.TestCase):
    def test_equals_library_layer_norm(self):
        g = torch.Generator().manual_seed(0)
        for shape, eps in [((5, 8), 1e-5), ((2, 3, 16), 1e-5), ((4, 1, 7, 32), 1e-5), ((3, 768), 1e-5), ((6, 10), 1e-2)]:
            hidden = shape[-1]
            norm = LayerNorm(hidden, eps=eps, use_fused=False)  # the assignment's formula from primitives
            with torch.no_grad():
                norm.weight.copy_(torch.randn(hidden, generator=g))
                norm.bias.copy_(torch.randn(hidden, generator=g))
            x = 3 * torch.randn(shape, generator=g) + 2  # non-zero mean, non-unit variance
            expected = F.layer_norm(x, (hidden,), norm.weight, norm.bias, eps)
            with mock.patch.object(torch.nn.functional, "layer_norm", _raise), \
                    mock.patch.object(torch, "layer_norm", _raise), \
                    mock.patch.object(torch, "native_layer_norm", _raise):
                out = norm(x)
            with self.subTest(shape=shape, eps=eps):
                self.assertEqual(out.shape, x.shape)
                self.assertEqual(out.dtype, x.dtype)
                assert_close(out, expected, atol=2e-5, rtol=1e-5)
                norm.use_fused = True  # the default: F.layer_norm itself
                assert_close(norm(x), out, atol=2e-5, rtol=1e-5)

    def test_biased_variance_by_hand(self):
        norm = LayerNorm(4)
        x = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
        mean, var = 3.0, ((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4  # biased: / n, not n - 1
        expected = [(v - mean) / math.sqrt(var + 1e-5) for v in (1.0, 2.0, 3.0, 6.0)]
        assert_close(norm(x)[0], torch.tensor(expected), atol=1e-5, rtol=1e-5)

    def test_defaults_and_gradients(self):
        norm = LayerNorm(6)
        self.assertTrue(torch.equal(norm.weight, torch.ones(6)) and torch.equal(norm.bias, torch.zeros(6)))
        x = torch.randn(3, 6, requires_grad=True)
        ref = x.detach().clone().requires_grad_(True)
        g = torch.randn(3, 6)
        (norm(x) * g).sum().backward()
        (F.layer_norm(ref, (6,)) * g).sum().backward()
        assert_close(x.grad, ref.grad, atol=1e-5, rtol=1e-5)
        self.assertIsNotNone(norm.weight.grad)
        self.assertIsNotNone(norm.bias.grad)

    def test_source_uses_no_library_layer_norm(self):
        source = code_without_strings_and_comments(inspect.getsource(gpt1_solution))
        self.assertIn("class LayerNorm", source)
        self.assertIsNone(re.search(r"\bnn\.LayerNorm\b", source))
        # The library kernel is the default fast path (issue 20); the assignment's formula from
        # primitives stays in the source and runs with use_fused=False (checked below and in
        # test_model_forward_never_calls_library_layer_norm).
        self.assertEqual(len(re.findall(r"\b(?:F|functional|torch)\.(?:native_)?layer_norm\b", source)), 1)
        self.assertIn("torch.rsqrt ( variance + self.eps )", source)
        model = tiny_gpt()
        self.assertFalse(any(isinstance(m, nn.LayerNorm) for m in model.modules()))
        self.assertEqual(sum(isinstance(m, LayerNorm) for m in model.modules()), 2 * model.num_layers)

    def test_model_forward_never_calls_library_layer_norm(self):
        model = tiny_gpt().eval()
        x = torch.randint(1, V, (2, T))
        fused_output = model(x)
        model.set_fused_layer_norm(False)  # the assignment's LayerNorm from primitives
        assert_close(model(x), fused_output, atol=1e-5, rtol=1e-5)
        with mock.patch.object(torch.nn.functional, "layer_norm", _raise), \
                mock.patch.object(torch, "layer_norm", _raise), \
                mock.patch.object(torch, "native_layer_norm", _raise):
            for fused in (True, False):
                model.set_fused_attention(fused)
                model(x)


# ---------------------------------------------------------------- attention


class AttentionTest(unittest.TestCase):
    hs, nh, T = 3, 4, 5

    def setUp(self):
        torch.manual_seed(0)
        self.attn = MultiHeadedAttention(self.hs, self.nh, sequence_length=8)  # T < sequence_length on purpose

    def test_split_merge_are_exact_inverses(self):
        x = torch.randn(2, self.T, self.nh * self.hs)
        split = self.attn.split_heads(x)
        self.assertEqual(split.shape, (2, self.nh, self.T, self.hs))
        self.assertTrue(torch.equal(self.attn.merge_heads(split), x))
        y = torch.randn(2, self.nh, self.T, self.hs)
        merged = self.attn.merge_heads(y)
        self.assertEqual(merged.shape, (2, self.T, self.nh * self.hs))
        self.assertTrue(torch.equal(self.attn.split_heads(merged), y))

    def test_head_h_owns_columns(self):
        B, width = 2, self.nh * self.hs
        b = torch.arange(B).view(B, 1, 1)
        t = torch.arange(self.T).view(1, self.T, 1)
        c = torch.arange(width).view(1, 1, width)
        x = (10000 * b + 100 * t + c).float()  # the value encodes (batch, time, column)
        split = self.attn.split_heads(x)
        for bi in range(B):
            for h in range(self.nh):
                for ti in range(self.T):
                    for d in range(self.hs):
                        self.assertEqual(split[bi, h, ti, d].item(), 10000 * bi + 100 * ti + h * self.hs + d)
        # and merge puts head h back into columns [h*hs, (h+1)*hs)
        self.assertTrue(torch.equal(self.attn.merge_heads(split), x))

    def hand_weights(self, q, k):
        """softmax(q k^T / sqrt(hs)) over j <= i, row by row with python floats."""
        B, nh, T, hs = q.shape
        w = [[[[0.0] * T for _ in range(T)] for _ in range(nh)] for _ in range(B)]
        for b in range(B):
            for h in range(nh):
                for i in range(T):
                    scores = [sum(q[b, h, i, d].item() * k[b, h, j, d].item() for d in range(hs)) / math.sqrt(hs)
                              for j in range(i + 1)]
                    top = max(scores)
                    exps = [math.exp(s - top) for s in scores]
                    for j in range(i + 1):
                        w[b][h][i][j] = exps[j] / sum(exps)
        return torch.tensor(w, dtype=torch.float64)

    def test_attention_weights(self):
        q = torch.randn(2, self.nh, self.T, self.hs)
        k = torch.randn(2, self.nh, self.T, self.hs)
        w = self.attn.get_attention_weights(q, k)
        self.assertEqual(w.shape, (2, self.nh, self.T, self.T))
        self.assertTrue(torch.all(w.triu(diagonal=1) == 0))  # exactly zero above the diagonal
        assert_close(w.sum(-1), torch.ones(2, self.nh, self.T), atol=1e-6, rtol=0)
        assert_close(w.double(), self.hand_weights(q, k), atol=1e-6, rtol=1e-5)
        self.assertEqual(w[0, 0, 0, 0].item(), 1.0)  # the first position attends to itself only

    def test_attention_weights_masked_exactly_in_low_precision(self):
        for dtype in (torch.bfloat16, torch.float16):
            q = (4 * torch.randn(2, self.nh, self.T, self.hs)).to(dtype)
            k = (4 * torch.randn(2, self.nh, self.T, self.hs)).to(dtype)
            w = self.attn.get_attention_weights(q, k)
            self.assertEqual(w.dtype, dtype)
            self.assertTrue(torch.all(w.triu(diagonal=1) == 0), dtype)
            self.assertTrue(torch.all(torch.isfinite(w)), dtype)

    def test_apply_attention_by_hand(self):
        q, k, v = (torch.randn(2, self.nh, self.T, self.hs) for _ in range(3))
        out = self.attn.apply_attention(q, k, v)
        self.assertEqual(out.shape, (2, self.T, self.nh * self.hs))
        w = self.hand_weights(q, k)
        for b in range(2):
            for t in range(self.T):
                for h in range(self.nh):
                    for d in range(self.hs):
                        expected = sum(w[b, h, t, j].item() * v[b, h, j, d].item() for j in range(t + 1))
                        self.assertAlmostEqual(out[b, t, h * self.hs + d].item(), expected, places=5)

    def test_forward_by_hand_and_fused_path(self):
        x = torch.randn(2, self.T, self.nh * self.hs)
        a = self.attn
        q, k, v = (a.split_heads(lin(x)) for lin in (a.query, a.key, a.value))
        expected = a.output(a.apply_attention(q, k, v))
        a.use_fused = False
        assert_close(a(x), expected, atol=0, rtol=0)
        a.use_fused = True
        assert_close(a(x), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- Block


class BlockTest(unittest.TestCase):
    def test_post_norm_by_hand(self):
        g = torch.Generator().manual_seed(1)
        torch.manual_seed(1)
        block = Block(head_size=4, mlp_hidden_size=32, num_heads=2, sequence_length=6)
        randomize_layer_norms(block, g)
        x = 2 * torch.randn(3, 6, 8, generator=g) + 1
        width = 8
        for fused in (False, True):
            block.attention.use_fused = fused
            ln1, ln2 = block.layer_norm_1, block.layer_norm_2
            y = F.layer_norm(x + block.attention(x), (width,), ln1.weight, ln1.bias, ln1.eps)
            expected = F.layer_norm(y + block.mlp(y), (width,), ln2.weight, ln2.bias, ln2.eps)
            with self.subTest(fused=fused):
                assert_close(block(x), expected, atol=2e-5, rtol=1e-5)
        # not pre-norm: x + attn(LN1(x)) + mlp(LN2(.)) is a different function
        pre = x + block.attention(ln1(x))
        pre = pre + block.mlp(ln2(pre))
        self.assertGreater((block(x) - pre).abs().max().item(), 1e-2)

    def test_output_is_normalised(self):
        torch.manual_seed(2)
        block = Block(head_size=4, mlp_hidden_size=32, num_heads=2, sequence_length=6)
        out = block(5 * torch.randn(2, 6, 8) + 3)
        assert_close(out.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
        assert_close(out.var(-1, unbiased=False), torch.ones(2, 6), atol=1e-3, rtol=0)

    def test_mlp_is_four_times_wide_in_minigpt1(self):
        model = tiny_gpt()
        first = model.layers[0].mlp[0]
        self.assertEqual((first.in_features, first.out_features), (E, 4 * E))
        self.assertEqual(model.layers[0].attention.head_size, E // HEADS)


# ---------------------------------------------------------------- causality


def past_change(model, inputs, t, fused, autocast):
    """Max |change| of the log-probabilities at positions <= t, and after t, when every token
    after position t is replaced."""
    changed = inputs.clone()
    g = torch.Generator().manual_seed(t)
    changed[:, t + 1:] = torch.randint(1, V, changed[:, t + 1:].shape, generator=g)
    model.set_fused_attention(fused)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        a, b = model(inputs), model(changed)
    diff = (a.float() - b.float()).abs()
    return diff[:, : t + 1].max().item(), diff[:, t + 1:].max().item() if t + 1 < inputs.shape[1] else None


class CausalityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = tiny_gpt(seed=3).eval()
        randomize_layer_norms(cls.model, torch.Generator().manual_seed(3))
        cls.inputs = torch.randint(1, V, (3, T), generator=torch.Generator().manual_seed(4))

    def test_future_tokens_do_not_change_the_past(self):
        for fused in (True, False):
            for autocast in (False, True):
                for t in (0, 7, T - 2):
                    past, future = past_change(self.model, self.inputs, t, fused, autocast)
                    with self.subTest(fused=fused, autocast=autocast, t=t):
                        self.assertLessEqual(past, 1e-6)
                        self.assertGreater(future, 1e-3)  # the perturbation is real

    def test_bf16_autocast_output_dtype(self):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for fused in (True, False):
                self.model.set_fused_attention(fused)
                out = self.model(self.inputs)
                self.assertTrue(torch.all(torch.isfinite(out.float())))

    def test_leaky_mask_is_detected(self):
        # the same check fails when the reference path's mask lets the future in
        leaky = copy.deepcopy(self.model)
        for block in leaky.layers:
            block.attention.causal_mask = torch.ones_like(block.attention.causal_mask)
        for autocast in (False, True):
            past, _ = past_change(leaky, self.inputs, 5, fused=False, autocast=autocast)
            self.assertGreater(past, 1e-3)

    def test_leaky_fused_attention_is_detected(self):
        sdpa = F.scaled_dot_product_attention

        def not_causal(q, k, v, *args, is_causal=False, **kwargs):
            return sdpa(q, k, v, *args, is_causal=False, **kwargs)

        with mock.patch.object(gpt1_solution.F, "scaled_dot_product_attention", not_causal):
            for autocast in (False, True):
                past, _ = past_change(self.model, self.inputs, 5, fused=True, autocast=autocast)
                self.assertGreater(past, 1e-3)

    def test_fused_equals_reference_path(self):
        with torch.no_grad():
            self.model.set_fused_attention(True)
            fused = self.model(self.inputs)
            self.model.set_fused_attention(False)
            reference = self.model(self.inputs)
        assert_close(fused, reference, atol=1e-4, rtol=1e-5)

    def test_shorter_inputs_and_log_probabilities(self):
        with torch.no_grad():
            out = self.model(self.inputs[:, :7])
        self.assertEqual(out.shape, (3, 7, V))
        assert_close(out.exp().sum(-1), torch.ones(3, 7), atol=1e-5, rtol=0)
        # a prefix run equals the same positions of the full run
        with torch.no_grad():
            full = self.model(self.inputs)
        assert_close(out, full[:, :7], atol=1e-5, rtol=0)

    def test_embeddings_are_token_plus_position(self):
        m = self.model
        x = self.inputs
        expected = m.embedding.tokens.weight[x] + m.embedding.position.weight[torch.arange(T)][None]
        assert_close(m.get_embeddings(x), expected, atol=0, rtol=0)


# ---------------------------------------------------------------- losses


class LossTest(unittest.TestCase):
    # B=2, T=4, V=3; sequence 0 has 3 real targets, sequence 1 has 2
    probas = [
        [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25], [0.9, 0.05, 0.05]],
        [[0.2, 0.2, 0.6], [0.3, 0.4, 0.3], [0.01, 0.01, 0.98], [0.5, 0.25, 0.25]],
    ]
    targets = [[0, 2, 1, 0], [1, 1, 0, 0]]
    mask = [[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]

    def hand_loss(self):
        per_sequence = []
        for b in range(2):
            terms = [-math.log(self.probas[b][t][self.targets[b][t]]) for t in range(4) if self.mask[b][t] == 1.0]
            per_sequence.append(sum(terms) / len(terms))
        return sum(per_sequence) / len(per_sequence)

    def tensors(self):
        return (torch.tensor(self.probas).log(), torch.tensor(self.targets), torch.tensor(self.mask))

    def test_model_losses_equal_hand_computation(self):
        expected = self.hand_loss()
        # = ((-ln .7 - ln .6 - ln .5) / 3 + (-ln .2 - ln .4) / 2) / 2
        self.assertAlmostEqual(expected, ((-math.log(0.7) - math.log(0.6) - math.log(0.5)) / 3
                                          + (-math.log(0.2) - math.log(0.4)) / 2) / 2, places=12)
        log_probas, targets, mask = self.tensors()
        for model in (tiny_lstm(), tiny_gpt()):
            loss = model.loss(log_probas, targets, mask)
            with self.subTest(model=type(model).__name__):
                self.assertEqual(loss.shape, ())
                self.assertAlmostEqual(loss.item(), expected, places=6)

    def test_padding_is_ignored(self):
        log_probas, targets, mask = self.tensors()
        expected = self.hand_loss()
        # garbage where the mask is 0: other targets, other log-probabilities
        log_probas2, targets2 = log_probas.clone(), targets.clone()
        log_probas2[mask == 0] = -30.0
        targets2[mask == 0] = 2
        model = tiny_lstm()
        self.assertAlmostEqual(model.loss(log_probas2, targets2, mask).item(), expected, places=6)
        # not the flat mean over all real tokens (that would weight sequences by length)
        flat = -sum(math.log(self.probas[b][t][self.targets[b][t]])
                    for b in range(2) for t in range(4) if self.mask[b][t]) / 5
        self.assertGreater(abs(flat - expected), 1e-3)

    def test_loss_gradient_flows_to_log_probas(self):
        log_probas, targets, mask = self.tensors()
        log_probas.requires_grad_(True)
        tiny_gpt().loss(log_probas, targets, mask).backward()
        # d loss / d log p[b, t, target] = -1 / (n_b * B) on real targets, 0 elsewhere
        expected = torch.zeros(2, 4, 3)
        for b, n in ((0, 3), (1, 2)):
            for t in range(n):
                expected[b, t, self.targets[b][t]] = -1.0 / (n * 2)
        assert_close(log_probas.grad, expected)

    def test_tied_token_nll_equals_log_softmax(self):
        g = torch.Generator().manual_seed(5)
        features = torch.randn(11, 6, generator=g, dtype=torch.float64)
        weight = torch.randn(9, 6, generator=g, dtype=torch.float64)
        targets = torch.randint(0, 9, (11,), generator=g)
        expected = -torch.log_softmax(features @ weight.t(), -1).gather(1, targets[:, None]).squeeze(1)
        for chunk in (1, 4, 100):
            nll = tied_token_nll(features, weight, targets, chunk_size=chunk)
            assert_close(nll.double(), expected, atol=1e-5, rtol=1e-5)

    def test_tied_token_nll_gradients(self):
        g = torch.Generator().manual_seed(6)
        for learn_weight in (False, True):
            features = torch.randn(10, 5, generator=g).requires_grad_(True)
            weight = torch.randn(7, 5, generator=g).requires_grad_(learn_weight)
            targets = torch.randint(0, 7, (10,), generator=g)
            upstream = torch.randn(10, generator=g)
            (tied_token_nll(features, weight, targets, chunk_size=3) * upstream).sum().backward()
            f2 = features.detach().clone().requires_grad_(True)
            w2 = weight.detach().clone().requires_grad_(learn_weight)
            ref = -torch.log_softmax(f2 @ w2.t(), -1).gather(1, targets[:, None]).squeeze(1)
            (ref * upstream).sum().backward()
            with self.subTest(learn_weight=learn_weight):
                assert_close(features.grad, f2.grad, atol=1e-5, rtol=1e-5)
                if learn_weight:
                    assert_close(weight.grad, w2.grad, atol=1e-5, rtol=1e-5)
                else:
                    self.assertIsNone(weight.grad)

    def test_fast_loss_equals_course_loss_for_both_models(self):
        inputs = torch.randint(1, V, (2, 8))
        targets = torch.randint(1, V, (2, 8))
        mask = torch.tensor([[1.0] * 8, [1.0] * 5 + [0.0] * 3])
        lstm, gpt = tiny_lstm(), tiny_gpt()
        with torch.no_grad():
            lp, _ = lstm(inputs, lstm.initial_states(2))
            features, _ = lstm.features(inputs, lstm.initial_states(2))
            fast = course_loss(tied_token_nll(features.reshape(-1, E), lstm.tied_weight, targets.reshape(-1)).view(2, 8), mask)
            assert_close(fast, lstm.loss(lp, targets, mask), atol=1e-5, rtol=1e-5)
            lp = gpt(inputs)
            features = gpt.features(inputs)
            fast = course_loss(tied_token_nll(features.reshape(-1, E), gpt.tied_weight, targets.reshape(-1)).view(2, 8), mask)
            assert_close(fast, gpt.loss(lp, targets, mask), atol=1e-5, rtol=1e-5)
            self.assertTrue(torch.equal(nll_from_log_probas(lp, targets), -lp.gather(2, targets[..., None])[..., 0]))


# ---------------------------------------------------------------- LSTM


class LSTMTest(unittest.TestCase):
    def test_two_halves_equal_one_run(self):
        model = tiny_lstm(seed=7).eval()
        inputs = torch.randint(1, V, (3, 10), generator=torch.Generator().manual_seed(7))
        state = model.initial_states(3)
        self.assertEqual(len(state), 2)
        for s in state:
            self.assertEqual(s.shape, (2, 3, 12))
            self.assertTrue(torch.all(s == 0))
        with torch.no_grad():
            full, (h, c) = model(inputs, state)
            first, mid = model(inputs[:, :4], state)
            second, (h2, c2) = model(inputs[:, 4:], mid)
        self.assertEqual(full.shape, (3, 10, V))
        assert_close(torch.cat([first, second], 1), full, atol=1e-6, rtol=1e-6)
        assert_close(h2, h, atol=1e-6, rtol=1e-6)
        assert_close(c2, c, atol=1e-6, rtol=1e-6)
        assert_close(full.exp().sum(-1), torch.ones(3, 10), atol=1e-5, rtol=0)
        # the carried state matters: restarting from zeros gives other outputs
        restarted, _ = model(inputs[:, 4:], model.initial_states(3))
        self.assertGreater((restarted - second).abs().max().item(), 1e-4)

    def test_forward_by_hand_from_submodules(self):
        model = tiny_lstm(seed=8).eval()
        inputs = torch.randint(1, V, (2, 5))
        with torch.no_grad():
            out, _ = model(inputs, model.initial_states(2))
            hidden, _ = model.lstm(model.embedding.weight[inputs], model.initial_states(2))
            features = torch.relu(hidden @ model.classifier[0].weight.t() + model.classifier[0].bias)
            logits = features @ model.embedding.weight.t()
        assert_close(out, torch.log_softmax(logits, -1), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- tied and frozen weights


def tied_pairs(model):
    """(classifier weight, embedding weight) of either model."""
    if isinstance(model, LSTM):
        return model.classifier[2].weight, model.embedding.weight
    return model.classifier.weight, model.embedding.tokens.weight


def run_backward(model):
    inputs = torch.randint(1, V, (2, 6))
    targets = torch.randint(1, V, (2, 6))
    mask = torch.ones(2, 6)
    if isinstance(model, LSTM):
        log_probas, _ = model(inputs, model.initial_states(2))
    else:
        log_probas = model(inputs)
    loss = model.loss(log_probas, targets, mask)
    loss.backward()
    return loss


class TiedFrozenWeightsTest(unittest.TestCase):
    def models(self, learn_embeddings=False):
        return [tiny_lstm(learn_embeddings=learn_embeddings), tiny_gpt(learn_embeddings=learn_embeddings)]

    def test_classifier_is_the_embedding(self):
        for model in self.models():
            classifier, embedding = tied_pairs(model)
            with self.subTest(model=type(model).__name__):
                self.assertIs(classifier, embedding)
                self.assertIs(model.tied_weight, embedding)
                self.assertEqual(classifier.data_ptr(), embedding.data_ptr())
                self.assertEqual(embedding.shape, (V, E))
                # counted once among the parameters
                self.assertEqual(sum(p is embedding for p in model.parameters()), 1)
                # the tie survives a state_dict round trip
                other = type(model)(**self.constructor_args(model))
                other.load_state_dict(model.state_dict())
                self.assertIs(tied_pairs(other)[0], tied_pairs(other)[1])
                self.assertTrue(torch.equal(other.tied_weight, model.tied_weight))

    @staticmethod
    def constructor_args(model):
        if isinstance(model, LSTM):
            return dict(vocabulary_size=V, embedding_size=E, hidden_size=12, num_layers=2)
        return dict(vocabulary_size=V, embedding_size=E, sequence_length=T, num_heads=HEADS, num_layers=2)

    def test_frozen_by_default(self):
        for model in self.models():
            tied = model.tied_weight
            frozen = [tied] + ([model.embedding.position.weight] if isinstance(model, MiniGPT1) else [])
            before = [p.detach().clone() for p in frozen]
            trainable = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.Adam(trainable, lr=0.1)
            trainable_before = [p.detach().clone() for p in trainable]
            run_backward(model)
            optimizer.step()
            with self.subTest(model=type(model).__name__):
                for p, b in zip(frozen, before):
                    self.assertFalse(p.requires_grad)
                    self.assertIsNone(p.grad)
                    self.assertFalse(any(q is p for group in optimizer.param_groups for q in group["params"]))
                    self.assertTrue(torch.equal(p, b))
                    self.assertTrue(torch.equal(tied_pairs(model)[0], tied_pairs(model)[1]))
                # everything else trains
                self.assertTrue(all(p.grad is not None for p in trainable))
                self.assertTrue(any(not torch.equal(p, b) for p, b in zip(trainable, trainable_before)))

    def test_learn_embeddings(self):
        for model in self.models(learn_embeddings=True):
            tied = model.tied_weight
            before = tied.detach().clone()
            trainable = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.SGD(trainable, lr=0.1)
            run_backward(model)
            with self.subTest(model=type(model).__name__):
                self.assertTrue(tied.requires_grad)
                self.assertIsNotNone(tied.grad)
                self.assertGreater(tied.grad.abs().sum().item(), 0)
                self.assertEqual(sum(p is tied for p in trainable), 1)
                optimizer.step()
                self.assertFalse(torch.equal(tied, before))
                self.assertIs(tied_pairs(model)[0], tied_pairs(model)[1])

    def test_tied_gradient_sums_input_and_output_uses(self):
        # with learn_embeddings the shared matrix gets the output layer's gradient too:
        # rows of tokens never fed in still get a gradient through the classifier
        model = tiny_lstm(learn_embeddings=True)
        inputs = torch.full((1, 4), 3)
        log_probas, _ = model(inputs, model.initial_states(1))
        model.loss(log_probas, torch.full((1, 4), 5), torch.ones(1, 4)).backward()
        self.assertGreater(model.tied_weight.grad[7].abs().sum().item(), 0)  # id 7: output side only
        self.assertGreater(model.tied_weight.grad[3].abs().sum().item(), 0)


if __name__ == "__main__":
    unittest.main()
