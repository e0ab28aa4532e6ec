"""Do built embeddings help? Train the LSTM on frozen (a) given and (b) random embeddings.

    python -m bench.embeddings_quality --embeddings data/embeddings.npz \
        --data_folder ../shared/data/wikitext2 --steps 80 [--eval_batches 8 --out PATH]

Both runs see the same batches from the same initial LSTM weights (1 layer, hidden 512, AdamW
lr 1e-3, weight decay 5e-4, batches of 16 x 256 from the train split with Wikitext2's defaults);
only the frozen tied matrix differs. The random one has Gaussian rows rescaled to the norms of
the given rows (padding row 0 stays zero), so a gap measures what the directions carry, not the
scale. Validation perplexity is token-weighted, exp(sum NLL / real targets), over the first
--eval_batches batches of the validation split. This is a benchmark, not a test: on a shared
2-core CPU a step takes ~10 s, so the default budget is small.
"""
import argparse
import math
import os
import time

import torch

from lstm_solution import LSTM
from utils.batches import TensorBatches
from utils.checkpoint import atomic_write_json
from utils.embeddings import read_embeddings
from utils.losses import course_loss, tied_token_nll
from utils.wikitext2 import Wikitext2

DEFAULT_OUT = os.path.join("bench", "results", "embeddings_quality.json")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embeddings", required=True)
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--eval_batches", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--out", default=DEFAULT_OUT)
    return parser.parse_args(argv)


def random_like(tokens, seed):
    """Gaussian rows rescaled to the norms of `tokens`' rows (zero rows stay zero)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(tokens.shape, generator=generator)
    return rows * (tokens.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True))


def batch_nll(model, batch):
    """Per-token NLL (B, T) with the exact tied loss (no (B, T, V) tensor)."""
    source, target = batch["source"], batch["target"]
    features, _ = model.features(source, model.initial_states(source.shape[0]))
    return tied_token_nll(features.flatten(0, 1), model.tied_weight, target.flatten()).view(source.shape)


def batches(data, count):
    """The first `count` batches of `data`, epoch after epoch if needed."""
    epoch = 0
    while True:
        data.set_epoch(epoch)
        for batch in data:
            if count == 0:
                return
            count -= 1
            yield batch
        epoch += 1


def train(weight, train_data, steps, seed, log_every, name):
    torch.manual_seed(seed)  # same LSTM and classifier initialisation for both runs
    model = LSTM(weight.shape[0], weight.shape[1], hidden_size=512, num_layers=1, _embedding_weight=weight.clone())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=5e-4)
    losses, start = [], time.perf_counter()
    for step, batch in enumerate(batches(train_data, steps), 1):
        loss = course_loss(batch_nll(model, batch), batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == steps:
            print(f"[{name}] step {step}/{steps} loss {losses[-1]:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return model, losses, time.perf_counter() - start


@torch.no_grad()
def validation_perplexity(model, valid_data, count):
    model.eval()
    total, targets = 0.0, 0.0
    for batch in batches(valid_data, count):
        total += float((batch_nll(model, batch) * batch["mask"]).sum())
        targets += float(batch["mask"].sum())
    return math.exp(total / targets), int(targets)


def describe(path):
    try:
        from utils.build_embeddings import describe_embeddings
    except ImportError:  # the benchmark only needs the file itself
        return {"path": os.path.abspath(path)}
    return describe_embeddings(path)


def main(argv=None):
    args = parse_args(argv)
    tokens, _ = read_embeddings(args.embeddings)
    train_data = TensorBatches(Wikitext2(args.data_folder, "train"), args.batch_size, shuffle=True, seed=args.seed)
    valid_data = TensorBatches(Wikitext2(args.data_folder, "validation"), args.batch_size)
    runs = {}
    for name, weight in (("built", tokens), ("random", random_like(tokens, args.seed))):
        model, losses, seconds = train(weight, train_data, args.steps, args.seed, args.log_every, name)
        perplexity, n_targets = validation_perplexity(model, valid_data, args.eval_batches)
        tail = losses[-min(10, len(losses)):]
        runs[name] = {"valid_perplexity": perplexity, "valid_targets": n_targets, "train_seconds": round(seconds, 1),
                      "final_train_loss_mean10": sum(tail) / len(tail), "train_losses": losses}
    print(f"{'embeddings':<10} {'valid ppl':>10} {'train loss (last 10)':>21}")
    for name, run in runs.items():
        print(f"{name:<10} {run['valid_perplexity']:>10.1f} {run['final_train_loss_mean10']:>21.3f}")
    result = {"args": vars(args), "embeddings": describe(args.embeddings), "threads": torch.get_num_threads(),
              "ratio_random_over_built": runs["random"]["valid_perplexity"] / runs["built"]["valid_perplexity"],
              "runs": runs}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
