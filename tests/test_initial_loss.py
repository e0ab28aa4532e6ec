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
from utils.train.settings import Arguments

V, E, P = 50, 24, 16


class CourseInitIsTheDefault(unittest.TestCase):
    """Without --init (every run and the study), the engine builds exactly the models the course's
    constructors give after the same seeding: every parameter equal, bit for bit."""

    def test_default_build_equals_the_course_constructors(self):
        from gpt1_solution import MiniGPT1
        from lstm_solution import LSTM
        from utils.models.registry import GPT1_HEADS, LSTM_HIDDEN_SIZE
        from utils.torch_utils import seed_experiment

        generator = torch.Generator().manual_seed(0)
        tokens, position = torch.randn(V, E, generator=generator), torch.randn(P, E, generator=generator)
        course = {"lstm": lambda n: LSTM(V, E, LSTM_HIDDEN_SIZE, n, False, tokens),
                  "gpt1": lambda n: MiniGPT1(V, E, P, GPT1_HEADS, n, False, tokens, position)}
        for (model, layers), seed in zip([(m, n) for m in course for n in (1, 2, 4)], (42, 0, 7, 42, 1, 3)):
            with self.subTest(model=model, layers=layers, seed=seed):
                settings = Arguments(model=model, layers=layers, seed=seed)
                self.assertEqual(settings.init, "course")
                seed_experiment(seed)  # as utils.train.run builds the run's model
                built = dict(model_spec(model).build(settings, tokens, position).named_parameters())
                seed_experiment(seed)
                expected = dict(course[model](layers).named_parameters())
                self.assertEqual(list(built), list(expected))
                for name, parameter in expected.items():
                    self.assertTrue(torch.equal(built[name], parameter), name)
                seed_experiment(seed)
                stable = dict(model_spec(model).build(Arguments(model=model, layers=layers, init="stable"), tokens,
                                                      position).named_parameters())
                self.assertFalse(all(torch.equal(stable[n], p) for n, p in expected.items()), "stable is another start")

    def test_init_identifies_the_run(self):
        from dataclasses import asdict

        from utils.runs import schema
        from utils.train.settings import DEFAULTS

        course, stable = asdict(Arguments()), asdict(Arguments(init="stable", tensorboard=True))
        self.assertEqual(schema.identity(course)["init"], "course")
        self.assertEqual(schema.differing(course, stable, DEFAULTS), ["init"])  # --tensorboard is incidental


class UniformStartTest(unittest.TestCase):
    """MiniGPT1 under --init stable predicts exactly uniform before training, at any depth; the course
    constructor's initialisation is untouched."""

    def test_first_logits_are_zero_at_every_depth(self):
        generator = torch.Generator().manual_seed(0)
        tokens, position = torch.randn(V, E, generator=generator), torch.randn(P, E, generator=generator)
        inputs = torch.randint(1, V, (2, P), generator=generator)
        for layers in (1, 2, 4):
            with self.subTest(layers=layers):
                torch.manual_seed(0)
                model = model_spec("gpt1").build(Arguments(layers=layers, init="stable"), tokens, position)
                with torch.no_grad():
                    log_probas = model(inputs)
                torch.testing.assert_close(log_probas, torch.full_like(log_probas, -math.log(V)))
                self.assertEqual(float(model.layers[-1].layer_norm_2.weight.detach().abs().sum()), 0.0)
                self.assertTrue(bool((model.layers[0].layer_norm_2.weight == 1).all()) if layers > 1 else True)

    def test_the_gain_learns_from_the_first_step(self):
        generator = torch.Generator().manual_seed(1)
        tokens, position = torch.randn(V, E, generator=generator), torch.randn(P, E, generator=generator)
        model = model_spec("gpt1").build(Arguments(layers=2, init="stable"), tokens, position)
        inputs = torch.randint(1, V, (2, P), generator=generator)
        targets = torch.randint(1, V, (2, P), generator=generator)
        loss = -model(inputs).gather(-1, targets[..., None]).mean()
        loss.backward()
        self.assertGreater(float(model.layers[-1].layer_norm_2.weight.grad.abs().sum()), 0.0)

    def test_course_constructor_is_unchanged(self):
        from gpt1_solution import MiniGPT1

        model = MiniGPT1(V, E, P, 4, 2)
        self.assertTrue(all(bool((block.layer_norm_2.weight == 1).all()) for block in model.layers))


class OrthogonalStartTest(unittest.TestCase):
    """Under --init stable the LSTM starts with orthogonal gate blocks, zero biases but a forget bias of 1, so
    its top layer's output varies with the input at every depth; the course constructor's
    initialisation is untouched."""

    H = 512  # the registry's LSTM width

    def setUp(self):
        generator = torch.Generator().manual_seed(0)
        self.tokens, self.position = torch.randn(V, E, generator=generator), torch.randn(P, E, generator=generator)
        self.inputs = torch.randint(1, V, (2, P), generator=generator)

    def top_output_spread(self, model):
        """The position-dependent part of the top layer's output (B, T, H), relative to its norm."""
        with torch.no_grad():
            h = model.lstm(model.embedding(self.inputs), model.initial_states(2))[0]  # (B, T, H)
        return float((h - h.mean((0, 1))).norm() / h.norm())

    def test_gate_blocks_are_orthogonal_and_biases_zero_but_forget(self):
        torch.manual_seed(0)
        model = model_spec("lstm").build(Arguments(layers=2, init="stable"), self.tokens, self.position)
        for name, parameter in model.lstm.named_parameters():
            for gate, block in enumerate(parameter.detach().split(self.H)):
                with self.subTest(parameter=name, gate=gate):
                    if name.startswith("weight"):
                        gram = block @ block.T if block.shape[1] >= block.shape[0] else block.T @ block
                        torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
                    else:
                        forget = name.startswith("bias_ih") and gate == 1
                        torch.testing.assert_close(block, torch.full_like(block, 1.0 if forget else 0.0))

    def test_top_output_varies_with_the_input_at_depth_4(self):
        from lstm_solution import LSTM

        torch.manual_seed(0)
        engine = self.top_output_spread(model_spec("lstm").build(Arguments(layers=4, init="stable"), self.tokens, self.position))
        torch.manual_seed(0)
        course = self.top_output_spread(LSTM(V, E, self.H, 4, False, self.tokens))
        self.assertGreater(engine, 0.6)
        self.assertLess(course, 0.3)  # the default stack: nearly the same output at every position

    def test_course_constructor_is_unchanged(self):
        from lstm_solution import LSTM

        torch.manual_seed(0)
        model = LSTM(V, E, 16, 2)
        bound = 1 / math.sqrt(16)
        for name, parameter in model.lstm.named_parameters():
            with self.subTest(parameter=name):
                self.assertLessEqual(float(parameter.detach().abs().max()), bound)
                self.assertGreater(float(parameter.abs().min()), 0.0)


@pytest.mark.slow
class InitialLossAtEveryDepthTest(unittest.TestCase):
    """The 12 configurations on the default stand-in built from the real training split, on real
    batches (4 sequences of 32 tokens): the initial loss is at most uniform (ln V) and at least the
    unigram's, and no loss of the first 6 steps goes more than 0.5 nat above uniform (with the
    course's LSTM initialisation, LSTM x4 reaches ~16 nats at step 4 on these batches)."""

    STEPS, BATCH, SEQ_LEN = 6, 4, 32

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
            with self.subTest(configuration=CONFIGS[number].label):
                self.assertLessEqual(max(losses.values()), self.uniform + 0.5, losses)

    def test_lstm_x4_needs_its_orthogonal_start(self):
        """The check above can fail: with the course's initialisation LSTM x4 spikes on these batches."""
        course = first_steps(10, self.tokens, self.position, self.batches, course_init=True)
        self.assertGreater(max(course.values()), self.uniform + 2.0, course)
        self.assertLessEqual(max(self.losses[10].values()), self.uniform + 0.5, self.losses[10])


if __name__ == "__main__":
    unittest.main()
