"""Statistics over 2-5 seeds: means, standard deviations, Student-t intervals (n-1 degrees of freedom).

Perplexities, times and memory are positive and spread multiplicatively, so they are summarised in log
space: a geometric mean and an interval [lo, hi] symmetric as a ratio, never below zero. Pure
functions over floats.
"""
import math
from statistics import mean, stdev


def t_quantile(dof):
    """The two-sided 95% Student-t critical value t_{0.975, dof}, dof >= 1."""
    from scipy.stats import t  # a dependency of the kit; imported here so importing the report stays light

    return float(t.ppf(0.975, dof))


def describe_linear(values):
    """{"n", "mean", "sd", "half_width", "lo", "hi"} of the finite values (spread None below two values);
    None without a finite value."""
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
    """Of positive values: "mean" the geometric mean, "lo"/"hi" exp of the t interval of the mean log,
    "factor" = hi / mean, "sd_log"; None without a finite positive value."""
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
