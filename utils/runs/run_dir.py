"""A run's folder, logs/<exp_id>/: reading what is there, deciding how a rerun continues, and
writing status, settings, metrics, provenance and checkpoints (file names: utils.runs.schema).
Files are replaced atomically; a continued run rewrites the per-epoch files from the checkpoint's
metrics (a kill between checkpoint and logs is repaired). The kit deletes only its own files, in
folders carrying its marker.
"""
import dataclasses
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from typing import Optional

from utils.runs import schema
from utils.runs.atomic import TMP_PREFIX, atomic_write_json, atomic_write_text, read_json, remove_leftovers
from utils.runs.checkpoint import load_checkpoint, save_checkpoint
from utils.runs.lock import FolderLock, FolderLocked

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


# Every file name the kit writes in a run folder.
KIT_FILES = (schema.MARKER, schema.LOCK, schema.ARGS, schema.STATUS, schema.METRICS, schema.TEST_METRICS,
             schema.PROVENANCE, schema.CHECKPOINT, schema.SAMPLES) + tuple(schema.txt_name(n) for n in schema.TXT_LOGS)


def _lines(values):
    """One value per line, repr of the float (exact), "nan" for NaN or None."""
    values = values if isinstance(values, (list, tuple)) else [values]
    return "".join((repr(float(v)) if v is not None and not (isinstance(v, float) and math.isnan(v)) else "nan")
                   + "\n" for v in values)


class RunDir:
    def __init__(self, log_dir, exp_id, writes=True):
        self.log_dir = log_dir
        self.path = os.path.join(log_dir, str(exp_id))
        self.writes = writes  # False: --no_log, or a process other than rank 0
        self.folder_lock = None  # a FolderLock while this process holds the folder
        self.made_folder = False  # lock() made the folder: unlock() removes it when nothing else was written

    def file(self, name):
        return os.path.join(self.path, name)

    # ----- reading
    def status(self):
        """The run's status dict, or None when it has never started."""
        return read_json(self.file(schema.STATUS))

    def is_completed(self):
        return (self.status() or {}).get("status") == schema.COMPLETED

    def has_checkpoint(self):
        return os.path.lexists(self.file(schema.CHECKPOINT))  # a link too: load_checkpoint refuses it

    def recorded_settings(self):
        return read_json(self.file(schema.ARGS))

    def epochs(self):
        """metrics.jsonl's records ([] when absent or unreadable)."""
        return [e for e in read_json(self.file(schema.METRICS), lines=True) or [] if isinstance(e, dict)]

    def best_valid_ppl(self):
        """The lowest finite validation perplexity of the recorded epochs, or None."""
        values = [e.get("valid_ppl") for e in self.epochs()]
        return min((v for v in values if isinstance(v, (int, float)) and math.isfinite(v)), default=None)

    def settings_differ(self, settings, recorded=None, defaults=None):
        """The identifying settings of the folder's run that differ from `settings` (schema.differing)."""
        recorded = recorded if recorded is not None else self.recorded_settings()
        if recorded is None:
            return []
        return schema.differing(recorded, settings, defaults)

    def contents(self):
        """What the folder holds, without the kit's lock and the temporary files of killed writes."""
        if not os.path.isdir(self.path):
            return []
        leftover = re.compile(re.escape(TMP_PREFIX) + r"[A-Za-z0-9_]{8}")
        return sorted(n for n in os.listdir(self.path) if n != schema.LOCK and not leftover.match(n))

    def is_ours(self):
        """The folder carries the kit's marker (a user's own args.json, train_loss.txt are theirs)."""
        return os.path.isfile(self.file(schema.MARKER))

    def plan(self, settings, force, defaults=None):
        """How a run with `settings` goes on here; RunConflict/CheckpointError, nothing touched, if not."""
        where, status = self.path, self.status() or {}
        contents = self.contents()
        if not contents:
            return Plan("start", "")
        if not self.is_ours():
            raise self._foreign(contents)
        if force:
            return Plan("start", f"Starting {where} over (--force): the files the kit wrote there are deleted.")
        completed = status.get("status") == schema.COMPLETED
        checkpoint = load_checkpoint(self.path) if self.has_checkpoint() and not completed else None
        # the checkpoint carries the settings it was trained with: args.json may be missing or damaged
        recorded = checkpoint["settings"] if checkpoint else self.recorded_settings()
        differs = self.settings_differ(settings, recorded, defaults)
        if differs:  # e.g. a smoke run where a full run is asked for: never mix them silently
            values = ", ".join(f"{n} {recorded.get(n, (defaults or {}).get(n))} there, {settings.get(n)} here"
                               for n in differs)
            raise RunConflict(f"{where} holds a run made with other {', '.join(differs)} ({values}): pass "
                              "--force to overwrite it or use another --exp_id/--log_dir.")
        if completed:
            raise RunConflict(f"Run {where} is already complete: pass --force to run it again or choose another --exp_id.")
        was = describe_status(status)
        if checkpoint is None:
            return Plan("start", f"Starting {where} over: its last attempt ({was}) left no checkpoint.")
        at = checkpoint["position"]
        where_at = describe_position(at["epoch"], at["step"], checkpoint["settings"]["epochs"])
        return Plan("resume", f"Continuing {where} ({was}) from its checkpoint {where_at}.", checkpoint)

    def _foreign(self, contents):
        shown = ", ".join(contents[:3]) + (", ..." if len(contents) > 3 else "")
        return RunConflict(f"{self.path} holds files this kit did not write ({shown}), so it is left untouched "
                           "(--force included): choose another --exp_id or --log_dir.")

    # ----- the folder itself
    def check_writable(self):
        """RunConflict (nothing written) when the run's folder cannot be made or written."""
        for path, what in ((self.log_dir, f"--log_dir {self.log_dir}"), (self.path, self.path)):
            if os.path.islink(path) and not os.path.exists(path):
                raise RunConflict(f"{what} is a symbolic link to {os.readlink(path)}, which does not exist: make "
                                  "that folder or remove the link.")
            if os.path.exists(path) and not os.path.isdir(path):
                raise RunConflict(f"{what} is a file, not a folder: choose another --log_dir or --exp_id.")
        existing = os.path.abspath(self.path)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise RunConflict(f"{existing} is a file, so {self.path} cannot be made: choose another --log_dir.")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise RunConflict(f"{existing} is not writable (a read-only file system or no permission): pass a "
                              "writable --log_dir.")

    def lock(self):
        """Hold the folder for this process (making it when needed); RunConflict when another has it."""
        if not self.writes or self.folder_lock is not None:
            return
        self.check_writable()
        contents = self.contents()
        if contents and not self.is_ours():  # not even a lock file in a user's folder
            raise self._foreign(contents)
        self.made_folder = not os.path.isdir(self.path)
        folder_lock = FolderLock(self.file(schema.LOCK))
        try:
            os.makedirs(self.path, exist_ok=True)
            folder_lock.acquire()
        except FolderLocked as err:
            raise RunConflict(str(err)) from None
        except OSError as err:
            raise RunConflict(f"cannot write in {self.path} ({err.strerror or err}): pass a writable "
                              "--log_dir.") from None
        self.folder_lock = folder_lock

    def unlock(self):
        """Let the folder go; a folder lock() made and nothing else used is removed again."""
        if self.folder_lock is None:
            return
        self.folder_lock.release()
        self.folder_lock = None
        if self.made_folder and not self.contents():
            shutil.rmtree(self.path, ignore_errors=True)

    def remove_leftovers(self):
        """Temporary files of writes cut by a kill (only the kit's own names)."""
        return remove_leftovers(self.path, KIT_FILES) if self.writes else []

    def reset(self):
        """The folder ready for a new run: the kit's files deleted (the plan said so), the rest kept."""
        if not self.writes:
            return
        os.makedirs(self.path, exist_ok=True)
        self.remove_leftovers()
        for name in KIT_FILES:
            if name not in (schema.LOCK, schema.MARKER) and os.path.isfile(self.file(name)):
                os.remove(self.file(name))
        self.mark()

    def mark(self):
        """Say that the kit owns the folder (before anything else is written in it)."""
        if self.writes and not os.path.isfile(self.file(schema.MARKER)):
            atomic_write_text(self.file(schema.MARKER), "written by this kit: it may delete the files it wrote here\n")

    # ----- writing (nothing when self.writes is False)
    def write_args(self, args):
        if self.writes:
            atomic_write_json(self.file(schema.ARGS), plain_dict(args))

    def write_status(self, status, epoch, step=None, message="", epochs=None, done=None):
        """`epoch`: the one the run is in or ended in, from 1; `done`: the epochs finished."""
        if self.writes:
            atomic_write_json(self.file(schema.STATUS), {"status": status, "epoch": epoch, "step": step, "epochs": epochs,
                                                         "epochs_done": done, "message": message})

    def provenance(self):
        return read_json(self.file(schema.PROVENANCE))

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


def describe_position(epoch, step, epochs):
    """Where a checkpoint stands, epochs from 1: "at epoch 2, step 40", "at the start of epoch 2"..."""
    if epoch >= epochs:
        return f"after its last epoch ({epochs} of {epochs}; the test split is evaluated next)"
    if step == 0:
        return f"at the start of epoch {epoch + 1} of {epochs}"
    return f"at epoch {epoch + 1}, step {step}"


def describe_status(status):
    """ "interrupted at epoch 2, step 40" from a status dict (epoch 1-based in the file)."""
    if not status:
        return "no status"
    epoch, step, epochs, done = (status.get(k) for k in ("epoch", "step", "epochs", "epochs_done"))
    if epoch is None:
        where = ""
    elif epochs is not None and done is not None and done >= epochs:
        where = f" after training (all {epochs} epochs)"
    else:
        where = f" at epoch {epoch}" + ("" if step is None else f", step {step}")
    return f"{status.get('status', 'unknown')}{where}"
