"""Run arguments: the notebook's `Arguments` fields plus optional extras, one reusable parser,
and the checks that turn bad input into one clear line before anything is written."""
import argparse
import os
from dataclasses import dataclass, fields
from typing import Optional

from utils.configs import CONFIGS, MODELS, OPTIMIZERS

SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The smoke preset: both models end to end on real data in well under a minute on 2 CPU cores.
SMOKE = dict(epochs=2, batch_size=4, max_batches=2)


class UsageError(ValueError):
    """Bad input; its message is one line that says what to do."""


@dataclass
class Arguments:
    # Data
    data_folder: str = "./data"  # folder with wiki.{train,validation,test}.npz
    batch_size: int = 16  # sequences per step (each max_length = 256 tokens)

    # Model
    model: str = "lstm"  # lstm or gpt1
    embeddings: str = "./data/embeddings.npz"  # GPT-1 embeddings, or one built by utils.build_embeddings
    layers: int = 1  # LSTM layers or Transformer blocks

    # Optimization
    optimizer: str = "adamw"  # sgd, momentum, adam or adamw
    epochs: int = 10  # passes over the training split
    lr: float = 1e-3  # learning rate
    momentum: float = 0.9  # for the momentum optimizer
    weight_decay: float = 5e-4  # for adamw, sgd and momentum (the course gives adam none)

    # Experiment
    exp_id: str = "debug"  # run name: logs go to log_dir/exp_id
    log: bool = True  # write logs and checkpoints
    log_dir: str = "./logs"  # where run folders go
    seed: int = 42  # seeds python, numpy, torch and the batch order

    # Miscellaneous
    num_workers: int = 2  # DataLoader workers (only when data is not held in memory)
    device: str = "cuda"  # cuda falls back to cpu, with a notice, where there is no GPU
    progress_bar: bool = False  # a tqdm bar per epoch instead of --print_every lines
    print_every: int = 10  # steps between progress lines

    # Extras (all optional, so the course notebook's dataclass keeps working)
    config: Optional[int] = None  # the study's configuration number 1..12, if any
    max_batches: Optional[int] = None  # cap on batches per split per epoch, so a CPU can finish
    smoke: bool = False  # the smoke preset (SMOKE above) on top of the other fields
    precision: str = "auto"  # auto, fp32, bf16 or fp16 (fp16 uses a gradient scaler)
    resume: bool = False  # continue log_dir/exp_id from its last complete epoch
    force: bool = False  # overwrite a completed run of the same exp_id
    compile: bool = False  # torch.compile the model (measured: see README)
    vocab_folder: Optional[str] = None  # GPT-1 BPE files, for word-level perplexity


def get(args, name):
    """A field of `args`, or its default: the notebook's own dataclass lacks the extras."""
    return getattr(args, name, getattr(Arguments, name, None))


def with_smoke(args):
    """Apply the smoke preset in place when args.smoke is set."""
    if get(args, "smoke"):
        for key, value in SMOKE.items():
            setattr(args, key, value)
    return args


def validate(args):
    """Raise UsageError for input that cannot work; touches no file."""
    if args.model not in MODELS:
        raise UsageError(f"Unknown model {args.model!r}: use --model {' or '.join(MODELS)}.")
    if args.optimizer not in OPTIMIZERS:
        raise UsageError(f"Unknown optimizer {args.optimizer!r}: use --optimizer {', '.join(OPTIMIZERS)}.")
    for name in ("batch_size", "epochs", "layers"):
        if int(getattr(args, name)) < 1:
            raise UsageError(f"--{name} must be >= 1 (got {getattr(args, name)}).")
    if get(args, "max_batches") is not None and int(get(args, "max_batches")) < 1:
        raise UsageError(f"--max_batches must be >= 1 (got {get(args, 'max_batches')}).")
    if get(args, "precision") not in PRECISIONS:
        raise UsageError(f"Unknown precision {get(args, 'precision')!r}: use {', '.join(PRECISIONS)}.")
    if get(args, "config") is not None and get(args, "config") not in CONFIGS:
        raise UsageError(f"Unknown configuration {get(args, 'config')}: choose from 1-12.")


def resolve_data_folder(folder):
    """`folder` if it holds the splits; else the project's shared copy (with a notice) when
    `folder` is the course default; else a one-line error naming what is missing."""
    if os.path.isfile(os.path.join(folder, "wiki.train.npz")):
        return folder
    shared = os.path.normpath(os.path.join(SHARED_DATA, "wikitext2"))
    if os.path.normpath(folder) == os.path.normpath(Arguments.data_folder) and os.path.isfile(
        os.path.join(shared, "wiki.train.npz")
    ):
        print(f"Note: {folder} has no wiki.train.npz; using the shared copy in {shared}.")
        return shared
    raise UsageError(
        f"Missing data file {os.path.join(folder, 'wiki.train.npz')}: pass --data_folder pointing to the "
        f"course's Wikitext-2 .npz files (here: ../shared/data/wikitext2)."
    )


def build_parser():
    """Every field of Arguments as a flag with the same name and default, plus --config."""
    parser = argparse.ArgumentParser(description="Train an LSTM or MiniGPT1 on Wikitext-2 (IFT6135 A2).")
    for field in fields(Arguments):
        flag, default = f"--{field.name}", field.default
        if field.type is bool or isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=default)
        elif field.name == "config":
            parser.add_argument(flag, type=str, default=None, help="N, a list like 1,3,5-8, or all")
        elif field.name == "max_batches":
            parser.add_argument(flag, type=int, default=None)
        elif field.name == "vocab_folder":
            parser.add_argument(flag, type=str, default=None)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    parser.add_argument("--no_log", dest="log", action="store_false", help="write no logs or checkpoints")
    return parser
