"""How numbers and runs read in tables, the console and figures. Perplexities run from ~100 to 1e22:
2 decimals where small, thousands separators up to SCI_FROM, then 1.23e22."""
import math
import os

from utils.models.registry import display_name
from utils.train.optim import OPTIMIZERS

SCI_FROM = 1e5
RAW_DIGITS = 4  # significant digits of a value with no unit of its own ("raw")
MISSING = "—"
COURSE, TUNED = "course", "tuned"
HYPER_PARAMS = (("lr", "lr"), ("momentum", "momentum"), ("weight_decay", "wd"))  # shown where the optimizer uses them
STANDIN_PREFIX = "offline stand-in embeddings"
STANDIN_COST = ("The offline stand-in is not GPT-1's pretrained table: perplexities rest on it. What it costs "
                "against learnable embeddings at a fixed budget is measured by bench/embeddings_quality.py "
                "(README, section Embeddings).")


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def ppl_text(x, latex=False, decimals=2):
    """125.00, 2,170, 1.23e22; inf and nan as words; MISSING for None."""
    if x is None or not finite(x):
        return MISSING if x is None else "nan" if x != x else ("inf" if x > 0 else "-inf")
    if abs(x) >= SCI_FROM:
        mantissa, exponent = f"{x:.2e}".split("e")
        return rf"${mantissa}\times10^{{{int(exponent)}}}$" if latex else f"{mantissa}e{int(exponent)}"
    return grouped(f"{x:,.0f}", latex) if abs(x) >= 1000 else f"{x:.{decimals}f}"


def lr_text(lr):
    """1e-3, 3e-4, 0.3, 1.5e-3; '?' when unknown."""
    if not finite(lr):
        return "?" if lr is None else str(lr)
    if lr == 0 or 1e-2 <= abs(lr) < 1e3:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def raw_text(x):
    """A number to RAW_DIGITS significant digits, 1.235e5 where large (a list, e.g. one per process, each)."""
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(map(raw_text, x)) + "]"
    if not finite(x):
        return str(x)
    mantissa, e, exponent = f"{x:.{RAW_DIGITS}g}".partition("e")
    return mantissa + (f"e{int(exponent)}" if e else "")


def grouped(text, latex=False):
    return text.replace(",", "{,}") if latex else text


FORMATS = {  # how a value of each schema format (EpochMetric.fmt / RunMetric.fmt) reads
    "ppl": lambda x, latex: ppl_text(x, latex),
    "loss": lambda x, latex: f"{x:.3f}",
    "seconds": lambda x, latex: grouped(f"{x:,.1f}", latex),
    "mb": lambda x, latex: grouped(f"{x:,.1f}", latex),
    "count": lambda x, latex: grouped(f"{x:,.0f}", latex),
    "rate": lambda x, latex: grouped(f"{x:,.0f}", latex),
    "lr": lambda x, latex: lr_text(x),
    "raw": lambda x, latex: raw_text(x),
}


def number_text(x, fmt, latex=False):
    if x is None or (fmt not in ("raw", "lr") and not finite(x)):
        return ppl_text(x)  # None, nan, inf as words
    return FORMATS[fmt](x, latex)


def lin_stat_text(stat, fmt="seconds", latex=False):
    """A compute.describe_linear summary: the mean and, with 2+ seeds, ± the 95% half-width."""
    half = stat["half_width"]
    return number_text(stat["mean"], fmt, latex) + ("" if half is None else (r" $\pm$ " if latex else " ± ")
                                                    + number_text(half, fmt, latex))


def stat_text(stat, fmt="ppl", latex=False):
    """A summary over seeds in its metric's format; a log-space one as geometric mean [lo, hi] (2+ seeds)."""
    if stat is None:
        return MISSING
    if "sd_log" not in stat:
        return lin_stat_text(stat, fmt, latex)
    if stat["lo"] is None:
        return number_text(stat["mean"], fmt, latex)
    decimals = 2 if finite(stat["mean"]) and abs(stat["mean"]) < 1000 else 0
    lo, hi = (ppl_text(stat[k], latex, decimals) if fmt == "ppl" else number_text(stat[k], fmt, latex)
              for k in ("lo", "hi"))
    return f"{number_text(stat['mean'], fmt, latex)} [{lo}, {hi}]"


def ratio_text(c):
    """A compute.paired_difference as '×0.87 [0.80, 0.95]' (log) or '-1.2 s [...]'."""
    if c["mean"] is None:
        return MISSING
    if c["log"]:
        return f"×{c['mean']:.3g}" + (f" [{c['lo']:.3g}, {c['hi']:.3g}]" if c["lo"] is not None else "")
    return f"{c['mean']:+.1f} s" + (f" [{c['lo']:+.1f}, {c['hi']:+.1f}]" if c["lo"] is not None else "")


def is_smoke(args):
    """Made with --smoke (args.json records it): a capped run of the user's own is not a smoke run."""
    return bool(args.get("smoke"))


def short_run(args):
    """"smoke" (the --smoke preset), "max_batches=N" (a run of N batches per split per epoch), else ""."""
    if is_smoke(args):
        return "smoke"
    return f"max_batches={args['max_batches']}" if args.get("max_batches") else ""


def short_meaning(mark):
    if mark == "smoke":
        return "the smoke preset's tiny budget, so the numbers only show that the pipeline works"
    cap = mark.split("=")[1]
    return f"training and validation each epoch, and the test, used only the first {cap} batches of each split"


def run_seed(args):
    return 42 if args.get("seed") is None else args["seed"]  # the course notebook's seed, which args.json lacks


def run_arm(args):
    """TUNED when the lr came from a learning-rate search (lr_from set): never decided by folder names."""
    return TUNED if args.get("lr_from") else COURSE


def config_text(args):
    return f"{display_name(args.get('model'))} x{args.get('layers')}, {args.get('optimizer')}"


def run_name(run):
    """"3", "3 [3-seed1]", or a custom run's folder."""
    if run.config is None:
        return run.exp_id
    return str(run.config) if run.exp_id == str(run.config) else f"{run.config} [{run.exp_id}]"


def run_label(run):
    tuned = f", tuned lr {lr_text(run.args.get('lr'))}" if run_arm(run.args) == TUNED else ""
    return f"{run_name(run)}: {config_text(run.args)}{tuned}"


def used_settings(args):
    """[(short name, value)] of the optimizer settings the run's optimizer reads."""
    spec = OPTIMIZERS.get(args.get("optimizer"))
    uses = spec.uses if spec else tuple(key for key, _ in HYPER_PARAMS)
    return [(short, args.get(key)) for key, short in HYPER_PARAMS if key in uses and key in args]


def settings_text(args):
    """E.g. "lr=1e-3, momentum=0.9, wd=5e-4"."""
    return ", ".join(f"{name}={lr_text(value) if finite(value) else value}" for name, value in used_settings(args))


def embeddings_record(run):
    value = run.provenance.get("embeddings")
    return value if isinstance(value, dict) else {}


def is_standin(run):
    """True for the kit's stand-ins (their builder records a kind), False for another file, None: not recorded."""
    record = embeddings_record(run)
    return None if not record else not str(record.get("kind") or "unknown").startswith("unknown")


def embeddings_text(run, long=False):
    record = embeddings_record(run)
    if not record:  # the course notebook's save_logs writes no provenance.json
        return "embeddings not recorded (no provenance.json)"
    if not is_standin(run):
        return f"GPT-1 pretrained embeddings, presumably ({os.path.basename(str(record.get('path')))}: no sidecar)"
    method = f": {record['method']}" if long and record.get("method") else ""
    return f"{STANDIN_PREFIX} ({record['kind']}){method}"


def device_text(run):
    """The CPU or GPU model, with the data-parallel world size when more than one process ran."""
    p = run.provenance
    name = p.get("device_name") or run.args.get("device")
    dist = p.get("distributed") if isinstance(p.get("distributed"), dict) else {}
    if name and isinstance(dist.get("world_size"), int) and dist["world_size"] > 1:
        name += f" ×{dist['world_size']} data-parallel" + (f" ({dist['backend']})" if dist.get("backend") else "")
    return name


def smoke_text(args):
    budget = [f"{args[k]} {what}" for k, what in (("epochs", "epoch(s)"), ("max_batches", "batches/split"))
              if args.get(k)]
    return "SMOKE RUN" + (f" ({', '.join(budget)})" if budget else "") + ": numbers only show the pipeline works"
