"""Small-sample statistics over seeds: means, standard deviations and Student-t intervals.

A study has 2-5 seeds per configuration, so intervals use Student's t with n-1 degrees of freedom
(a normal 1.96 would be far too narrow at n=3). Perplexities spread multiplicatively (one bad seed
can double it), and times and memory are positive (a t interval on two seeds' seconds can reach
below zero), so all of them are summarised in log space: the mean of the logs and its interval, turned
back with exp into a geometric mean and an interval [lo, hi] that is symmetric as a ratio.
Pure functions over plain floats; scipy is used for t quantiles when importable, else a table.
"""
import math
from statistics import mean, stdev

CONFIDENCE = 0.95

# Two-sided 95% Student-t quantiles (t_{0.975, dof}) for dof 1..30, then a few larger dof; used
# only when scipy is missing. Between tabulated dof the smaller dof's (larger, safer) value is used.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101,
        19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052,
        28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t_quantile_table(dof):
    """t_{0.975, dof} from T975 (the nearest tabulated dof at or below `dof`)."""
    return T975[max(d for d in T975 if d <= dof)]


def t_quantile(dof, confidence=CONFIDENCE):
    """The two-sided Student-t critical value for `dof` >= 1 degrees of freedom."""
    try:
        from scipy.stats import t
    except ImportError:
        if confidence != 0.95:
            raise ValueError("without scipy only 95% intervals are available") from None
        return t_quantile_table(dof)
    return float(t.ppf(0.5 + confidence / 2, dof))


def describe_linear(values):
    """{"n", "mean", "sd", "half_width", "lo", "hi"} of the finite values; sd, half_width, lo and hi
    are None below two values (no spread, so no interval). None when there is no finite value."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    n, centre = len(values), mean(values)
    if n < 2:
        return {"n": 1, "mean": centre, "sd": None, "half_width": None, "lo": None, "hi": None}
    sd = stdev(values)  # n-1 in the denominator: the sample standard deviation the t interval needs
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": centre, "sd": sd, "half_width": half, "lo": centre - half, "hi": centre + half}


def describe_log(values):
    """Log-space summary of positive values (perplexities): "mean" is the geometric mean,
    "lo"/"hi" exp of the t interval of mean log, "factor" = hi / mean = mean / lo, "sd_log" the
    standard deviation of log values. None when no value is finite and positive."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    stats = describe_linear([math.log(v) for v in kept])
    if stats is None:
        return None
    spread = stats["half_width"] is not None
    # One value is its own geometric mean: exact, not exp(log(x)) with its rounding.
    centre = kept[0] if len(kept) == 1 else math.exp(stats["mean"])
    return {"n": stats["n"], "mean": centre, "sd_log": stats["sd"],
            "lo": math.exp(stats["lo"]) if spread else None, "hi": math.exp(stats["hi"]) if spread else None,
            "factor": math.exp(stats["half_width"]) if spread else None}


def paired_difference(a, b, log=False):
    """Compare two configurations over the seeds both have: a and b map seed -> value.

    The difference a - b (of log values when `log`, i.e. a log ratio) is taken seed by seed, so
    what a seed does to both (its batch order, its initialisation draw) cancels. Returns
    {"seeds", "n", "mean", "lo", "hi", "distinguishable"}: mean/lo/hi are a - b (linear) or a / b
    (log: exp of the log-ratio interval); distinguishable is True when the 95% interval excludes
    no difference, False when it includes it, None when fewer than two shared seeds allow no
    interval ("why" then says so)."""
    ok = lambda v: v is not None and math.isfinite(v) and (v > 0 or not log)
    seeds = sorted(s for s in set(a) & set(b) if ok(a[s]) and ok(b[s]))
    f = math.log if log else float
    stats = describe_linear([f(a[s]) - f(b[s]) for s in seeds])
    back = math.exp if log else (lambda x: x)
    result = {"seeds": seeds, "n": len(seeds), "log": log, "mean": None, "lo": None, "hi": None,
              "distinguishable": None, "why": ""}
    if stats is not None:
        result["mean"] = back(stats["mean"])
    if stats is None or stats["half_width"] is None:
        result["why"] = (f"{len(seeds)} shared seed{'s' if len(seeds) != 1 else ''}: "
                         "no interval can be computed (at least 2 are needed)")
        return result
    result.update(lo=back(stats["lo"]), hi=back(stats["hi"]), distinguishable=stats["lo"] > 0 or stats["hi"] < 0)
    return result
