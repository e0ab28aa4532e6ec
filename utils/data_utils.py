"""The course's log format: one value per line per epoch in logs/<exp_id>/*.txt."""
import dataclasses
import json
import math
import os

from utils.checkpoint import atomic_write_text

TXT_LOGS = (
    "train_loss", "train_ppl", "train_time", "valid_loss", "valid_ppl", "valid_time",
    "test_loss", "test_ppl", "test_time", "avg_steady_state_memory",
)


def args_to_dict(args):
    """Plain, JSON-safe dict of run arguments (a dataclass, a Namespace or a dict)."""
    if dataclasses.is_dataclass(args):
        items = dataclasses.asdict(args)
    elif isinstance(args, dict):
        items = dict(args)
    else:
        items = dict(vars(args))
    return {k: v for k, v in items.items() if not k.startswith("_")}


def _lines(values):
    values = values if isinstance(values, (list, tuple)) else [values]
    return "\n".join(repr(float(v)) if v is not None and not (isinstance(v, float) and math.isnan(v)) else "nan"
                     for v in values) + "\n"


def save_logs(args, *logs):
    """save_logs(args, train_losses, train_ppls, train_times, valid_losses, valid_ppls, valid_times,
    test_loss, test_ppl, test_time, avg_steady_state_memory): the notebook's call, unchanged."""
    if len(logs) != len(TXT_LOGS):
        raise TypeError(f"save_logs expects args and {len(TXT_LOGS)} values ({', '.join(TXT_LOGS)}); got {len(logs)}.")
    log_dir = os.path.join(args.log_dir, str(args.exp_id))
    os.makedirs(log_dir, exist_ok=True)
    atomic_write_text(os.path.join(log_dir, "args.json"), json.dumps(args_to_dict(args), indent=2, default=str) + "\n")
    for name, values in zip(TXT_LOGS, logs):
        atomic_write_text(os.path.join(log_dir, f"{name}.txt"), _lines(values))
