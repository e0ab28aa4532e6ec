"""The numbers the assignment asks for, computed from RunRecords by pure functions."""
import math
from statistics import mean

from utils.models.registry import display_name
from utils.report.read import as_float


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def run_name(run):
    """The configuration number, with the folder when it differs ("3 [old3]"); a custom run's folder."""
    if run.config is None:
        return run.exp_id
    return str(run.config) if run.exp_id == str(run.config) else f"{run.config} [{run.exp_id}]"


def run_label(run):
    """Legend/table name, e.g. "3: LSTM x1, sgd" or "3 [old3]: LSTM x1, sgd"."""
    args = run.args
    name = display_name(args.get("model"))
    return f"{run_name(run)}: {name} x{args.get('layers')}, {args.get('optimizer')}"


def best_epoch(epochs):
    """The epoch record with the lowest finite validation perplexity (earliest on ties), or None."""
    candidates = [e for e in epochs if finite(e["valid_ppl"])]
    return min(candidates, key=lambda e: (e["valid_ppl"], e["epoch"])) if candidates else None


def peak_memory(epochs):
    """Largest per-epoch peak in MB; NaN when logged as null (CPU); None when never logged."""
    values = [e["peak_memory_mb"] for e in epochs if "peak_memory_mb" in e]
    if not values:
        return None
    measured = [x for x in map(as_float, values) if finite(x)]
    return max(measured) if measured else math.nan


def summarise(run):
    """One results-table row (a dict keyed by CSV_KEYS) for a run."""
    best = best_epoch(run.epochs)
    seconds = [e["train_seconds"] for e in run.epochs if finite(e["train_seconds"])]
    args = run.args
    row = {
        "exp_id": run.exp_id,
        "config": run.config,
        "run": run_name(run),
        "label": run_label(run),
        "model": display_name(args.get("model")),
        "layers": args.get("layers"),
        "optimizer": args.get("optimizer"),
        "params_learnable": run.provenance.get("params_learnable"),
        "params_frozen": run.provenance.get("params_frozen"),
        "best_valid_ppl": best["valid_ppl"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "train_ppl_at_best": best["train_ppl"] if best else None,
        "test_ppl": run.test.get("ppl"),
        "train_time_s": sum(seconds) if seconds else None,
        "time_per_epoch_s": mean(seconds) if seconds else None,
        "peak_memory_mb": peak_memory(run.epochs),
        "steady_memory_mb": run.steady_memory_mb,
        "status": run.status + (" (smoke)" if is_smoke(args) else ""),
        "epochs_logged": len(run.epochs),
    }
    row["not_counted_why"] = exclusion_reason(run, row) or ""
    row["counted"] = not row["not_counted_why"]
    return row


def is_smoke(args):
    return bool(args.get("smoke")) or args.get("max_batches") not in (None, 0)


def exclusion_reason(run, row):
    """Why a run does not take part in the answers (fastest, best, averages); None if it does.
    Only finished runs are compared: a partial run would look fast, a diverged one has no fair ppl."""
    if run.status != "completed":
        if run.status == "running":
            return f"running ({len(run.epochs)} of {run.args.get('epochs')} epochs)"
        return run.status + (f": {run.status_message}" if run.status_message else "")
    if not finite(row["best_valid_ppl"]):
        return "no finite validation perplexity"
    if row["train_time_s"] is None:
        return "no training time logged"
    return None


def mark_duplicates(rows):
    """Keep one run per configuration in the answers, so a rerun does not weigh twice in an average:
    the run in the folder named after the configuration, else the first folder."""
    chosen = {}
    for row in rows:
        if row["counted"] and row["config"] is not None:
            best = chosen.get(row["config"])
            if best is None or (row["exp_id"] == str(row["config"]) and best["exp_id"] != str(best["config"])):
                chosen[row["config"]] = row
    for row in rows:
        keep = chosen.get(row["config"])
        if row["counted"] and keep is not None and keep is not row:
            row["counted"] = False
            row["not_counted_why"] = f"another run of configuration {row['config']} ({keep['exp_id']}) is used"
    return rows


def fastest(rows):
    """(row, how) for the fastest counted run by training wall-clock. Runs with different epoch counts
    are compared per epoch, since total time would favour the shorter budget."""
    rows = [r for r in rows if r["counted"]]
    if not rows:
        return None, None
    if len({r["epochs_logged"] for r in rows}) == 1:
        return min(rows, key=lambda r: r["train_time_s"]), "total training time"
    return min(rows, key=lambda r: r["time_per_epoch_s"]), "training time per epoch (runs differ in epochs)"


def best_generalising(rows):
    """The counted run with the lowest best validation perplexity, or None."""
    rows = [r for r in rows if r["counted"]]
    return min(rows, key=lambda r: r["best_valid_ppl"]) if rows else None


def averages(rows, key, where=lambda row: True):
    """Per value of rows[key] (e.g. "optimizer"): n, members, mean time, mean time/epoch, mean best val ppl."""
    groups = {}
    for row in rows:
        if row["counted"] and where(row):
            groups.setdefault(row[key], []).append(row)
    return [
        {
            key: value,
            "n": len(members),
            "members": [m["config"] if m["config"] is not None else m["exp_id"] for m in members],
            "mean_train_time_s": mean(m["train_time_s"] for m in members),
            "mean_time_per_epoch_s": mean(m["time_per_epoch_s"] for m in members),
            "mean_best_valid_ppl": mean(m["best_valid_ppl"] for m in members),
            # Perplexities spread over decades: the geometric mean (exp of the mean loss) is not
            # dominated by one bad optimizer the way the arithmetic mean is.
            "geomean_best_valid_ppl": math.exp(mean(math.log(m["best_valid_ppl"]) for m in members)),
        }
        for value, members in groups.items()
    ]


def one_layer(row):
    """The optimizer comparison holds depth fixed (configurations 1-8); deeper runs would bias AdamW."""
    return row["layers"] == 1


def answers(rows):
    """The assignment's questions, answered from the counted runs (see exclusion_reason)."""
    quickest, how = fastest(rows)
    return {
        "fastest": quickest,
        "fastest_by": how,
        "best": best_generalising(rows),
        "per_optimizer": averages(rows, "optimizer", one_layer),
        "per_architecture": averages(rows, "model"),
    }
