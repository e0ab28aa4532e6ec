"""The first training steps of each configuration: the batch loss at steps 1 (the initial model), 10
and 100, the mean of the last 10 steps and the worst on the way, against the uniform and unigram
losses. A loss far above uniform (ln V) in the first steps means confidently wrong logits.

    python -m bench.first_steps [--configs all --steps 100 --batch_size 16 --seq_len 256 --course_init]

Each configuration is built as the engine builds it (course lr, seed 42, its shuffled training
order, cut to --seq_len), started as `--init stable` (--course_init: `--init course`, the default).
"""
import argparse
import math
import os
import sys
import time

STEPS_SHOWN = (1, 10, 100)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="all", help="configurations, e.g. 1,5,10-12 (default: all)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per configuration (default: 100)")
    parser.add_argument("--batch_size", type=int, default=16, help="sequences per step (default: 16)")
    parser.add_argument("--seq_len", type=int, default=256, help="tokens per sequence, at most 256 (default: 256)")
    parser.add_argument("--embeddings", default=os.path.join("data", "embeddings.npz"),
                        help="embeddings file (default: data/embeddings.npz, from quickstart.sh)")
    parser.add_argument("--data_folder", default=None, help="wiki.*.npz folder (default: the project's data/)")
    parser.add_argument("--course_init", action="store_true", help="the course constructors' initialisation")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def unigram_loss(train_tokens, batches, vocabulary_size):
    """The course loss of the add-0.1 training unigram on these batches: what a model that knows only
    token frequencies scores."""
    from bench.common import unigram_nll
    from utils.models.losses import course_loss

    nll = unigram_nll(train_tokens, vocabulary_size)
    return sum(float(course_loss(nll[b["target"]], b["mask"].double())) for b in batches) / len(batches)


def first_steps(number, tokens, position, batches, course_init=False):
    """{step: loss} for steps 1..len(batches) of configuration `number` (step 1: the initial model)."""
    from bench.common import loop_train
    from utils.models.base import TokenNLL
    from utils.models.registry import model_spec
    from utils.study.configs import CONFIGS
    from utils.torch_utils import seed_experiment
    from utils.train.optim import make_optimizer
    from utils.train.precision import Precision
    from utils.train.settings import Arguments

    cfg = CONFIGS[number]
    settings = Arguments(model=cfg.model, layers=cfg.layers, optimizer=cfg.optimizer,
                         init="course" if course_init else "stable")
    seed_experiment(settings.seed)
    model = model_spec(cfg.model).build(settings, tokens, position)
    optimizer = make_optimizer(settings, model)
    nll, precision = TokenNLL(model), Precision("fp32", "cpu")
    return {step: loop_train(nll, [batch], optimizer, precision).loss for step, batch in enumerate(batches, 1)}


def load_batches(data_folder, batch_size, seq_len, steps):
    from utils.data.batches import TensorBatches
    from utils.data.wikitext2 import Wikitext2

    train = Wikitext2(data_folder, "train")
    batches = []
    for batch in TensorBatches(train, batch_size, shuffle=True, seed=42):
        if len(batches) == steps:
            break
        batches.append({k: batch[k][:, :seq_len] for k in ("source", "target", "mask")})
    return train, batches


def main(argv=None):
    args = parse_args(argv)
    from utils.data import PROJECT_DATA
    from utils.data.embeddings import EmbeddingsError, read_embeddings
    from utils.study.configs import CONFIGS, parse_config_list

    try:
        numbers = parse_config_list(args.configs)
        tokens, position = read_embeddings(args.embeddings)
    except (ValueError, EmbeddingsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    train, batches = load_batches(args.data_folder or PROJECT_DATA, args.batch_size, args.seq_len, args.steps)
    uniform, unigram = math.log(tokens.shape[0]), unigram_loss(train.tokens, batches[:10], tokens.shape[0])
    shown = [s for s in STEPS_SHOWN if s <= len(batches)]
    print(f"uniform ln V = {uniform:.2f}, unigram (first 10 batches) = {unigram:.2f}; batch {args.batch_size} x "
          f"{args.seq_len} tokens, {len(batches)} steps, --init {'course' if args.course_init else 'stable'}")
    print(f"{'configuration':<24}" + "".join(f"{'step ' + str(s):>10}" for s in shown)
          + f"{'last 10':>10}{'worst':>10}{'seconds':>9}")
    results = {}
    for number in numbers:
        start = time.perf_counter()
        losses = first_steps(number, tokens, position, batches, args.course_init)
        seconds = time.perf_counter() - start
        results[number] = {"label": CONFIGS[number].label, "losses": losses, "seconds": seconds}
        last = list(losses.values())[-10:]
        print(f"{CONFIGS[number].label:<24}" + "".join(f"{losses[s]:>10.2f}" for s in shown)
              + f"{sum(last) / len(last):>10.2f}{max(losses.values()):>10.2f}{seconds:>9.0f}", flush=True)
    if args.out:
        from utils.runs.atomic import atomic_write_json

        atomic_write_json(args.out, {"args": vars(args), "uniform": uniform, "unigram": unigram, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
