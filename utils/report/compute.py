"""The numbers the assignment asks for, computed from RunRecords and SeedGroups by pure functions.

Rows (summarise) are one per run; the answers (fastest, best generalising, per optimizer, per
architecture) are over SeedGroups (utils.report.aggregate), one per configuration and arm, and
say when the winner is not distinguishable at 95% from another configuration, by a paired t
interval over the seeds both ran (stats.paired_difference).
"""
import math
from statistics import mean

from utils.models.registry import MODELS, display_name
from utils.report.describe import COURSE, TUNED, is_smoke, run_arm, run_label, run_name, run_seed, used_settings
from utils.report.fmt import finite
from utils.report.read import as_float
from utils.report.stats import paired_difference
from utils.runs import schema


def best_epoch(epochs):
    """The epoch record with the lowest finite validation perplexity (earliest on ties), or None."""
    candidates = [e for e in epochs if finite(e["valid_ppl"])]
    return min(candidates, key=lambda e: (e["valid_ppl"], e["epoch"])) if candidates else None


def _finite_values(run, key):
    return [e[key] for e in run.epochs if key in e and finite(as_float(e[key]))]


def largest(run, key, _best):
    """Largest logged value (a memory peak); NaN when logged as null (CPU); None when never logged."""
    values = [e[key] for e in run.epochs if key in e]
    if not values:
        return None
    measured = [x for x in map(as_float, values) if finite(x)]
    return max(measured) if measured else math.nan


def final_value(run, key, _best):
    """A value written once at the end: a test metric, or the steady-state memory (NaN on a CPU)."""
    return run.steady_memory_mb if key == schema.STEADY_MEMORY else run.test.get(key)


# How a run's epochs give one number (schema.RunMetric.reduce); None: not logged.
REDUCERS = {
    "at_best": lambda run, key, best: best[key] if best else None,
    "sum": lambda run, key, _best: sum(_finite_values(run, key)) if _finite_values(run, key) else None,
    "mean": lambda run, key, _best: mean(_finite_values(run, key)) if _finite_values(run, key) else None,
    "max": largest,
    "final": final_value,
}


def summarise(run):
    """One results-table row (a dict keyed by tables.CSV_KEYS) for a run: its settings, then every
    schema.RUN_METRICS number."""
    best = best_epoch(run.epochs)
    args = run.args
    used = dict(used_settings(args))  # None where the optimizer ignores the setting: shown blank
    row = {
        "exp_id": run.exp_id, "path": run.path, "config": run.config, "run": run_name(run), "label": run_label(run),
        "model": display_name(args.get("model")), "layers": args.get("layers"), "optimizer": args.get("optimizer"),
        "seed": run_seed(args), "arm": run_arm(args), "lr": args.get("lr"),
        "momentum": used.get("momentum"), "weight_decay": used.get("wd"), "lr_from": args.get("lr_from"),
        "params_learnable": run.provenance.get("params_learnable"),
        "params_frozen": run.provenance.get("params_frozen"),
        "best_epoch": best["epoch"] if best else None,
        **{m.key: REDUCERS[m.reduce](run, m.source, best) for m in schema.RUN_METRICS},
        "status": run.status + (" (smoke)" if is_smoke(args) else ""),
        "smoke": is_smoke(args),
        "epochs_logged": len(run.epochs),
    }
    row["not_counted_why"] = exclusion_reason(run, row) or ""
    row["counted"] = not row["not_counted_why"]
    return row


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


def group_value(group, key):
    """A SeedGroup's model (display name), layers or optimizer."""
    model, layers, optimizer = group.what
    return {"model": display_name(model), "layers": layers, "optimizer": optimizer}[key]


def versus(winner, others, key, log):
    """[(group, paired comparison of winner against it)] for every other group."""
    return [(g, paired_difference(winner.values(key), g.values(key), log)) for g in others if g is not winner]


def fastest(groups):
    """(group, how, key) of the fastest counted group by mean training wall-clock. Groups with
    different epoch counts are compared per epoch, since total time would favour the shorter budget."""
    groups = [g for g in groups if g.n and g.stats["train_time_s"]]
    if not groups:
        return None, None, None
    if len({row["epochs_logged"] for g in groups for row in g.members.values()}) == 1:
        key, how = "train_time_s", "total training time"
    else:
        key, how = "time_per_epoch_s", "training time per epoch (runs differ in epochs)"
    return min(groups, key=lambda g: g.stats[key]["mean"]), how, key


def best_generalising(groups):
    """The counted group with the lowest geometric-mean best validation perplexity, or None."""
    groups = [g for g in groups if g.n]
    return min(groups, key=lambda g: g.stats["best_valid_ppl"]["mean"]) if groups else None


def averages(groups, key, where=lambda group: True):
    """Per value of `key` ("optimizer", "model", or a tuple of them such as ("model", "optimizer"):
    per optimizer within each model): its configurations and their mean time, mean time/epoch, mean
    and geometric mean best validation perplexity (each configuration's seeds first reduced to their
    mean, so a configuration with more seeds does not weigh more)."""
    keys = key if isinstance(key, tuple) else (key,)
    by_value = {}
    for g in groups:
        if g.n and where(g):
            by_value.setdefault(tuple(group_value(g, k) for k in keys), []).append(g)
    return [
        {
            **dict(zip(keys, value)),
            "n": len(members),
            "members": [g.config if g.config is not None else g.name for g in members],
            "seeds": sum(g.n for g in members),
            "mean_train_time_s": mean(g.stats["train_time_s"]["mean"] for g in members),
            "mean_time_per_epoch_s": mean(g.stats["time_per_epoch_s"]["mean"] for g in members),
            "mean_best_valid_ppl": mean(g.stats["best_valid_ppl"]["mean"] for g in members),
            # Perplexities spread over decades: the geometric mean (exp of the mean loss) is not
            # dominated by one bad optimizer the way the arithmetic mean is.
            "geomean_best_valid_ppl": math.exp(mean(math.log(g.stats["best_valid_ppl"]["mean"]) for g in members)),
        }
        for value, members in by_value.items()
    ]


def model_order(name):
    """Registry order of a model's display name (LSTM first); unknown models last."""
    names = [display_name(m) for m in MODELS]
    return names.index(name) if name in names else len(names)


def one_layer(group):
    """The optimizer comparison holds depth fixed (configurations 1-8); deeper runs would bias AdamW."""
    return group.what[1] == 1


def optimizer_rankings(groups):
    """Per model, its one-layer configurations by best validation perplexity, with the winner
    compared to each other optimizer over shared seeds."""
    out = []
    for model in dict.fromkeys(g.what[0] for g in groups if g.n and one_layer(g)):
        ranked = sorted((g for g in groups if g.n and one_layer(g) and g.what[0] == model),
                        key=lambda g: g.stats["best_valid_ppl"]["mean"])
        out.append({"model": display_name(model), "ranking": ranked,
                    "versus": versus(ranked[0], ranked, "best_valid_ppl", log=True)})
    return out


def architecture_pairs(groups):
    """LSTM vs MiniGPT1 at the same depth and optimizer: (lstm group, gpt1 group, gpt1/lstm ppl)."""
    counted = [g for g in groups if g.n]
    order = {name: i for i, name in enumerate(MODELS)}  # registry order: LSTM first, then MiniGPT1
    rank = lambda g: order.get(g.what[0], len(order))
    pairs = []
    for a in counted:
        for b in counted:
            same = a.what[1:] == b.what[1:] and (rank(a), a.what[0]) < (rank(b), b.what[0])  # each pair once
            if same:
                pairs.append((a, b, paired_difference(b.values("best_valid_ppl"), a.values("best_valid_ppl"), True)))
    return pairs


def arm_answers(groups):
    """The assignment's questions over one arm's groups (all course, or all tuned)."""
    quickest, how, key = fastest(groups)
    best = best_generalising(groups)
    counted = [g for g in groups if g.n]
    return {
        "fastest": quickest, "fastest_by": how, "fastest_key": key,
        "fastest_versus": versus(quickest, counted, key, log=False) if quickest else [],
        "best": best,
        "best_versus": versus(best, counted, "best_valid_ppl", log=True) if best else [],
        # Per optimizer within each model: pooling LSTM and MiniGPT1 would rank the optimizers by a
        # mix of two models' perplexities.
        "per_optimizer": sorted(averages(groups, ("model", "optimizer"), one_layer),
                                key=lambda e: (model_order(e["model"]), e["geomean_best_valid_ppl"])),
        "optimizer_rankings": optimizer_rankings(groups),
        "per_architecture": averages(groups, "model"),
        "architecture_pairs": architecture_pairs(groups),
        "one_seed": all(g.n <= 1 for g in counted),
    }


def answers(groups):
    """{"course": answers over the runs at the course's lr, "tuned": over runs at tuned lrs} (an
    arm with no group is None). The two are never mixed: a tuned lr is another experiment."""
    return {arm: (arm_answers([g for g in groups if g.arm == arm]) if any(g.arm == arm for g in groups) else None)
            for arm in (COURSE, TUNED)}
