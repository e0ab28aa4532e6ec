"""A run's machinery for main() in run_exp.py: open_run(settings) checks everything before anything is
written and locks the run folder; `with run:` turns how the run ends into its status. Resuming and
--force: docs/resilience.md."""
import contextlib
import math
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from utils.data.wikitext2 import SPLITS
from utils.gpu_usage import get_gpu_memory_usage, peak_gpu_memory_mb
from utils.models.base import TokenNLL
from utils.models.registry import model_spec
from utils.runs import schema
from utils.runs.atomic import WriteError
from utils.runs.checkpoint import CheckpointError, check_data, learned_state, load_checkpoint, restore_model
from utils.runs.provenance import count_parameters, data_identity, device_name, git_commit, provenance
from utils.runs.run_dir import Plan, RunConflict, RunDir, describe_position
from utils.torch_utils import cpu_has_bf16, rng_state, seed_experiment, set_rng_state
from utils.train.distributed import SINGLE
from utils.train.inputs import load_embeddings, load_splits, make_batches, resolve_device, word_table
from utils.train.memory import check_batch_fits, out_of_memory
from utils.train.optim import load_optimizer_state, make_optimizer
from utils.train.passes import steps_of
from utils.train.precision import Precision
from utils.train.progress import RunClock, Schedule, perplexity_text, plan_text
from utils.train.settings import DEFAULTS, UsageError, apply_smoke, from_any, validate
from utils.train.stop import GracefulStop, RunInterrupted
from utils.train.watch import TrainingDiverged


@dataclass
class Position:
    epoch: int = 0  # the epoch in progress (0-based); == epochs once training is over
    step: int = 0  # training steps of that epoch already done
    partial: Optional[list] = None  # each process's Pass.snapshot() of that epoch's training so far


@dataclass
class Run:
    settings: object
    model: torch.nn.Module  # unwrapped: what checkpoints save
    nll: torch.nn.Module  # TokenNLL(model), wrapped in DDP with several processes: what the step calls
    optimizer: object
    precision: Precision
    scaler: object  # torch.amp.GradScaler, enabled for fp16 only
    dist: object = field(default_factory=lambda: SINGLE)
    batches: dict = field(default_factory=dict)
    total_steps: int = 1  # training steps of the whole run: what the lr schedule spans
    word_table: Optional[torch.Tensor] = None
    run_dir: Optional[RunDir] = None  # None: the course's train/evaluate on their own (nothing written)
    plan: Optional[Plan] = None
    embeddings: dict = field(default_factory=dict)  # path, sha256 and how the file was made
    data: dict = field(default_factory=dict)  # the data files' paths and sha256 (provenance.data_identity)
    position: Position = field(default_factory=Position)
    metrics: list = field(default_factory=list)
    memories: list = field(default_factory=list)
    clock: Optional[RunClock] = None  # the whole run's time left, shared by its progress lines
    stop: Optional[GracefulStop] = None  # while the run is entered: records a signal, defers a second Ctrl-C
    train_pass: object = None  # the epoch's training pass (utils.train.passes.Pass): a stop in its validation saves it
    memory_before: float = math.nan  # CUDA memory at the start of the epoch (the course's steady-state figure)
    commit: str = "unknown"  # the code this process runs (utils.runs.provenance.git_commit)
    board: object = None  # --tensorboard: rank 0's SummaryWriter into the run's folder
    origin: dict = field(default_factory=dict)  # code, precision and device of the run's first attempt
    resumed: dict = field(default_factory=dict)  # what changed at this resume (precision, code, scaler)
    notes: list = field(default_factory=list)  # a line for each of those changes, said when the run starts

    def say(self, text):
        if self.dist.is_main:
            print(text, flush=True)

    def epochs(self):
        """The epochs still to train, from where a checkpoint left off."""
        for epoch in range(self.position.epoch, self.settings.epochs):
            self.write_status(schema.RUNNING, epoch, self.position.step if self.position.epoch == epoch else 0)
            self.batches["train"].set_epoch(epoch)  # the batch order of (seed, epoch): a resumed run sees the same
            self.memory_before = get_gpu_memory_usage(self.device)
            peak_gpu_memory_mb(reset=True, device=self.device)
            yield epoch
        self.write_status(schema.RUNNING, self.settings.epochs, 0, "training done: evaluating the test split")

    def end_epoch(self, train, valid):
        """Record the epoch (metrics.jsonl), checkpoint, say how it went."""
        s, epoch = self.settings, self.position.epoch
        self.memories.append((self.memory_before + get_gpu_memory_usage(self.device)) / 2)
        peaks = self.dist.gather(peak_gpu_memory_mb(device=self.device))
        record = schema.epoch_record({"train": train.values, "valid": valid.values}, epoch=epoch + 1,
                                     lr=self.optimizer.param_groups[0]["lr"],
                                     peak_memory_mb=None if peaks[0] is None else max(peaks),
                                     peak_memory_mb_per_rank=None if peaks[0] is None else peaks)
        self.metrics.append(record)
        self.position, self.train_pass = Position(epoch + 1, 0, None), None
        with self.stop.holding():  # the logs follow the checkpoint; a rerun rewrites them from it after a kill
            self.checkpoint()
            self.run_dir.write_epochs(self.metrics)
        if self.board is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.board.add_scalar(key, value, epoch + 1)
            self.board.flush()
        self.say(f"epoch {epoch + 1}/{s.epochs}: train ppl {perplexity_text(record['train_ppl'])}, valid ppl "
                 f"{perplexity_text(record['valid_ppl'])} ({record['train_seconds']:.0f}s, "
                 f"{record['train_tokens_per_s']:,.0f} tokens/s)")

    def finish(self, test=None):
        """The test logs and the `completed` status (test None: validation only, as the lr search);
        returns the course notebook's 10 values (schema.TXT_LOGS's order, the one save_logs takes)."""
        s = self.settings
        avg_memory = sum(self.memories) / len(self.memories) if self.memories else math.nan
        record = schema.test_record(test.values) if test is not None else dict.fromkeys(schema.TEST_KEYS, math.nan)
        with self.stop.holding():
            if test is None:
                self.write_status(schema.COMPLETED, s.epochs, message="validation only (no test evaluation)")
            else:
                self.run_dir.write_final(record, avg_memory)
                self.write_status(schema.COMPLETED, s.epochs, message=f"test ppl {perplexity_text(test.ppl)}")
                best = min(m["valid_ppl"] for m in self.metrics)
                self.say(f"===== Best validation perplexity: {perplexity_text(best)}; test perplexity "
                         f"{perplexity_text(test.ppl)} =====")
        return (tuple([m[key] for m in self.metrics] for key in schema.EPOCH_TXT.values())
                + tuple(record[key] for key in schema.TEST_TXT.values()) + (avg_memory,))

    def after_step(self, steps, done):
        """Between two steps: a stop request is honoured (a checkpoint first); --checkpoint_every."""
        if self.run_dir is None:
            return
        if self.dist.any_every(self.stop is not None and self.stop.signum is not None, done):
            self.stop_here(steps, done)
        every = self.settings.checkpoint_every
        if steps.training and every and done % every == 0 and done < steps.total:
            self.save_position(steps.epoch, done)
            self.write_status(schema.RUNNING, steps.epoch, done)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def save_position(self, epoch, done):
        """Checkpoint in the middle of an epoch: its training sums so far go with it."""
        self.train_pass.check(done)  # never save a diverged state
        self.position = Position(epoch, done, self.dist.gather(self.train_pass.snapshot()))
        self.checkpoint()

    def checkpoint(self):
        """Save where the run stands (rank 0 writes; the others wait for it)."""
        if self.run_dir.writes:
            with self.stop.holding():  # a second Ctrl-C waits for the write: a cut checkpoint is lost
                self.run_dir.save_checkpoint({
                    "model": learned_state(self.model), "embeddings_sha256": self.embeddings["sha256"],
                    "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state(),
                    "settings": asdict(self.settings), "position": asdict(self.position),
                    "metrics": self.metrics, "memories": self.memories,
                    "precision": str(self.precision), "git_commit": self.commit, "origin": self.origin,
                    "data": self.data, "threads": torch.get_num_threads(),
                })
        self.dist.barrier()

    def write_status(self, status, epoch, step=None, message=""):
        """`epoch`: the epochs done (0-based); the file counts from 1, as its message and the console do."""
        epochs = self.settings.epochs
        self.run_dir.write_status(status, min(epoch + 1, epochs), step, message, epochs=epochs, done=epoch)

    def stop_here(self, steps, done):
        """At a step boundary where a stop was requested: save, mark interrupted, hand over the signal."""
        epochs, unsaved = self.settings.epochs, None if self.settings.log else "--no_log: nothing saved"
        if steps.mode != "test":  # in validation, the epoch's training sums are saved with its last step
            epoch, at = steps.epoch, done if steps.training else self.train_pass.total
            self.save_position(epoch, at)
            where = f"at epoch {epoch + 1} of {epochs}, step {at}; {unsaved or 'checkpoint saved'}"
        else:  # training is over and its last checkpoint stands
            epoch, at = epochs, 0
            where = f"in the test evaluation after all {epochs} epochs; {unsaved or 'their checkpoint is kept'}"
        self.write_status(schema.INTERRUPTED, epoch, at, message=f"stopped by a signal {where}")
        received = next(s for s in self.dist.gather(self.stop.signum) if s)  # processes agree on one signal
        self.stop.finish(where, received)

    def __enter__(self):
        self.stop = GracefulStop().__enter__()
        try:
            self.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, kind, err, trace):
        try:
            if kind is not None:
                self.ended_by(kind, err)
        except WriteError as error:  # a full disk, a read-only file system: one line
            raise UsageError(str(error)) from None
        finally:
            if self.board is not None:
                self.board.close()
            self.stop.__exit__(kind, err, trace)
            self.stop = None
            self.run_dir.unlock()
        return False

    def ended_by(self, kind, err):
        """The status of a run that raised `err` (re-raised by the caller, or replaced here)."""
        at = self.position.epoch
        if issubclass(kind, TrainingDiverged):
            self.write_status(schema.DIVERGED, err.epoch, err.step, str(err))
        elif issubclass(kind, KeyboardInterrupt):  # a second Ctrl-C: no checkpoint now; the last one stands
            self.write_status(schema.INTERRUPTED, at, None, "stopped at once by a second Ctrl-C; rerun the same "
                              "command to continue from the last checkpoint")
            raise RunInterrupted(signal.SIGINT, "at once (second Ctrl-C); the last checkpoint stands") from None
        elif issubclass(kind, WriteError):  # writing may fail again: the status is kept when it can be
            with contextlib.suppress(WriteError):
                self.write_status(schema.FAILED, at, None, str(err))
            raise UsageError(str(err)) from None
        elif out_of_memory(err):  # one line, not torch's page; the last checkpoint stands
            message = f"out of memory on {self.device} at epoch {at + 1}: lower --batch_size, then rerun to continue"
            self.write_status(schema.FAILED, at, None, message)
            raise UsageError(message) from None
        elif issubclass(kind, Exception) and not issubclass(kind, (RunInterrupted, UsageError)):
            self.write_status(schema.FAILED, at, None, f"{kind.__name__}: {err}")

    def start(self):
        """Write the run's folder (a new one, or the continued one) and say what is happening."""
        s, run_dir = self.settings, self.run_dir
        if self.plan.action == "start":
            run_dir.reset()
        else:
            run_dir.remove_leftovers()
            # a kill between the checkpoint and the logs of an epoch: the checkpoint's own record repairs them
            run_dir.write_epochs(self.metrics)
        run_dir.write_args(dict(asdict(s), device=str(self.device)))
        for line in filter(None, [self.plan.message, *self.notes]):  # what this rerun does, what changed since
            self.say(line)
        write_provenance(self, self.dist.gather(device_name(self.device)))
        if s.tensorboard and run_dir.writes:  # purge_step: epochs logged again (a resume, --force) replace the old
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(run_dir.file("tensorboard"), purge_step=self.position.epoch + 1)
        processes = f", {self.dist.world} processes ({self.dist.backend})" if self.dist.world > 1 else ""
        self.say(f"{model_spec(s.model).display_name} x{s.layers} on {self.device} ({self.precision}{processes}): "
                 f"{count_parameters(self.model)[0]:,} learnable parameters; logs in {run_dir.path}")
        schedule = Schedule(s.epochs, *(steps_of(self.batches[k], s.max_batches) for k in SPLITS), s.batch_size)
        self.clock = RunClock(schedule, self.device.type)
        self.say(plan_text(schedule, self.device, self.precision, self.position.epoch))


def course_run(model, optimizer, args, batches, precision="fp32"):
    """The Run behind the course's train(...) and evaluate(...) on their own: one process, fp32, no folder."""
    settings = from_any(args)
    precision = Precision(precision, next(model.parameters()).device.type)
    return Run(settings, model, TokenNLL(model), optimizer, precision, precision.make_scaler(),
               total_steps=settings.epochs * steps_of(batches, settings.max_batches))  # what the lr schedule spans


def open_run(args, dist=None):
    """The Run of `args` (Arguments, a namespace or a dict), checked; nothing is written but the folder's
    lock, which rank 0 holds until the run is left."""
    s = from_any(args)
    s = validate(s if getattr(args, "smoke_applied", False) else apply_smoke(s))  # main(args) from Python too
    dist = dist or SINGLE
    device = resolve_device(s.device, dist)
    precision = Precision.resolve(s.precision, device)
    precision.configure()
    if precision.name == "bf16" and device.type == "cpu" and not cpu_has_bf16() and dist.is_main:
        print("Warning: this CPU has no native bf16, so --precision bf16 is emulated and runs several times slower "
              "than fp32 (--precision fp32 or auto is faster here).", file=sys.stderr)
    run_dir = RunDir(s.log_dir, s.exp_id, writes=s.log and dist.is_main)
    if run_dir.writes:
        try:
            run_dir.check_writable()
        except RunConflict as err:
            raise UsageError(str(err)) from None
    splits = load_splits(s.data_folder, dist)
    data = data_identity(splits)
    tokens, position, embeddings = load_embeddings(s, splits)
    batches = make_batches(splits, s, device, dist)
    plan = agreed_plan(run_dir, s, dist)
    try:
        seed_experiment(s.seed)
        model = model_spec(s.model).build(s, tokens, position).to(device)
        run = Run(s, model, None, make_optimizer(s, model), precision, precision.make_scaler(), dist, batches,
                  s.epochs * steps_of(batches["train"], s.max_batches), word_table(s, device, dist), run_dir, plan,
                  embeddings, data, commit=git_commit() if dist.is_main else "unknown")
        check_batch_fits(model, s.batch_size, batches["train"].num_items, splits["train"].max_length,
                         precision, dist.world)
        run.origin = {"git_commit": run.commit, "precision": str(precision), "device_name": device_name(device)}
        if plan.action == "resume":
            try:
                restore(run, plan.checkpoint)
            except CheckpointError as err:
                raise UsageError(str(err)) from None
        if s.compile:  # TokenNLL calls sequence_features: that is what is worth compiling
            model.sequence_features = torch.compile(model.sequence_features)
        run.nll = dist.wrap(TokenNLL(model))
        return run
    except BaseException:
        run_dir.unlock()
        raise


def agreed_plan(run_dir, settings, dist=SINGLE):
    """Rank 0 reads the folder and decides; every process gets the same decision (or error)."""
    plan = error = None
    if dist.is_main:
        try:
            run_dir.lock()  # before reading: no other process may change the folder under this decision
            plan = run_dir.plan(asdict(settings), settings.force, DEFAULTS) if settings.log else Plan("start", "")
        except (RunConflict, CheckpointError) as err:
            run_dir.unlock()
            error = str(err)
    # rank 0 broadcasts the decision, not the (large) checkpoint each process loads itself
    action, message, error = dist.broadcast((plan and plan.action, plan and plan.message, error))
    if error:
        raise UsageError(error)
    if dist.is_main:
        return plan
    return Plan(action, message, load_checkpoint(run_dir.path) if action == "resume" else None)


def restore(run, state):
    """Put a checkpoint's state into a freshly prepared run; what changed since goes to run.resumed."""
    restore_model(run.model, state, run.embeddings["sha256"])
    check_data(state, run.data)
    threads, now = state["threads"], torch.get_num_threads()  # the kernels' reductions may split by thread count
    if threads != now and threads <= (os.cpu_count() or threads):
        run.resumed["threads"] = {"checkpoint": threads, "now": now}
        run.notes.append(f"Note: continuing with the run's {threads} CPU threads (this process had {now}), so that "
                         "its numbers stay the same.")
        torch.set_num_threads(threads)
    load_optimizer_state(run.optimizer, state["optimizer"])
    # Parameters and optimizer state are fp32 in every precision: only the fp16 loss scale is not portable.
    saved, now = state["precision"], run.precision.name
    if now == "fp16" and state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    if saved != now:
        fresh = now == "fp16" and not state["scaler"]
        run.resumed["precision_changed"] = {"checkpoint": saved, "now": now, "scaler": "fresh" if fresh else "none"}
        run.notes.append(f"Note: the checkpoint was trained in {saved}; this run continues in {now} on {run.device}"
                         + (" with a fresh gradient scaler" if fresh else "") + " (recorded in provenance.json).")
    run.origin = state["origin"]
    if state["git_commit"] != run.commit:
        run.resumed["code_changed"] = {"checkpoint": state["git_commit"], "now": run.commit}
        run.notes.append(f"Note: the code changed since the checkpoint ({state['git_commit']} -> {run.commit}); "
                         "recorded in provenance.json.")
    set_rng_state(state["rng"])
    run.metrics, run.memories = list(state["metrics"]), list(state["memories"])
    run.position = Position(**state["position"])
    partial, world = run.position.partial, run.dist.world
    if partial and len(partial) != world:  # another number of processes: rank 0 carries the sums
        seconds = max(p["seconds"] for p in partial)
        summed = {k: sum(p.get(k, 0.0) for p in partial) for k in {*partial[0], *partial[-1]} - {"seconds"}}
        zero = dict.fromkeys(summed, 0.0)
        run.position.partial = [dict(summed, seconds=seconds)] + [dict(zero, seconds=seconds)] * (world - 1)


def write_provenance(run, devices):
    """A new run's provenance.json; a continued run keeps its first attempt's record and appends this one."""
    record = provenance(run.settings, run.model, run.device, run.precision, run.embeddings, run.dist, devices)
    record["git_commit"], record["data"] = run.commit, run.data
    if run.plan.action == "resume":  # provenance.json lost (or never written): rebuilt around the checkpoint's origin
        record = run.run_dir.provenance() or dict(record, **run.origin)
        record["resumes"] = list(record.get("resumes", [])) + [dict({
            "at": describe_position(run.position.epoch, run.position.step, run.settings.epochs),
            "git_commit": run.commit, "precision": str(run.precision), "device_name": device_name(run.device)},
            **run.resumed)]
    run.run_dir.write_provenance(record)
