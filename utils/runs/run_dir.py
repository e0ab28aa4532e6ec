"""A run's folder, logs/<exp_id>/: reading what is there, deciding how a rerun continues, and
writing status, settings, metrics, provenance and checkpoints (file names: utils.runs.schema).

Every file is replaced atomically, and the per-epoch files are rewritten from the metrics held
in the checkpoint, so a killed run never leaves a log that disagrees with its checkpoint.
"""
import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass
from typing import Optional

from utils.runs import schema
from utils.runs.atomic import atomic_write_json, atomic_write_text
from utils.runs.checkpoint import load_checkpoint, save_checkpoint


class RunConflict(ValueError):
    """The folder holds a run that this one must not overwrite or continue; one line says what to do."""


@dataclass
class Plan:
    action: str  # "start" or "resume"
    message: str  # one line for the user, "" when there is nothing to say (a new run)
    checkpoint: Optional[dict] = None  # the loaded checkpoint, when resuming


def plain_dict(args):
    """Plain JSON-safe dict of run arguments (a dataclass, a namespace or a dict), without private keys."""
    if dataclasses.is_dataclass(args):
        items = dataclasses.asdict(args)
    else:
        items = dict(args) if isinstance(args, dict) else dict(vars(args))
    return {k: v for k, v in items.items() if not k.startswith("_")}


def _lines(values):
    """One value per line, repr of the float (exact), "nan" for NaN or None."""
    values = values if isinstance(values, (list, tuple)) else [values]
    return "".join((repr(float(v)) if v is not None and not (isinstance(v, float) and math.isnan(v)) else "nan")
                   + "\n" for v in values)


class RunDir:
    def __init__(self, log_dir, exp_id, writes=True):
        self.path = os.path.join(log_dir, str(exp_id))
        self.writes = writes  # False: --no_log, or a process other than rank 0

    def file(self, name):
        return os.path.join(self.path, name)

    # ----- reading
    def _json(self, name):
        try:
            with open(self.file(name)) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def status(self):
        """The run's status dict, or None when it has never started."""
        return self._json(schema.STATUS)

    def is_completed(self):
        return (self.status() or {}).get("status") == schema.COMPLETED

    def has_checkpoint(self):
        return os.path.isfile(self.file(schema.CHECKPOINT))

    def recorded_settings(self):
        return self._json(schema.ARGS)

    def settings_differ(self, settings, recorded=None):
        """SAME_RUN_FIELDS whose value in the folder's run differs from `settings` (a dict)."""
        recorded = recorded if recorded is not None else self.recorded_settings()
        if recorded is None:
            return []
        return [n for n in schema.SAME_RUN_FIELDS if recorded.get(n, settings.get(n)) != settings.get(n)]

    def plan(self, settings, force):
        """How a run with `settings` (a dict) goes on from what this folder holds. Raises
        RunConflict (or CheckpointError) without touching anything when it must not."""
        where, status = self.path, self.status() or {}
        if not os.path.isdir(where) or not os.listdir(where):
            return Plan("start", "")
        if force:
            return Plan("start", f"Starting {where} over (--force): its previous contents are deleted.")
        differs = self.settings_differ(settings)
        if differs:  # e.g. a smoke run where a full run is asked for: never mix them silently
            raise RunConflict(f"{where} holds a run made with other {', '.join(differs)}: pass --force to "
                              "overwrite it or use another --exp_id/--log_dir.")
        if status.get("status") == schema.COMPLETED:
            raise RunConflict(f"Run {where} is already complete: pass --force to run it again or choose another --exp_id.")
        was = _describe(status)
        if not self.has_checkpoint():
            return Plan("start", f"Starting {where} over: its last attempt ({was}) left no checkpoint.")
        checkpoint = load_checkpoint(self.path)
        at = checkpoint["position"]
        return Plan("resume", f"Continuing {where} ({was}) from its checkpoint at epoch {at['epoch'] + 1}, "
                              f"step {at['step']}.", checkpoint)

    # ----- writing (nothing when self.writes is False)
    def reset(self):
        """An empty folder for a new run (a previous one is deleted: the plan said so)."""
        if not self.writes:
            return
        if os.path.isdir(self.path):
            shutil.rmtree(self.path)
        os.makedirs(self.path, exist_ok=True)

    def write_args(self, args):
        if self.writes:
            atomic_write_json(self.file(schema.ARGS), plain_dict(args))

    def write_status(self, status, epoch, step=None, message=""):
        if self.writes:
            atomic_write_json(self.file(schema.STATUS), {"status": status, "epoch": epoch, "step": step,
                                                         "message": message})

    def write_provenance(self, provenance):
        if self.writes:
            atomic_write_json(self.file(schema.PROVENANCE), provenance)

    def write_txt(self, log_name, values):
        """One of the course's TXT_LOGS files (e.g. "valid_ppl"), one value per line."""
        if self.writes:
            atomic_write_text(self.file(schema.txt_name(log_name)), _lines(values))

    def write_epochs(self, metrics):
        """metrics.jsonl and the course's per-epoch .txt files, from all epochs so far."""
        if not self.writes:
            return
        atomic_write_text(self.file(schema.METRICS), "".join(json.dumps(m) + "\n" for m in metrics))
        for name, key in schema.EPOCH_TXT.items():
            self.write_txt(name, [m[key] for m in metrics])

    def write_final(self, test, avg_memory):
        """The course's test_*.txt and avg_steady_state_memory.txt, and test_metrics.json."""
        if not self.writes:
            return
        for name, key in schema.TEST_TXT.items():
            self.write_txt(name, test[key])
        self.write_txt(schema.STEADY_MEMORY, avg_memory)
        atomic_write_json(self.file(schema.TEST_METRICS), test)

    def save_checkpoint(self, state):
        if self.writes:
            save_checkpoint(self.path, state)


def _describe(status):
    """ "interrupted at epoch 2, step 40" from a status dict (epoch 0-based in the file)."""
    if not status:
        return "no status"
    epoch, step = status.get("epoch"), status.get("step")
    where = "" if epoch is None else f" at epoch {epoch + 1}" + ("" if step is None else f", step {step}")
    return f"{status.get('status', 'unknown')}{where}"
