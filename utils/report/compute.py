"""The report's numbers by pure functions. Runs group by configuration and arm (course or tuned lr);
runs whose identifying settings (the seed aside) and embeddings agree are seeds of one experiment; a
seed that did not complete is listed, never averaged."""
import math
from dataclasses import dataclass, field
from statistics import mean, stdev

from utils.models.registry import MODELS, display_name
from utils.report.fmt import COURSE, TUNED, config_text, embeddings_record, finite, is_smoke, is_standin, lr_text
from utils.report.fmt import run_arm, run_label, run_name, run_seed, short_run, used_settings
from utils.report.read import as_float
from utils.runs import schema
from utils.train.settings import DEFAULTS


# Student-t intervals over 2-5 seeds. Perplexities, times and memory spread multiplicatively: summarised
# in log space (geometric mean, an interval symmetric as a ratio, never below zero).
def t_quantile(dof):
    """The two-sided 95% Student-t critical value t_{0.975, dof}, dof >= 1."""
    from scipy.stats import t  # a dependency of the kit; imported here so importing the report stays light

    return float(t.ppf(0.975, dof))


def describe_linear(values):
    """{"n", "mean", "sd", "half_width", "lo", "hi"} of the finite values (spread None below two); or None."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    n, centre = len(values), mean(values)
    if n < 2:
        return {"n": 1, "mean": centre, "sd": None, "half_width": None, "lo": None, "hi": None}
    sd = stdev(values)
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": centre, "sd": sd, "half_width": half, "lo": centre - half, "hi": centre + half}


def describe_log(values):
    """The geometric "mean", "lo"/"hi" (exp of the t interval of the mean log), "factor" = hi / mean, "sd_log"."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    stats = describe_linear([math.log(v) for v in kept])
    if stats is None:
        return None
    spread = stats["half_width"] is not None
    centre = kept[0] if len(kept) == 1 else math.exp(stats["mean"])  # one value is exactly itself
    return {"n": stats["n"], "mean": centre, "sd_log": stats["sd"],
            "lo": math.exp(stats["lo"]) if spread else None, "hi": math.exp(stats["hi"]) if spread else None,
            "factor": math.exp(stats["half_width"]) if spread else None}


def paired_difference(a, b, log=False):
    """a - b (a / b when `log`) seed by seed over the seeds both have (a, b: seed -> value), so what a
    seed does to both cancels: {"seeds", "n", "log", "mean", "lo", "hi", "distinguishable", "why"};
    distinguishable is None below two shared seeds ("why" says so)."""
    ok = lambda v: v is not None and math.isfinite(v) and (v > 0 or not log)  # noqa: E731
    seeds = sorted(s for s in set(a) & set(b) if ok(a[s]) and ok(b[s]))
    f, back = (math.log, math.exp) if log else (float, float)
    stats = describe_linear([f(a[s]) - f(b[s]) for s in seeds])
    result = {"seeds": seeds, "n": len(seeds), "log": log, "mean": back(stats["mean"]) if stats else None,
              "lo": None, "hi": None, "distinguishable": None, "why": ""}
    if stats is None or stats["half_width"] is None:
        result["why"] = f"{len(seeds)} shared seed{'s' if len(seeds) != 1 else ''}: no interval can be computed " \
                        "(at least 2 are needed)"
        return result
    result.update(lo=back(stats["lo"]), hi=back(stats["hi"]), distinguishable=stats["lo"] > 0 or stats["hi"] < 0)
    return result


SHOWN = ("model", "layers", "optimizer", "seed", "lr", "momentum", "weight_decay")  # the tables' own columns
OVER_SEEDS = {"gmean": describe_log, "mean": describe_linear}  # schema.RunMetric.over_seeds
UNIFORM_NATS = math.log(40479)  # ln V for GPT-1's vocabulary: an untrained model that knows nothing
FAR_ABOVE_UNIFORM = 20.0  # nats/token at epoch 1: the tied output layer met huge features, not learning
STALL = 1.05  # validation perplexity within this factor over 3+ epochs: it never moved
AVERAGED = ("train_time_s", "time_per_epoch_s", "best_valid_ppl")  # averages(): the means of their seed means


def settings_differ(a, b):
    """Identifying settings (unrecorded: the default) and embeddings file two runs differ in, but the seed."""
    differ = [k for k in schema.differing(a.args, b.args, DEFAULTS) if k != "seed"]
    shas = embeddings_record(a).get("sha256"), embeddings_record(b).get("sha256")
    return differ + (["embeddings"] if None not in shas and shas[0] != shas[1] else [])


def varying_settings(arg_dicts):
    """Identifying settings (but SHOWN) whose value is not the same in every one of `arg_dicts`, first seen first."""
    keys = dict.fromkeys(k for args in arg_dicts for k in schema.identity(args) if k not in SHOWN)
    return [k for k in keys if len({repr(args.get(k, DEFAULTS.get(k))) for args in arg_dicts}) > 1]


def best_epoch(epochs):
    """The epoch with the lowest finite validation perplexity (earliest on ties), or None."""
    candidates = [e for e in epochs if finite(e.get("valid_ppl"))]
    return min(candidates, key=lambda e: (e["valid_ppl"], e["epoch"])) if candidates else None


def logged(run, key):
    """A per-epoch quantity's finite values; [] for a folder written before the quantity existed."""
    return [x for x in (as_float(e[key]) for e in run.epochs if key in e) if finite(x)]


# How a run's epochs give one number (schema.RunMetric.reduce); None: not logged by this folder.
REDUCERS = {
    "at_best": lambda run, key, best: as_float(best[key]) if best and key in best else None,
    "sum": lambda run, key, _best: sum(logged(run, key)) if logged(run, key) else None,
    "mean": lambda run, key, _best: mean(logged(run, key)) if logged(run, key) else None,
    "max": lambda run, key, _best: max(logged(run, key), default=math.nan) if any(key in e for e in run.epochs)
    else None,  # a peak: NaN when logged as null (CPU)
    "final": lambda run, key, _best: run.test.get(key),
}


def summarise(run):
    """One results row: the run's identity, settings, every schema.RUN_METRICS number and status."""
    best, args = best_epoch(run.epochs), run.args
    used = dict(used_settings(args))  # None where the optimizer ignores the setting: shown blank
    row = {
        "exp_id": run.exp_id, "path": run.path, "config": run.config, "run": run_name(run), "label": run_label(run),
        "model": display_name(args.get("model")), "layers": args.get("layers"), "optimizer": args.get("optimizer"),
        "seed": run_seed(args), "arm": run_arm(args), "lr": args.get("lr"), "momentum": used.get("momentum"),
        "weight_decay": used.get("wd"), "lr_from": args.get("lr_from"), "args": args,
        **{k: run.provenance.get(k) for k in ("params_learnable", "params_frozen")},
        "best_epoch": best["epoch"] if best else None,
        **{m.key: REDUCERS[m.reduce](run, m.source, best) for m in schema.RUN_METRICS},
        "status": run.status + (f" ({short_run(args)})" if short_run(args) else ""), "smoke": is_smoke(args),
        "epochs_logged": len(run.epochs),
    }
    row["not_counted_why"] = exclusion_reason(run, row) or ""
    row["counted"] = not row["not_counted_why"]
    return row


def exclusion_reason(run, row):
    """Why a run takes no part in the answers (only completed runs compare fairly); None if it does."""
    if run.status == "running":
        return f"running ({len(run.epochs)} of {run.args.get('epochs')} epochs)"
    if run.status != "completed":
        return run.status + (f": {run.status_message}" if run.status_message else "")
    if not finite(row["best_valid_ppl"]):
        return "no finite validation perplexity"
    return "no training time logged" if row["train_time_s"] is None else None


@dataclass
class SeedGroup:
    config: int | None
    arm: str  # COURSE or TUNED
    what: tuple  # (model, layers, optimizer)
    runs: list = field(default_factory=list)  # RunRecords (and stubs without epochs), report order
    rows: dict = field(default_factory=dict)  # exp_id -> results row, for runs with an epoch
    reference: object = None  # the run whose settings the seeds share
    members: dict = field(default_factory=dict)  # seed -> counted row, sorted by seed
    absent: list = field(default_factory=list)  # (seed, short reason) of seeds not averaged
    stats: dict = field(default_factory=dict)  # metric key -> stats.describe_* dict (or None)

    @property
    def name(self):
        if self.config is None:
            return self.reference.exp_id
        return schema.tuned_run_id(str(self.config)) if self.arm == TUNED else str(self.config)

    @property
    def label(self):
        args = self.reference.args
        return f"{self.name}: {config_text(args)}" + (f" (lr {lr_text(args.get('lr'))})" if self.arm == TUNED else "")

    @property
    def n(self):
        return len(self.members)

    @property
    def n_of(self):
        return len(self.members) + len(self.absent)

    def values(self, key):
        return {seed: row[key] for seed, row in self.members.items()}


def seed_order(seed):
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def what_of(run):
    return (run.args.get("model"), run.args.get("layers"), run.args.get("optimizer"))


def canonical_ids(group, seed):
    """The folders the sweep gives this configuration's run with `seed` ("3", "3-seed1", "3-tuned"...)."""
    if group.config is None:
        return ()
    ids = (str(group.config), schema.seed_run_id(str(group.config), seed))
    return tuple(schema.tuned_run_id(i) for i in ids) if group.arm == TUNED else ids


def choose_reference(group):
    """The run whose settings most runs share; ties go to the configuration's own folder, then the first."""
    base = canonical_ids(group, None)[:1]
    return min(enumerate(group.runs), key=lambda ir: (-sum(not settings_differ(ir[1], o) for o in group.runs),
                                                      ir[1].exp_id not in base, ir[0]))[1]


def pick_members(group):
    """Mark rows of other settings or duplicate seeds as not counted; fill members and absent."""
    ref, candidates = group.reference, {}
    for run in group.runs:
        row, differ = group.rows.get(run.exp_id), settings_differ(run, group.reference)
        if differ and row is not None and row["counted"]:
            row.update(counted=False, not_counted_why=f"made with other {', '.join(differ)} than {ref.exp_id}, "
                                                      "the run its configuration's seeds share")
        if not differ:
            candidates.setdefault(run_seed(run.args), []).append((run, row))
    for seed in sorted(candidates, key=seed_order):
        counted = [(run, row) for run, row in candidates[seed] if row is not None and row["counted"]]
        if not counted:
            run, row = candidates[seed][0]
            group.absent.append((seed, f"{run.status}, no completed epoch" if row is None else
                                 run.status if run.status != "completed" else row["not_counted_why"]))
            continue
        keep = min(counted, key=lambda rr: rr[0].exp_id not in canonical_ids(group, seed))[1]
        group.members[seed] = keep
        for _, row in counted:
            if row is not keep:
                row.update(counted=False, not_counted_why=f"another run of {group.name} with seed {seed} "
                                                          f"({keep['exp_id']}) is used")


def add_not_run(groups):
    """Seeds other configurations of the arm ran but this one did not are "not run" (custom runs aside)."""
    for arm in (COURSE, TUNED):
        same_arm = [g for g in groups if g.arm == arm and g.config is not None]
        seeds = set().union(*[set(g.members) | {s for s, _ in g.absent} for g in same_arm])
        for g in same_arm:
            g.absent += [(s, "not run") for s in seeds - set(g.members) - {s for s, _ in g.absent}]
            g.absent.sort(key=lambda seed_why: seed_order(seed_why[0]))


def shown_run(group):
    """The run standing for a group with no completed seed: the reference, else the first with an epoch."""
    return next((run for run in [group.reference, *group.runs] if run.exp_id in group.rows), group.reference)


def build_groups(runs, rows, stubs=()):
    """SeedGroups (report order) of runs (with their rows) and stubs; a group without an epoch is not kept."""
    groups, by_id = {}, {row["exp_id"]: row for row in rows}
    for run in list(runs) + list(stubs):
        key = (run.config if run.config is not None else what_of(run), run_arm(run.args))
        group = groups.setdefault(key, SeedGroup(run.config, key[1], what_of(run)))
        group.runs.append(run)
        if run.exp_id in by_id:
            group.rows[run.exp_id] = by_id[run.exp_id]
    ordered = sorted(groups.values(), key=lambda g: (g.config or 99, g.arm != COURSE, str(g.what)))
    for group in ordered:
        group.reference = choose_reference(group)
        pick_members(group)
    add_not_run(ordered)
    for group in ordered:
        used = list(group.members.values()) or ([group.rows[shown_run(group).exp_id]] if group.rows else [])
        group.stats = {m.key: OVER_SEEDS[m.over_seeds]([r[m.key] for r in used]) for m in schema.RUN_METRICS}
    return [g for g in ordered if g.rows]


def group_value(group, key):
    model, layers, optimizer = group.what
    return {"model": display_name(model), "layers": layers, "optimizer": optimizer}[key]


def versus(winner, others, key, log):
    return [(g, paired_difference(winner.values(key), g.values(key), log)) for g in others if g is not winner]


def fastest(groups):
    """(group, how, key) by training wall-clock; per epoch when the runs' epoch counts differ."""
    groups = [g for g in groups if g.n and g.stats["train_time_s"]]
    if not groups:
        return None, None, None
    key, how = ("train_time_s", "total training time") if len(
        {row["epochs_logged"] for g in groups for row in g.members.values()}) == 1 else (
        "time_per_epoch_s", "training time per epoch (runs differ in epochs)")
    return min(groups, key=lambda g: g.stats[key]["mean"]), how, key


def averages(groups, key, where=lambda group: True):
    """Per value of `key` (or keys): configurations, distinct seeds and means of their seed means."""
    keys, by_value = key if isinstance(key, tuple) else (key,), {}
    for g in groups:
        if g.n and where(g):
            by_value.setdefault(tuple(group_value(g, k) for k in keys), []).append(g)
    return [{**dict(zip(keys, value)), "n": len(members), "seeds": len({s for g in members for s in g.members}),
             "members": [g.config if g.config is not None else g.name for g in members],
             **{f"mean_{k}": mean(g.stats[k]["mean"] for g in members) for k in AVERAGED},
             # geometric: not dominated by one bad optimizer the way the arithmetic mean is
             "geomean_best_valid_ppl": math.exp(mean(math.log(g.stats["best_valid_ppl"]["mean"]) for g in members))}
            for value, members in by_value.items()]


def optimizer_rankings(groups):
    """Per model, its one-layer configurations by best val ppl, the winner against each of the others."""
    one_layer = [g for g in groups if g.n and g.what[1] == 1]
    rankings = [sorted((g for g in one_layer if g.what[0] == model), key=lambda g: g.stats["best_valid_ppl"]["mean"])
                for model in dict.fromkeys(g.what[0] for g in one_layer)]
    return [{"model": display_name(ranked[0].what[0]), "ranking": ranked,
             "versus": versus(ranked[0], ranked, "best_valid_ppl", log=True)} for ranked in rankings]


def arm_answers(groups):
    """The assignment's questions over one arm's groups."""
    quickest, how, key = fastest(groups)
    counted = [g for g in groups if g.n]
    best = min(counted, key=lambda g: g.stats["best_valid_ppl"]["mean"]) if counted else None
    return {
        "fastest": quickest, "fastest_by": how, "fastest_key": key,
        "fastest_versus": versus(quickest, counted, key, log=False) if quickest else [],
        "best": best, "best_versus": versus(best, counted, "best_valid_ppl", log=True) if best else [],
        # one layer (configurations 1-8): depth held fixed; within each model, never pooling two models
        "per_optimizer": sorted(averages(groups, ("model", "optimizer"), lambda g: g.what[1] == 1), key=lambda e: (
            ([display_name(m) for m in MODELS] + [e["model"]]).index(e["model"]), e["geomean_best_valid_ppl"])),
        "optimizer_rankings": optimizer_rankings(groups),
        "per_architecture": averages(groups, "model"),
        "one_seed": all(g.n <= 1 for g in counted),
    }


def answers(groups):
    """{"course": ..., "tuned": ...}: the arms are never mixed (a tuned lr is another experiment)."""
    return {arm: arm_answers([g for g in groups if g.arm == arm]) if any(g.arm == arm for g in groups) else None
            for arm in (COURSE, TUNED)}


def start_problem(run):
    """("far above uniform", epoch-1 loss) or ("stalled", (lo, hi)) for a start that did not learn, else None."""
    first = run.epochs[0] if run.epochs and run.epochs[0]["epoch"] == 1 else {}
    losses = [x for x in (as_float(first.get(k)) for k in ("train_loss", "valid_loss")) if finite(x)]
    if run.args.get("model") == "gpt1" and losses and max(losses) > FAR_ABOVE_UNIFORM:
        return "far above uniform", max(losses)
    ppl = [e["valid_ppl"] for e in run.epochs]
    if len(ppl) >= 3 and all(finite(p) and p > 0 for p in ppl) and max(ppl) <= STALL * min(ppl):
        return "stalled", (min(ppl), max(ppl))
    return None


def reference_check(group, reference):
    """None, or the course's reference runs beside a group at the course's lr: {"valid", "test": (lo, hi),
    "off": {metric: relative distance outside the range}, "checked": the ~3% test applies, "applies": it used
    GPT-1's embeddings (None: not recorded), "differs": its settings unlike the reference's, "note"}."""
    entry = reference["configs"].get(str(group.config))
    if entry is None or group.arm != COURSE:
        return None
    standin = is_standin(group.reference)
    out = {"applies": None if standin is None else not standin,
           "checked": group.config in reference["checked_configs"], "off": {}, "note": entry.get("note")}
    for metric, key in (("valid", "best_valid_ppl"), ("test", "test_ppl")):
        lo, hi = min(entry[metric].values()), max(entry[metric].values())
        out[metric], stat = (lo, hi), group.stats.get(key)
        if stat and finite(stat["mean"]):
            out["off"][metric] = stat["mean"] / hi - 1 if stat["mean"] > hi else min(stat["mean"] / lo - 1, 0.0)
    args = group.reference.args
    out["differs"] = [f"{k} {args[k]} (reference {v})" for k, v in reference["settings"].items()
                      if k in args and args[k] != v]
    return out
