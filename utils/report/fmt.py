"""How numbers read in tables, the console and figure titles (the CSV keeps raw floats).

Perplexities run from ~100 to 1e22 (a first MiniGPT1 epoch, a smoke run): 2 decimals where small,
thousands separators up to SCI_FROM, then scientific notation, so a wide number never pushes a
table off the page and 1e22 never prints as 23 digits.
"""
import math

SCI_FROM = 1e5  # from here on perplexities are written 1.23e22
MISSING = "—"


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def sci(x, latex=False):
    """1.23e22 (or $1.23\\times10^{22}$): 3 significant digits, no '+' or leading zeros in the exponent."""
    mantissa, exponent = f"{x:.2e}".split("e")
    exponent = int(exponent)
    return rf"${mantissa}\times10^{{{exponent}}}$" if latex else f"{mantissa}e{exponent}"


def ppl_text(x, latex=False, missing=MISSING, decimals=2):
    """A perplexity: 125.00, 2,170, 1.23e22; inf and nan as words; `missing` for None.
    `decimals` applies below 1000 (the LaTeX table uses fewer to stay narrow)."""
    if x is None:
        return missing
    if not finite(x):
        return "nan" if x != x else ("inf" if x > 0 else "-inf")
    if abs(x) >= SCI_FROM:
        return sci(x, latex)
    if abs(x) >= 1000:
        return f"{x:,.0f}".replace(",", "{,}" if latex else ",")
    return f"{x:.{decimals}f}"


def lr_text(lr):
    """A learning rate as people write it: 1e-3, 3e-4, 0.3, 1.5e-3; '?' when unknown."""
    if not finite(lr):
        return "?" if lr is None else str(lr)
    if lr == 0 or 1e-2 <= abs(lr) < 1e3:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def log_stat_text(stat, latex=False, missing=MISSING):
    """A log-space summary (stats.describe_log): the geometric mean and, with 2+ seeds, [lo, hi]."""
    if stat is None:
        return missing
    if stat["lo"] is None:
        return ppl_text(stat["mean"], latex)
    # The bounds take the mean's precision: "1,789 [433, 7,383]", not "1,789 [433.41, 7,383]".
    decimals = 2 if finite(stat["mean"]) and abs(stat["mean"]) < 1000 else 0
    bounds = [ppl_text(stat[k], latex, decimals=decimals) for k in ("lo", "hi")]
    return f"{ppl_text(stat['mean'], latex)} [{bounds[0]}, {bounds[1]}]"


def lin_stat_text(stat, digits=1, latex=False, missing=MISSING):
    """A linear summary (stats.describe_linear): the mean and, with 2+ seeds, ± the 95% half-width."""
    if stat is None:
        return missing
    text = f"{stat['mean']:,.{digits}f}"
    if stat["half_width"] is not None:
        text += (r" $\pm$ " if latex else " ± ") + f"{stat['half_width']:,.{digits}f}"
    return text.replace(",", "{,}") if latex else text


def grouped(text, latex=False):
    """Thousands separators as LaTeX wants them ({,}) or as written."""
    return text.replace(",", "{,}") if latex else text


# How a value of each schema format reads (utils.runs.schema's EpochMetric.fmt / RunMetric.fmt).
FORMATS = {
    "ppl": lambda x, latex: ppl_text(x, latex),
    "loss": lambda x, latex: f"{x:.3f}",
    "seconds": lambda x, latex: grouped(f"{x:,.1f}", latex),
    "mb": lambda x, latex: grouped(f"{x:,.1f}", latex),
    "count": lambda x, latex: grouped(f"{x:,.0f}", latex),
    "rate": lambda x, latex: grouped(f"{x:,.0f}", latex),
    "lr": lambda x, latex: lr_text(x),
    "raw": lambda x, latex: str(x),
}


def number_text(x, fmt, latex=False, missing=MISSING):
    """One value in its metric's format; `missing` for None, words for inf and nan."""
    if x is None:
        return missing
    if fmt not in ("raw", "lr") and not finite(x):
        return "nan" if x != x else ("inf" if x > 0 else "-inf")
    return FORMATS[fmt](x, latex)


def stat_text(stat, fmt, latex=False, missing=MISSING):
    """A summary over seeds in its metric's format: a log-space one (stats.describe_log: perplexities,
    times, memory) as the geometric mean and, with 2+ seeds, [lo, hi]; a linear one as mean ± half-width."""
    if stat is None:
        return missing
    if fmt == "ppl":
        return log_stat_text(stat, latex, missing)
    if "sd_log" not in stat:
        return lin_stat_text(stat, 1, latex, missing)
    text = number_text(stat["mean"], fmt, latex)
    if stat["lo"] is not None:
        text += f" [{number_text(stat['lo'], fmt, latex)}, {number_text(stat['hi'], fmt, latex)}]"
    return text


def ratio_text(comparison):
    """A paired comparison (stats.paired_difference) as 'x0.87 [0.80, 0.95]' (log) or '-1.2 s [...]'."""
    if comparison["mean"] is None:
        return MISSING
    if comparison["log"]:
        body = f"×{comparison['mean']:.3g}"
        return body + (f" [{comparison['lo']:.3g}, {comparison['hi']:.3g}]" if comparison["lo"] is not None else "")
    body = f"{comparison['mean']:+.1f} s"
    return body + (f" [{comparison['lo']:+.1f}, {comparison['hi']:+.1f}]" if comparison["lo"] is not None else "")
