"""What the benchmarks share: random frozen embeddings at the stand-in's scale, random batches, the
project's training step as users get it, and result files. Benchmarks never import an entry script."""
import json
import os

import torch

VOCAB, WIDTH = 40479, 768  # GPT-1's embedding table
# nn.Embedding's N(0, 1) rows would give MiniGPT1 logits spread over hundreds, unlike GPT-1's
# embeddings; every variant gets the same rows at the offline stand-in's scale instead.
EMBEDDING_RMS = 0.15  # as in every figure measured so far; values do not change speed
LR, WEIGHT_DECAY = 1e-3, 5e-4  # the study's AdamW settings


def frozen_embeddings(seq_len, seed=0, vocab=VOCAB, width=WIDTH):
    """(tokens (V, E) with row 0 zero for padding, positions (seq_len, E)), float32."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(vocab, width, generator=generator) * EMBEDDING_RMS
    tokens[0] = 0.0
    return tokens, torch.randn(seq_len, width, generator=generator) * EMBEDDING_RMS


def random_batch(batch_size, seq_len, seed=0, device="cpu", vocab=VOCAB):
    """Full-length sequences (mask all ones), as almost every Wikitext-2 training item is."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab, (batch_size, seq_len + 1), generator=generator).to(device)
    return {"source": tokens[:, :-1], "target": tokens[:, 1:], "mask": torch.ones(batch_size, seq_len, device=device)}


def project_model(model, layers, seq_len, seed=0, device="cpu", vocab=VOCAB, width=WIDTH):
    """The project's model, built through the registry as runs build it, on random frozen embeddings."""
    from utils.models.registry import model_spec
    from utils.train.settings import Arguments

    torch.manual_seed(seed)
    tokens, position = frozen_embeddings(seq_len, seed, vocab, width)
    return model_spec(model).build(Arguments(layers=layers), tokens, position).to(device)


def loop_run(nll, optimizer, precision, scaler=None, start=0, stop=None, on_step=None):
    """The Run that run_exp.train and evaluate take (one process, no folder), its batches from step
    `start` to `stop`; on_step(done) after each step."""
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
    """step(batch) -> loss: one optimisation step exactly as a run does it (run_exp.train's step on one
    batch: TokenNLL forward, the course loss, the optimizer table, the precision users get with
    --precision `precision`); the loss is the batch's mean NLL per token, read at the pass's end."""
    from types import SimpleNamespace

    from utils.models.base import TokenNLL
    from utils.train.optim import make_optimizer
    from utils.train.precision import Precision

    settings = SimpleNamespace(optimizer=optimizer, lr=LR, weight_decay=WEIGHT_DECAY, momentum=0.9)
    opt = make_optimizer(settings, model)
    device = next(model.parameters()).device
    chosen = Precision.resolve(precision, device)
    chosen.configure()
    nll, scaler = TokenNLL(model), chosen.make_scaler()
    step = lambda batch: torch.tensor(loop_train(nll, [batch], opt, chosen, scaler).loss)  # noqa: E731
    step.precision = str(chosen)
    return step


def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(obj, handle, indent=2)
        handle.write("\n")
