"""Every configuration starts near the unigram or at worst at uniform, at every depth, and its first
optimizer steps do not swing it to confidently wrong predictions (a loss far above ln V)."""
import math
import unittest

import pytest
import torch

from tests import fixtures
from bench.first_steps import first_steps, load_batches, unigram_loss
from utils.study.configs import CONFIGS
from utils.models.registry import model_spec

V, E, P = 50, 24, 16


class UniformStartTest(unittest.TestCase):
    """The engine's MiniGPT1 predicts exactly uniform before training, at any depth; the course
    constructor's initialisation is untouched."""

    def test_first_logits_are_zero_at_every_depth(self):
        generator = torch.Generator().manual_seed(0)
        tokens, position = torch.randn(V, E, generator=generator), torch.randn(P, E, generator=generator)
        inputs = torch.randint(1, V, (2, P), generator=generator)
        for layers in (1, 2, 4):
            with self.subTest(layers=layers):
                torch.manual_seed(0)
                model = model_spec("gpt1").build(layers, tokens, position, False)
                with torch.no_grad():
                    log_probas = model(inputs)
                torch.testing.assert_close(log_probas, torch.full_like(log_probas, -math.log(V)))
                self.assertEqual(float(model.layers[-1].layer_norm_2.weight.abs().sum()), 0.0)
                self.assertTrue(bool((model.layers[0].layer_norm_2.weight == 1).all()) if layers > 1 else True)

    def test_the_gain_learns_from_the_first_step(self):
        generator = torch.Generator().manual_seed(1)
        tokens, position = torch.randn(V, E, generator=generator), torch.randn(P, E, generator=generator)
        model = model_spec("gpt1").build(2, tokens, position, False)
        inputs = torch.randint(1, V, (2, P), generator=generator)
        targets = torch.randint(1, V, (2, P), generator=generator)
        loss = -model(inputs).gather(-1, targets[..., None]).mean()
        loss.backward()
        self.assertGreater(float(model.layers[-1].layer_norm_2.weight.grad.abs().sum()), 0.0)

    def test_course_constructor_is_unchanged(self):
        from gpt1_solution import MiniGPT1

        model = MiniGPT1(V, E, P, 4, 2)
        self.assertTrue(all(bool((block.layer_norm_2.weight == 1).all()) for block in model.layers))


@pytest.mark.slow
class InitialLossAtEveryDepthTest(unittest.TestCase):
    """The 12 configurations on the default stand-in built from the real training split, on real
    batches (4 sequences of 64 tokens): the initial loss is at most uniform (ln V) and at least the
    unigram's, and no loss of the first 6 steps goes more than 0.5 nat above uniform."""

    STEPS, BATCH, SEQ_LEN = 6, 4, 64
    LSTM_X4 = 10  # its top layer starts the same at every position; see test_lstm_x4_first_steps

    @classmethod
    def setUpClass(cls):
        from utils.data.build_embeddings import build

        arrays, _ = build(fixtures.WIKITEXT2)  # the default method, as quickstart.sh builds data/embeddings.npz
        cls.tokens, cls.position = torch.from_numpy(arrays["tokens"]), torch.from_numpy(arrays["position"])
        train, cls.batches = load_batches(fixtures.WIKITEXT2, cls.BATCH, cls.SEQ_LEN, cls.STEPS)
        cls.uniform = math.log(cls.tokens.shape[0])
        cls.unigram = unigram_loss(train.tokens, cls.batches[:1], cls.tokens.shape[0])
        cls.threads = torch.get_num_threads()
        torch.set_num_threads(1)
        cls.losses = {number: first_steps(number, cls.tokens, cls.position, cls.batches) for number in sorted(CONFIGS)}

    @classmethod
    def tearDownClass(cls):
        torch.set_num_threads(cls.threads)

    def test_every_configuration_starts_between_unigram_and_uniform(self):
        for number, losses in self.losses.items():
            with self.subTest(configuration=CONFIGS[number].label):
                self.assertLessEqual(losses[1], self.uniform + 1e-3)
                self.assertGreaterEqual(losses[1], self.unigram - 0.5)

    def test_first_steps_do_not_blow_up(self):
        for number, losses in self.losses.items():
            if number != self.LSTM_X4:
                with self.subTest(configuration=CONFIGS[number].label):
                    self.assertLessEqual(max(losses.values()), self.uniform + 0.5, losses)

    @unittest.expectedFailure
    def test_lstm_x4_first_steps(self):
        """Not fixed: LSTM x4's top layer gives every position the same output at initialisation,
        Adam's first steps grow it coherently (|h| 0.41 -> 6.97 in 3 steps) and its ReLU features
        overshoot the stand-in's unigram direction (ones): step 4 is at ~19.6 nats, step 5 back at
        ~7.3. Removing that direction (FREQ_ONES 0) fixes the LSTM but slows MiniGPT1's start."""
        self.assertLessEqual(max(self.losses[self.LSTM_X4].values()), self.uniform + 0.5, self.losses[self.LSTM_X4])


if __name__ == "__main__":
    unittest.main()
