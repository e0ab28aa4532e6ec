"""A run's folder, logs/<exp_id>/: status, per-epoch metrics, provenance and checkpoint.

Every file is replaced atomically, and the per-epoch files are rewritten from the metrics
held in the checkpoint, so a killed run never leaves a log that disagrees with its checkpoint.
"""
import json
import os
import shutil
import subprocess

from utils.checkpoint import CHECKPOINT_NAME, atomic_write_json, atomic_write_text, load_checkpoint, save_checkpoint
from utils.data_utils import args_to_dict, save_logs
from utils.run_args import UsageError

EPOCH_TXT = {
    "train_loss": "train_loss", "train_ppl": "train_ppl", "train_time": "train_seconds",
    "valid_loss": "valid_loss", "valid_ppl": "valid_ppl", "valid_time": "valid_seconds",
}


class RunLog:
    def __init__(self, log_dir, exp_id, enabled=True):
        self.path = os.path.join(log_dir, str(exp_id))
        self.enabled = enabled

    def file(self, name):
        return os.path.join(self.path, name)

    def status(self):
        """The run's status dict, or None when it has never started."""
        try:
            with open(self.file("status.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def is_completed(self):
        return (self.status() or {}).get("status") == "completed"

    def settings_differ(self, args, names):
        """Names of fields whose value in this run's args.json differs from `args`."""
        try:
            with open(self.file("args.json")) as handle:
                saved = json.load(handle)
        except (OSError, ValueError):
            return list(names)
        current = args_to_dict(args)
        return [n for n in names if saved.get(n) != current.get(n)]

    def has_checkpoint(self):
        return os.path.isfile(self.file(CHECKPOINT_NAME))

    def check(self, resume, force):
        """Refuse to overwrite a finished or unfinished run silently; touches nothing."""
        if not self.enabled or force or not os.path.isdir(self.path) or not os.listdir(self.path):
            return
        if self.is_completed():
            raise UsageError(f"Run {self.path} is already complete: pass --force to overwrite it or choose another --exp_id.")
        if resume and not self.has_checkpoint():
            raise UsageError(f"Cannot resume {self.path}: it has no checkpoint (no epoch finished); rerun without --resume.")
        if not resume:
            raise UsageError(f"{self.path} holds an unfinished run: pass --resume to continue it or --force to start over.")

    def start(self, force):
        if not self.enabled:
            return
        if force and os.path.isdir(self.path):
            shutil.rmtree(self.path)
        os.makedirs(self.path, exist_ok=True)

    def write_status(self, status, epoch, step=None, message=""):
        if self.enabled:
            atomic_write_json(self.file("status.json"), {"status": status, "epoch": epoch, "step": step, "message": message})

    def write_provenance(self, provenance):
        if self.enabled:
            atomic_write_json(self.file("provenance.json"), provenance)

    def write_epochs(self, args, metrics):
        """args.json, metrics.jsonl and the course's per-epoch .txt files, from all epochs so far."""
        if not self.enabled:
            return
        atomic_write_json(self.file("args.json"), args_to_dict(args))
        atomic_write_text(self.file("metrics.jsonl"), "".join(json.dumps(m) + "\n" for m in metrics))
        for name, key in EPOCH_TXT.items():
            atomic_write_text(self.file(f"{name}.txt"), "".join(f"{m[key]!r}\n" for m in metrics))

    def write_final(self, args, results, test_metrics):
        """The notebook's save_logs with main()'s 10 values, plus the test split's counts."""
        if self.enabled:
            save_logs(args, *results)
            atomic_write_json(self.file("test_metrics.json"), test_metrics)

    def save_checkpoint(self, state):
        if self.enabled:
            save_checkpoint(self.path, state)

    def load_checkpoint(self, map_location):
        return load_checkpoint(self.path, map_location=map_location)


def git_commit():
    """The project's commit (with '+dirty' when the tree has changes), or 'unknown'."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
