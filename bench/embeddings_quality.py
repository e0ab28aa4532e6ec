"""Which frozen stand-in embeddings let the LSTM and MiniGPT1 learn? One small, fixed budget
(method and figures: docs/embeddings.md#what-the-stand-in-costs).

    python -m bench.embeddings_quality --standin data/ppmi-svd.npz \
        --candidate next-token-svd=data/embeddings.npz [--data_folder DATA --out PATH]

Variants, from the same initial weights on the same batches: standin (frozen), learnable (the
same rows learned), random (Gaussian rows of the stand-in's norms) and each --candidate, frozen;
beside them the add-0.1 train unigram. Seeded, one thread: the same numbers for the same inputs.
"""
import argparse
import itertools
import math
import os
import sys
import time

import numpy as np
import torch

from bench.common import unigram_nll
from utils.data import PROJECT_DATA
from utils.data.batches import TensorBatches
from utils.data.build_embeddings import describe_embeddings
from utils.data.embeddings import EmbeddingsError, read_embeddings
from utils.data.wikitext2 import Wikitext2, load_split
from utils.errors import UsageError
from utils.models.base import TokenNLL
from utils.models.losses import course_loss
from utils.models.registry import display_name, model_spec
from utils.runs.atomic import atomic_write_json
from utils.train.progress import perplexity_text
from utils.train.settings import Arguments

DEFAULT_OUT = os.path.join("bench", "results", "embeddings_quality.json")
MODELS = ("lstm", "gpt1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", default=PROJECT_DATA, help="folder with wiki.{train,validation}.npz")
    parser.add_argument("--standin", required=True, help="the stand-in to compare against (standin/learnable/random)")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=PATH",
                        help="a frozen candidate; repeat for several")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of lstm,gpt1")
    parser.add_argument("--variants", default=None, help="comma-separated subset of variant names (default: all)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--eval_items", type=int, default=128, help="first validation items scored")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--out", default=DEFAULT_OUT)
    return parser.parse_args(argv)


def random_like(tokens, seed):
    """Gaussian rows rescaled to the norms of `tokens`' rows (zero rows stay zero): a gap to
    the given rows measures what their directions carry, not their scale."""
    rows = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(seed))
    return rows * (tokens.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True))


def variants(args):
    """{name: (tokens, position, learn)}, in table order."""
    tokens, position = read_embeddings(args.standin)
    table = {"standin": (tokens, position, False), "learnable": (tokens, position, True),
             "random": (random_like(tokens, args.seed), position, False)}
    for spec in args.candidate:
        name, _, path = spec.partition("=")
        if not path or name in table:
            raise UsageError(f"--candidate wants a new NAME=PATH, got {spec!r}")
        table[name] = read_embeddings(path) + (False,)
    wanted = args.variants.split(",") if args.variants else list(table)
    unknown = [name for name in wanted if name not in table]
    if unknown:
        raise UsageError(f"unknown --variants {', '.join(unknown)}: choose from {', '.join(table)}")
    return {name: table[name] for name in wanted}


def build_model(kind, tokens, position, learn, seq_len, seed):
    """One layer of `kind`, built through the registry as runs build it; the nll module of its forward."""
    torch.manual_seed(seed)  # same non-embedding initial weights for every variant
    model = model_spec(kind).build(Arguments(layers=1, learn_embeddings=learn), tokens.clone(),
                                   position[:seq_len].clone())
    return TokenNLL(model)


def batches(data, count):
    """The first `count` batches of `data`, epoch after epoch if needed."""
    def epoch(number):
        data.set_epoch(number)
        return iter(data)

    return itertools.islice(itertools.chain.from_iterable(map(epoch, itertools.count())), count)


def train(model, train_data, args, name):
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    losses, start = [], time.perf_counter()
    for step, batch in enumerate(batches(train_data, args.steps), 1):
        loss = course_loss(model(batch["source"], batch["target"]), batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(round(loss.item(), 4))
        if step % args.log_every == 0 or step == args.steps:
            print(f"  [{name}] step {step}/{args.steps} loss {losses[-1]:.3f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return losses, time.perf_counter() - start


@torch.no_grad()
def validation_nll(model, valid_batch):
    """(sum of NLL, number of real targets) over the fixed validation batch."""
    model.eval()
    total, mask = 0.0, valid_batch["mask"]
    for rows in range(0, mask.shape[0], 16):  # 16 items at a time bounds the activations
        part = {k: valid_batch[k][rows : rows + 16] for k in ("source", "target", "mask")}
        total += float((model(part["source"], part["target"]).double() * part["mask"]).sum())
    return total, int(mask.sum())


def unigram_perplexity(data_folder, valid_batch, vocabulary_size):
    """exp(mean NLL) of add-0.1 train-split unigram counts on the same validation targets."""
    tokens, _ = load_split(data_folder, "train")
    nll = unigram_nll(torch.from_numpy(tokens.astype(np.int64)), vocabulary_size)
    return math.exp(nll[valid_batch["target"][valid_batch["mask"] > 0]].mean())


def describe(path):
    made = describe_embeddings(path)
    return {k: made.get(k) for k in ("path", "sha256", "kind", "method", "seed", "scale")}


def run_all(args, table, train_data, valid_batch):
    runs = {}
    for kind in args.models.split(","):
        for name, (tokens, position, learn) in table.items():
            print(f"{kind} / {name}", flush=True)
            model = build_model(kind, tokens, position, learn, args.seq_len, args.seed)
            losses, seconds = train(model, train_data, args, f"{kind}/{name}")
            total, targets = validation_nll(model, valid_batch)
            runs.setdefault(kind, {})[name] = {
                "valid_perplexity": math.exp(total / targets), "valid_targets": targets,
                "train_seconds": round(seconds, 1), "train_loss_last20": float(np.mean(losses[-20:])),
                "train_losses": losses}
            print(f"  valid ppl {runs[kind][name]['valid_perplexity']:.1f}", flush=True)
    return runs


def format_table(runs, unigram):
    """Markdown: one row per variant, perplexity and its ratio to the learnable embeddings per model."""
    names = list(next(iter(runs.values())))
    lines = ["| embeddings | " + " | ".join(f"{display_name(kind)} ppl | / learnable" for kind in runs) + " |",
             "|---|" + "---:|---:|" * len(runs),
             "| unigram (add-0.1 train counts) | " + " | ".join(f"{perplexity_text(unigram)} | " for _ in runs) + " |"]
    for name in names:
        cells = []
        for by_name in runs.values():
            ppl, learn = by_name[name]["valid_perplexity"], by_name.get("learnable", {}).get("valid_perplexity")
            cells.append(f"{perplexity_text(ppl)} | " + (f"{ppl / learn:.2f}" if learn else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def acceptance(runs, unigram, factor=1.5):
    """Issue 14's bar for each frozen variant: below the unigram AND within `factor` x the learnable
    embeddings' perplexity, for every model."""
    verdicts, lines = {}, []
    for kind, by_name in runs.items():
        learn = by_name.get("learnable", {}).get("valid_perplexity")
        for name, run in by_name.items():
            if name == "learnable" or learn is None:
                continue
            ppl = run["valid_perplexity"]
            ok = ppl < unigram and ppl <= factor * learn
            verdicts.setdefault(name, {})[kind] = {"below_unigram": ppl < unigram, "ratio_to_learnable": ppl / learn,
                                                   "passes": ok}
            lines.append(f"{kind}/{name}: {perplexity_text(ppl)} vs unigram {perplexity_text(unigram)} and {factor} x "
                         f"learnable {perplexity_text(factor * learn)}: {'PASS' if ok else 'fail'}")
    return {"factor": factor, "by_variant": verdicts, "lines": lines}


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        for kind in args.models.split(","):
            model_spec(kind)  # KeyError naming the choices
        table = variants(args)
    except (UsageError, EmbeddingsError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    train_data = TensorBatches(Wikitext2(args.data_folder, "train", max_length=args.seq_len), args.batch_size,
                               shuffle=True, seed=args.seed)
    valid = Wikitext2(args.data_folder, "validation", max_length=args.seq_len)
    valid_batch = next(iter(TensorBatches(valid, min(args.eval_items, len(valid)))))
    unigram = unigram_perplexity(args.data_folder, valid_batch, next(iter(table.values()))[0].shape[0])
    print(f"unigram (add-0.1, train counts) on {int(valid_batch['mask'].sum())} validation targets: {unigram:.1f}")
    start = time.perf_counter()
    runs = run_all(args, table, train_data, valid_batch)
    print(format_table(runs, unigram))
    sources = {"standin": args.standin, **dict(spec.partition("=")[::2] for spec in args.candidate)}
    result = {"args": vars(args), "threads": torch.get_num_threads(),
              "minutes": round((time.perf_counter() - start) / 60, 1), "unigram_perplexity": unigram,
              "embeddings": {k: describe(v) for k, v in sources.items()}, "runs": runs,
              "acceptance": acceptance(runs, unigram)}
    for line in result["acceptance"]["lines"]:
        print(line)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
