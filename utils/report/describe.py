"""What a run was, in words: its name, seed, arm (course or tuned lr), the optimizer settings it
used, its embeddings, its device, and whether it was a smoke run. Read from args.json and
provenance.json only; every figure, table and the console use these same phrases."""
import os

from utils.models.registry import display_name
from utils.report.fmt import finite, lr_text
from utils.train.optim import OPTIMIZERS

# The course notebook's seed (run_exp.py's default too): old runs whose args.json has no seed used it.
COURSE_SEED = 42
COURSE, TUNED = "course", "tuned"
# Settings an optimizer may read, in display order, with their short names; which ones a run shows
# comes from OPTIMIZERS[name].uses, so SGD never shows a momentum it ignored.
HYPER_PARAMS = (("lr", "lr"), ("momentum", "momentum"), ("weight_decay", "wd"))
# MiniGPT1's first epoch with embeddings that do not foresee its LayerNorm (the ppmi-svd stand-in, for
# one): its post-LayerNorm features (norm ~27.7) meet the tied embedding rows, so the current token
# gets a huge logit and the loss starts at 52-64 nats/token. An epoch-1 loss above this many nats is
# that start, not a property of the model worth reading. With the next-token-svd stand-in MiniGPT1
# starts near 10 nats/token on Wikitext-2, below this threshold, so the note does not show.
ASTRONOMICAL_LOSS = 20.0
EPOCH1_NOTE = ("MiniGPT1's epoch-1 numbers are astronomically high with these embeddings: its post-LayerNorm "
               "features (norm ~27.7) meet the tied embedding rows, so the current token gets a huge logit "
               "and training starts at 52-64 nats/token. That first-epoch perplexity says nothing about "
               "the model; read the later epochs.")

STANDIN_PREFIX = "offline stand-in embeddings"
STANDIN_COST = ("The offline stand-in is not GPT-1's pretrained table: perplexities rest on it. What it costs "
                "against learnable embeddings at a fixed budget is measured by bench/embeddings_quality.py "
                "(README, section Embeddings).")


def is_smoke(args):
    return bool(args.get("smoke")) or args.get("max_batches") not in (None, 0)


def run_seed(args):
    """The run's seed; COURSE_SEED for old runs that did not record one."""
    seed = args.get("seed")
    return COURSE_SEED if seed is None else seed


def run_arm(args):
    """TUNED when the lr came from a learning-rate search (args lr_from set), else COURSE: only
    lr_from decides, so a run at the course's settings is never called tuned."""
    return TUNED if args.get("lr_from") else COURSE


def run_name(run):
    """The configuration number, with the folder when it differs ("3 [3-seed1]"); a custom run's folder."""
    if run.config is None:
        return run.exp_id
    return str(run.config) if run.exp_id == str(run.config) else f"{run.config} [{run.exp_id}]"


def config_text(args):
    """E.g. "LSTM x1, sgd"."""
    return f"{display_name(args.get('model'))} x{args.get('layers')}, {args.get('optimizer')}"


def run_label(run):
    """Legend/table name, e.g. "3: LSTM x1, sgd", "3 [3-seed1]: LSTM x1, sgd" or, at an lr the
    search chose, "3 [3-tuned]: LSTM x1, sgd, tuned lr 0.3"."""
    tuned = f", tuned lr {lr_text(run.args.get('lr'))}" if run_arm(run.args) == TUNED else ""
    return f"{run_name(run)}: {config_text(run.args)}{tuned}"


def used_settings(args):
    """[(short name, value)] of the optimizer settings this run's optimizer reads."""
    spec = OPTIMIZERS.get(args.get("optimizer"))
    uses = spec.uses if spec else tuple(key for key, _ in HYPER_PARAMS)
    return [(short, args.get(key)) for key, short in HYPER_PARAMS if key in uses and key in args]


def settings_text(args):
    """E.g. "lr=1e-3, momentum=0.9, wd=5e-4" (momentum only for the optimizer that uses it)."""
    return ", ".join(f"{name}={lr_text(value) if finite(value) else value}" for name, value in used_settings(args))


def embeddings_record(run):
    value = run.provenance.get("embeddings")
    return value if isinstance(value, dict) else None


def embeddings_text(run, long=False):
    """Which embeddings the run's perplexities rest on: the GPT-1 file, or the offline stand-in
    and how it was made (`long` adds the method). Old runs recorded nothing."""
    record = embeddings_record(run)
    if record is None:
        return "embeddings not recorded (old run)"
    kind = record.get("kind")
    if not kind:  # recorded before runs described their embeddings: only the file is known
        return f"embeddings of unrecorded kind ({os.path.basename(str(record.get('path') or '?'))})"
    kind = str(kind)
    if kind.startswith("unknown"):
        # The stand-in builder always writes a sidecar; a file without one is GPT-1's (or the user's own).
        return f"GPT-1 pretrained embeddings, presumably ({os.path.basename(str(record.get('path') or '?'))}: no sidecar)"
    text = f"{STANDIN_PREFIX} ({kind})"
    if long and record.get("method"):
        text += f": {record['method']}"
    return text


def embeddings_sha(run):
    record = embeddings_record(run)
    return record.get("sha256") if record else None


def device_text(run):
    """The CPU or GPU model, with the data-parallel world size when more than one process ran."""
    p = run.provenance
    name = p.get("device_name") or p.get("device") or run.args.get("device")
    if not name:
        return None
    dist = p.get("distributed") if isinstance(p.get("distributed"), dict) else {}
    world = dist.get("world_size") or 1
    if isinstance(world, int) and world > 1:
        name += f" ×{world} data-parallel" + (f" ({dist['backend']})" if dist.get("backend") else "")
    return name


def smoke_text(args):
    """The warning a smoke run carries wherever its numbers appear."""
    budget = [f"{args[k]} {what}" for k, what in (("epochs", "epoch(s)"), ("max_batches", "batches/epoch"))
              if args.get(k)]
    return "SMOKE RUN" + (f" ({', '.join(budget)})" if budget else "") + ": numbers only show the pipeline works"


def astronomical_start(run, keys=("train_loss", "valid_loss")):
    """True for a MiniGPT1 run whose logged epoch 1 shows the huge initial loss (see EPOCH1_NOTE)."""
    if run.args.get("model") != "gpt1":
        return False
    first = next((e for e in run.epochs if e.get("epoch") == 1), None)
    return first is not None and any(finite(first.get(k)) and first[k] > ASTRONOMICAL_LOSS for k in keys)
