"""A run's settings: the course notebook's `Arguments` fields plus optional extras, as plain data
(never runtime objects). Each field's help text is what `python run_exp.py --help` prints."""
import dataclasses
import importlib.util
import math
import os
from dataclasses import dataclass, field
from typing import Optional

from utils.errors import UsageError  # noqa: F401 (the engine's modules import it from here)
from utils.models.registry import MODELS
from utils.train.optim import OPTIMIZERS, users_of

# The smoke preset (well under a minute on 2 CPU cores) fills only the fields left at their defaults.
SMOKE = dict(epochs=2, batch_size=4, max_batches=2)
LR_SCHEDULES = ("constant", "cosine")  # utils.train.optim.scheduled_lr
INITS = ("course", "stable")  # utils.models.registry's builders
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # utils.train.precision resolves them; named here so parsing needs no torch
SMOKE_LOG_DIR = "./logs_smoke"  # where smoke runs go unless --log_dir is given: never beside full runs


def _arg(default, help, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Arguments:
    # Data
    data_folder: str = _arg("./data", "folder with wiki.{train,validation,test}.npz (the project's data/ has Wikitext-2)")
    batch_size: int = _arg(16, "sequences of 256 tokens per step (the global batch, however many processes)")

    # Model
    model: str = _arg("lstm", "model to train", MODELS)  # the registry itself: a new entry is a new choice
    embeddings: str = _arg("./data/embeddings.npz", "GPT-1 embeddings.npz, or the stand-in from utils.build_embeddings")
    layers: int = _arg(1, "LSTM layers or Transformer blocks")
    dropout: float = _arg(0.0, "dropout probability in both models (0: none, the course's)")
    init: str = _arg("course", "initial weights: course (the course constructors' own, the study's) or stable (the "
                               "kit's starts: LSTM.start_orthogonal, MiniGPT1.start_uniform; for deep models that stall)",
                     INITS)

    # Optimization
    optimizer: str = _arg("adamw", "optimizer", OPTIMIZERS)
    epochs: int = _arg(10, "passes over the training split")
    lr: float = _arg(1e-3, "learning rate")
    momentum: float = _arg(0.9, f"momentum (read by --optimizer {' or '.join(users_of('momentum'))} only)")
    weight_decay: float = _arg(5e-4, f"weight decay (read by --optimizer "
                                       f"{' or '.join(users_of('weight_decay'))} only)")
    grad_clip: Optional[float] = _arg(None, "clip the gradients' global norm to this (none or 0: no clipping, the "
                                            "course's)")
    lr_schedule: str = _arg("constant", "learning rate over the run: constant (the course's) or cosine (to 0 at the "
                                        "last step)", LR_SCHEDULES)
    warmup_steps: int = _arg(0, "steps of linear warmup from 0 to --lr before the schedule")

    # Experiment
    exp_id: str = _arg("debug", "run name: the run's folder is log_dir/exp_id")
    log: bool = _arg(True, "write logs and checkpoints (--no_log: write nothing)")
    log_dir: str = _arg("./logs", f"folder of run folders ({SMOKE_LOG_DIR} for smoke runs unless given)")
    seed: int = _arg(42, "seeds python, numpy, torch and the batch order")

    # Miscellaneous
    num_workers: int = _arg(2, "accepted for the course notebook; batches are held in memory, so unused")
    device: str = _arg("cuda", "cpu, cuda or cuda:N; cuda falls back to the CPU, with a notice, where there is none")
    progress_bar: bool = _arg(False, "a tqdm bar per split instead of progress lines")
    print_every: int = _arg(10, "steps between progress lines")
    tensorboard: bool = _arg(False, "also write TensorBoard event files of each epoch's metrics in the run's folder "
                                    "(%%tensorboard --logdir LOG_DIR; needs the tensorboard package)")

    # Extras (all optional, so the course notebook's own dataclass keeps working)
    config: Optional[int] = _arg(None, "the study's configuration number 1..12 (set by --config)")
    max_batches: Optional[int] = _arg(None, "cap on batches per split per epoch, so a CPU can finish")
    smoke: bool = _arg(False, f"smoke preset {SMOKE} for fields left at their defaults; logs in {SMOKE_LOG_DIR}")
    precision: str = _arg("auto", "auto: bf16 on GPUs of compute capability 8.0+ (A100, L4, H100) and on CPUs with "
                                  "native bf16; fp16 with a gradient scaler on older GPUs (T4); else fp32", PRECISIONS)
    force: bool = _arg(False, "start the run over (also a completed one): the files the kit wrote in its folder are "
                              "deleted, anything else there is kept")
    compile: bool = _arg(False, "torch.compile the model's features (slower on CPUs; try it on a GPU)")
    vocab_folder: Optional[str] = _arg(None, "GPT-1 BPE folder, for word-level perplexity (default: data/gpt1_bpe)")
    learn_embeddings: bool = _arg(False, "train the token and position embeddings too (the study freezes them)")
    checkpoint_every: int = _arg(0, "also checkpoint every N training steps (0: at the end of each epoch only)")
    lr_from: Optional[str] = _arg(None, "the learning-rate search record this lr was chosen by (none: the course's lr)")


DEFAULTS = {f.name: f.default for f in dataclasses.fields(Arguments)}


def from_any(args):
    """A fresh Arguments from any dataclass, namespace or dict: known fields copied, missing ones defaults."""
    if dataclasses.is_dataclass(args):
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    else:
        values = dict(args) if isinstance(args, dict) else dict(vars(args))
    return Arguments(**{k: v for k, v in values.items() if k in DEFAULTS})


def apply_smoke(settings, explicit=()):
    """The smoke preset on the fields neither in `explicit` nor changed from their defaults, once:
    open_run applies it to every run, and a second pass would undo an explicit --epochs 10 --smoke."""
    if not settings.smoke or getattr(settings, "smoke_applied", False):
        return settings
    changes = {k: v for k, v in SMOKE.items() if k not in explicit and getattr(settings, k) == DEFAULTS[k]}
    if "log_dir" not in explicit and os.path.normpath(settings.log_dir) == os.path.normpath(DEFAULTS["log_dir"]):
        changes["log_dir"] = SMOKE_LOG_DIR
    settings = dataclasses.replace(settings, **changes)
    settings.smoke_applied = True  # an attribute, not a field: never in args.json, never identifying a run
    return settings


LR_LIMIT = 1e3  # above it lr x gradient overflows float32 in a step or two: never a learning rate
SEED_LIMIT = 2**32  # numpy's seeds are 32-bit


def check_exp_id(exp_id):
    """A run name is one folder name: never empty, a path, '.' or '..' (the kit would write, or delete, above it)."""
    name = str(exp_id)
    seps = [sep for sep in (os.sep, os.altsep, "\0") if sep]
    if not name.strip() or name in (".", "..") or any(sep in name for sep in seps):
        raise UsageError(f"--exp_id {exp_id!r} is not a run name: use a plain folder name such as 'lstm-adam' "
                         "(no '/', not empty, not '.' or '..').")


def _check_number(s, name, low, high=math.inf, ends="[)"):
    """UsageError unless --name is a finite number from low to high (`ends`: which of them are allowed)."""
    value = getattr(s, name)
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (low <= value if ends[0] == "[" else low < value)
    ok = ok and (value <= high if ends[1] == "]" else value < high)
    if not ok:
        raise UsageError(f"--{name} must be a number in {ends[0]}{low:g}, {high:g}{ends[1]} (got {value}).")


def validate(settings):
    """Raise UsageError for settings that cannot work; touches no file and no device."""
    s = settings
    for f in dataclasses.fields(Arguments):
        choices = f.metadata["choices"]
        if choices and getattr(s, f.name) not in choices:
            raise UsageError(f"Unknown --{f.name} {getattr(s, f.name)!r}: use {' or '.join(choices)}.")
    if s.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard, then rerun.")
    _check_number(s, "dropout", 0, 1)
    if s.grad_clip is not None:
        _check_number(s, "grad_clip", 0)
    counts = dict.fromkeys(("batch_size", "epochs", "layers", "print_every"), 1)
    counts.update(checkpoint_every=0, warmup_steps=0, **({} if s.max_batches is None else {"max_batches": 1}))
    for name, low in counts.items():
        if int(getattr(s, name)) < low:
            raise UsageError(f"--{name} must be >= {low} (got {getattr(s, name)}).")
    _check_number(s, "lr", 0, LR_LIMIT, "(]")
    _check_number(s, "momentum", 0, 1)
    _check_number(s, "weight_decay", 0)
    if not (isinstance(s.seed, int) and 0 <= s.seed < SEED_LIMIT):
        raise UsageError(f"--seed must be an integer in [0, {SEED_LIMIT - 1}] (got {s.seed}).")
    check_exp_id(s.exp_id)
    return settings


def check_used(optimizer, explicit, fix=None):
    """UsageError for a setting in `explicit` (typed flags, a configuration's overrides) that `optimizer`
    does not read: a typed --momentum is never silently ignored. fix: what to do instead of dropping it."""
    read_by_some = {name for spec in OPTIMIZERS.values() for name in spec.uses}
    unused = sorted(set(explicit) & read_by_some - set(OPTIMIZERS[optimizer].uses)) if optimizer in OPTIMIZERS else []
    if unused:  # (an unknown optimizer is validate()'s to name)
        users = users_of(unused[0])
        fix = fix or f"choose --optimizer {' or '.join(users)}"
        raise UsageError(f"--{unused[0]} is used by {'/'.join(users)} only, not {optimizer}: drop it or {fix}.")
