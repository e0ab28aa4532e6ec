"""What the benchmarks share: random frozen embeddings at the stand-in's scale, random items, the
project's training step as users get it. Benchmarks never import an entry script."""
import torch

VOCAB, WIDTH = 40479, 768  # GPT-1's embedding table
# At the stand-in's scale: nn.Embedding's N(0, 1) rows would spread MiniGPT1's logits over hundreds.
EMBEDDING_RMS = 0.15  # as in every figure measured so far; values do not change speed
LR, WEIGHT_DECAY = 1e-3, 5e-4  # the study's AdamW settings


def frozen_embeddings(seq_len, seed=0, vocab=VOCAB, width=WIDTH):
    """(tokens (V, E) with row 0 zero for padding, positions (seq_len, E)), float32."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(vocab, width, generator=generator) * EMBEDDING_RMS
    tokens[0] = 0.0
    return tokens, torch.randn(seq_len, width, generator=generator) * EMBEDDING_RMS


class RandomItems:
    """A split of n random full-length items (mask all ones), as TensorBatches reads it."""

    def __init__(self, n, seq_len, vocab=VOCAB, seed=0):
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(1, vocab, (n, seq_len + 1), generator=generator)
        self.tensors = {"source": tokens[:, :-1], "target": tokens[:, 1:], "mask": torch.ones(n, seq_len)}

    def __len__(self):
        return len(self.tensors["source"])

    def as_tensors(self):
        return self.tensors


def random_batch(batch_size, seq_len, seed=0, device="cpu", vocab=VOCAB):
    return {k: v.to(device) for k, v in RandomItems(batch_size, seq_len, vocab, seed).tensors.items()}


def project_model(model, layers, seq_len, seed=0, device="cpu", vocab=VOCAB, width=WIDTH):
    """The project's model, built through the registry as runs build it, on random frozen embeddings."""
    from utils.models.registry import model_spec
    from utils.train.settings import Arguments

    torch.manual_seed(seed)
    tokens, position = frozen_embeddings(seq_len, seed, vocab, width)
    return model_spec(model).build(Arguments(layers=layers), tokens, position).to(device)


def training_parts(model, precision, optimizer="adamw", fused=None):
    """(TokenNLL module, optimizer, scaler) for `model` as a run builds them, at the study's settings."""
    from types import SimpleNamespace

    from utils.models.base import TokenNLL
    from utils.train.optim import make_optimizer

    settings = SimpleNamespace(optimizer=optimizer, lr=LR, weight_decay=WEIGHT_DECAY, momentum=0.9)
    return TokenNLL(model), make_optimizer(settings, model, fused=fused), precision.make_scaler()


def loop_run(nll, optimizer, precision, scaler=None, start=0, stop=None, on_step=None):
    """The Run run_exp.train/evaluate take (one process, no folder), batches start..stop; on_step(done)."""
    from utils.train.run import Position, Run
    from utils.train.settings import Arguments

    class BenchRun(Run):
        def after_step(self, steps, done):
            if on_step is not None:
                on_step(done)

    s = Arguments(print_every=0, max_batches=stop)  # 0: no progress lines (nor their device reads)
    return BenchRun(s, nll.model, nll, optimizer, precision, scaler or precision.make_scaler(),
                    position=Position(0, start))


def loop_train(nll, batches, optimizer, precision, scaler=None, start=0, stop=None, on_step=None):
    """run_exp.train (the step runs take) over `batches` from step `start` to `stop`: its EpochResult."""
    import run_exp

    run = loop_run(nll, optimizer, precision, scaler, start, stop, on_step)
    return run_exp.train(0, nll.model, batches, optimizer, run.settings, run)


def project_step(model, optimizer="adamw", precision="auto"):
    """step(batch) -> loss: one optimisation step exactly as a run does it, at the precision users get
    with --precision `precision`; the loss is the batch's mean NLL per token, read at the pass's end."""
    from utils.train.precision import Precision

    chosen = Precision.resolve(precision, next(model.parameters()).device)
    chosen.configure()
    nll, opt, scaler = training_parts(model, chosen, optimizer)
    step = lambda batch: torch.tensor(loop_train(nll, [batch], opt, chosen, scaler).loss)  # noqa: E731
    step.precision = str(chosen)
    return step


def unigram_nll(train_tokens, vocabulary_size, smoothing=0.1):
    """(V,) float64 NLL of each id under add-`smoothing` counts of `train_tokens` (a tensor of ids)."""
    counts = torch.bincount(train_tokens.long(), minlength=vocabulary_size).double() + smoothing
    return -torch.log(counts / counts.sum())

