"""One run, start to end: prepare(settings) -> Run, then fit, then test; execute() does all three.

prepare() checks everything (settings, device, data, embeddings, what the run folder holds)
before anything is written, so bad input costs nothing. A rerun of an unfinished, interrupted,
failed or diverged run continues from its last checkpoint, or starts over when there is none,
and says which in one line; --force starts over; a completed run is never overwritten silently.
"""
import contextlib
import math
import signal
import sys
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from utils.gpu_usage import get_gpu_memory_usage, peak_gpu_memory_mb
from utils.models.base import TokenNLL
from utils.models.registry import model_spec
from utils.runs import schema
from utils.runs.atomic import WriteError
from utils.runs.checkpoint import CheckpointError, learned_state, load_checkpoint, restore_model
from utils.runs.provenance import count_parameters, device_name, git_commit
from utils.runs.run_dir import Plan, RunConflict, RunDir
from utils.torch_utils import cpu_has_bf16, rng_state, seed_experiment, set_rng_state
from utils.train.distributed import SINGLE
from utils.train.inputs import load_embeddings, load_splits, make_batches, resolve_device, word_table
from utils.train.loop import Totals, TrainingDiverged, evaluate_split, train_epoch
from utils.train.optim import load_optimizer_state, make_optimizer
from utils.train.precision import Precision
from utils.train.progress import Reporter, RunClock, Schedule, perplexity_text, plan_text
from utils.train.resume import restore_scaler, resume_notes, write_provenance
from utils.train.settings import UsageError, to_dict, validate
from utils.train.stop import GracefulStop, RunInterrupted


@dataclass
class Position:
    epoch: int = 0  # the epoch in progress (0-based); == epochs once training is over
    step: int = 0  # training steps of that epoch already done
    partial: Optional[list] = None  # each process's Totals.snapshot() of that epoch's training so far


@dataclass
class RunResult:
    exp_id: str
    path: str
    epochs: list  # one metrics.jsonl record per epoch (utils.runs.schema.EPOCH_KEYS)
    test: dict  # utils.runs.schema.TEST_KEYS
    avg_memory_mb: float  # mean steady-state CUDA memory over epochs; NaN on a CPU (not measured)

    @property
    def best_valid_ppl(self):
        return min(m["valid_ppl"] for m in self.epochs)


@dataclass
class Run:
    settings: object
    dist: object
    device: torch.device
    precision: Precision
    run_dir: RunDir
    plan: Plan
    model: torch.nn.Module  # unwrapped: what checkpoints save
    nll: torch.nn.Module  # TokenNLL(model), wrapped in DDP with several processes
    optimizer: object
    scaler: object
    batches: dict
    word_table: Optional[torch.Tensor]
    embeddings: dict  # path, sha256 and how the file was made
    position: Position = field(default_factory=Position)
    metrics: list = field(default_factory=list)
    memories: list = field(default_factory=list)
    clock: Optional[RunClock] = None  # the whole run's time left, shared by its progress lines (start() sets it)
    stop: Optional[GracefulStop] = None  # while fit/test run: defers a second Ctrl-C during checkpoint writes
    commit: str = "unknown"  # the code this process runs (utils.runs.provenance.git_commit)
    origin: dict = field(default_factory=dict)  # code, precision and device of the run's first attempt
    resumed: dict = field(default_factory=dict)  # what changed at this resume (precision, code, scaler)

    def say(self, text):
        if self.dist.is_main:
            print(text, flush=True)


# ----------------------------------------------------------------------------- prepare
def agreed_plan(run_dir, settings, dist=SINGLE):
    """Rank 0 reads the folder and decides; every process gets the same decision (or error)."""
    outcome = None
    if dist.is_main:
        try:
            run_dir.lock()  # before reading: no other process may change the folder under this decision
            plan = run_dir.plan(to_dict(settings), settings.force) if settings.log else Plan("start", "")
            outcome = ("ok", plan)
        except (RunConflict, CheckpointError) as err:
            run_dir.unlock()
            outcome = ("error", str(err))
    shared = outcome if dist.world == 1 or not dist.is_main else _without_checkpoint(outcome)
    kind, value = dist.broadcast(shared)
    if kind == "error":
        raise UsageError(value)
    if dist.is_main:
        return outcome[1]
    checkpoint = load_checkpoint(run_dir.path) if value.action == "resume" else None
    return Plan(value.action, value.message, checkpoint)


def _without_checkpoint(outcome):
    """What rank 0 broadcasts: the decision, not the (large) checkpoint each process loads itself."""
    kind, value = outcome
    return (kind, Plan(value.action, value.message) if kind == "ok" else value)


def prepare(settings, dist=SINGLE):
    """Everything a run needs, checked; nothing is written but the folder's lock, which rank 0 holds
    from here on (execute releases it). UsageError on bad input."""
    s = validate(settings)
    device = resolve_device(s.device, dist)
    try:
        precision = Precision.resolve(s.precision, device)
    except ValueError as err:
        raise UsageError(str(err)) from None
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
    tokens, position, embeddings = load_embeddings(s, splits)
    batches = make_batches(splits, s, device, dist)
    plan = agreed_plan(run_dir, s, dist)
    try:
        return _build(s, dist, device, precision, run_dir, plan, tokens, position, embeddings, batches)
    except BaseException:
        run_dir.unlock()
        raise


def _build(s, dist, device, precision, run_dir, plan, tokens, position, embeddings, batches):
    seed_experiment(s.seed)
    model = model_spec(s.model).build(s.layers, tokens, position, s.learn_embeddings).to(device)
    optimizer = make_optimizer(s, model)
    run = Run(s, dist, device, precision, run_dir, plan, model, None, optimizer, precision.make_scaler(), batches,
              word_table(s, device, dist), embeddings, commit=git_commit() if dist.is_main else "unknown")
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


def restore(run, state):
    """Put a checkpoint's state into a freshly prepared run (any number of processes)."""
    restore_model(run.model, state, run.embeddings["sha256"])
    load_optimizer_state(run.optimizer, state["optimizer"])
    restore_scaler(run, state)
    run.origin = state.get("origin") or dict(run.origin, git_commit="unknown (before checkpoints kept it)")
    if state.get("git_commit", run.commit) != run.commit:
        run.resumed["code_changed"] = {"checkpoint": state["git_commit"], "now": run.commit}
    set_rng_state(state["rng"])
    run.metrics, run.memories = list(state["metrics"]), list(state["memories"])
    run.position = Position(**state["position"])
    partial, world = run.position.partial, run.dist.world
    if partial and len(partial) != world:  # another number of processes: rank 0 carries the sums
        summed = {k: sum(p[k] for p in partial) for k in ("nll_sum", "tokens", "words")}
        seconds = max(p["seconds"] for p in partial)
        zero = dict.fromkeys(summed, 0.0)
        run.position.partial = [dict(summed, seconds=seconds)] + [dict(zero, seconds=seconds)] * (world - 1)


# ----------------------------------------------------------------------------- fit
def start(run, with_test=True):
    """Write the run's folder (a new one, or the continued one) and say what is happening."""
    s = run.settings
    if run.plan.action == "start":
        run.run_dir.reset()
    else:
        run.run_dir.remove_leftovers()
        # a kill between the checkpoint and the logs of an epoch: the checkpoint's own record repairs them
        run.run_dir.write_epochs(run.metrics)
    run.run_dir.write_args(dict(to_dict(s), device=str(run.device)))
    if run.plan.message:
        run.say(run.plan.message)
    for note in resume_notes(run):
        run.say(note)
    devices = run.dist.gather(device_name(run.device))
    write_provenance(run, devices)
    processes = f", {run.dist.world} processes ({run.dist.backend})" if run.dist.world > 1 else ""
    run.say(f"{model_spec(s.model).display_name} x{s.layers} on {run.device} ({run.precision}{processes}): "
            f"{count_parameters(run.model)[0]:,} learnable parameters; logs in {run.run_dir.path}")
    steps = [_steps(run.batches[k], s.max_batches) for k in ("train", "validation", "test")]
    schedule = Schedule(s.epochs, steps[0], steps[1], steps[2] if with_test else 0, s.batch_size)
    run.clock = RunClock(schedule, run.device.type)
    run.say(plan_text(schedule, run.device, run.precision, run.position.epoch))


def _steps(batches, cap):
    return len(batches) if cap is None else min(len(batches), cap)


def _reporter(run, mode, epoch, batches, start_step=0):
    s = run.settings
    return Reporter(mode, _steps(batches, s.max_batches), epoch, s.epochs, s.print_every, s.progress_bar, start_step,
                    enabled=run.dist.is_main, clock=run.clock)


def checkpoint(run):
    """Save where the run stands (rank 0 writes; the others wait for it)."""
    if run.run_dir.writes:
        with holding(run):
            run.run_dir.save_checkpoint({
                "model": learned_state(run.model), "embeddings_sha256": run.embeddings["sha256"],
                "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(), "rng": rng_state(),
                "settings": to_dict(run.settings), "position": asdict(run.position),
                "metrics": run.metrics, "memories": run.memories,
                "precision": str(run.precision), "git_commit": run.commit, "origin": run.origin,
            })
    run.dist.barrier()


def holding(run):
    """A second Ctrl-C waits until the writes inside this have ended (a cut checkpoint is lost)."""
    return run.stop.holding() if run.stop is not None else contextlib.nullcontext()


def write_status(run, status, epoch, step=None, message=""):
    run.run_dir.write_status(status, epoch, step, message, epochs=run.settings.epochs)


def _stop_here(run, stop, epoch, step, totals=None):
    """At a step boundary where a stop was requested: save, mark interrupted, hand over the signal."""
    epochs, logged = run.settings.epochs, run.settings.log
    if totals is not None:
        totals.check_finite(epoch)  # never save a diverged state
        run.position = Position(epoch, step, run.dist.gather(totals.snapshot()))
        checkpoint(run)
        where = f"at epoch {epoch + 1} of {epochs}, step {step}; " + ("checkpoint saved" if logged else "--no_log: "
                                                                      "nothing saved")
    else:  # the test split: training is over and its last checkpoint stands
        where = f"in the test evaluation after all {epochs} epochs; " + ("their checkpoint is kept" if logged else
                                                                        "--no_log: nothing saved")
    write_status(run, schema.INTERRUPTED, epoch, step, message=f"stopped by a signal {where}")
    received = next(s for s in run.dist.gather(stop.signum) if s)  # processes agree on one signal
    stop.finish(where, received)


def _train_hook(run, stop, epoch, total):
    every = run.settings.checkpoint_every

    def hook(steps, totals):
        stopping = run.dist.any_every(stop is not None and stop.requested, steps)
        if stopping:
            _stop_here(run, stop, epoch, steps, totals)
        if every and steps % every == 0 and steps < total:
            totals.check_finite(epoch)
            run.position = Position(epoch, steps, run.dist.gather(totals.snapshot()))
            checkpoint(run)
            write_status(run, schema.RUNNING, epoch, steps)

    return hook


def _eval_hook(run, stop, epoch, step, totals=None):
    def hook(steps, _totals):
        if run.dist.any_every(stop is not None and stop.requested, steps):
            _stop_here(run, stop, epoch, step, totals)

    return hook


def _resumed_totals(run, epoch):
    position = run.position
    if position.epoch != epoch or not position.partial:
        return Totals(run.device)
    return Totals(run.device, **position.partial[run.dist.rank])


def run_epoch(run, epoch, stop=None):
    """Train one epoch (from where a checkpoint left it), validate; returns its metrics record."""
    s, batches = run.settings, run.batches["train"]
    start_step = run.position.step if run.position.epoch == epoch else 0
    memory_before, _ = get_gpu_memory_usage(run.device), peak_gpu_memory_mb(reset=True, device=run.device)
    batches.set_epoch(epoch)
    total = _steps(batches, s.max_batches)
    totals = _resumed_totals(run, epoch)
    reporter = _reporter(run, "train", epoch, batches, start_step)
    tr = train_epoch(run.nll, batches.iterate(start_step), run.optimizer, run.precision, run.scaler, epoch=epoch,
                     start_step=start_step, max_steps=s.max_batches, totals=totals, reporter=reporter,
                     hook=_train_hook(run, stop, epoch, total), dist=run.dist)
    reporter.close()
    reporter = _reporter(run, "valid", epoch, run.batches["validation"])
    va = evaluate_split(run.nll, run.batches["validation"], run.precision, word_table=run.word_table,
                        max_steps=s.max_batches, reporter=reporter, hook=_eval_hook(run, stop, epoch, total, totals),
                        dist=run.dist)
    reporter.close()
    run.memories.append((memory_before + get_gpu_memory_usage(run.device)) / 2)
    peaks = run.dist.gather(peak_gpu_memory_mb(device=run.device))
    return schema.epoch_record({"train": split_values(tr), "valid": split_values(va)}, epoch=epoch + 1,
                               lr=run.optimizer.param_groups[0]["lr"],
                               peak_memory_mb=None if peaks[0] is None else max(peaks),
                               peak_memory_mb_per_rank=None if peaks[0] is None else peaks)


def split_values(result):
    """A pass's EpochResult by the metric table's quantities (utils.runs.schema: "valid_ppl" is the
    validation pass's "ppl"); the schema's entries pick the ones their split records."""
    return {"loss": result.loss, "ppl": result.ppl, "seconds": result.seconds, "tokens": result.tokens,
            "tokens_per_s": result.tokens_per_second, "words": result.words, "word_ppl": result.word_perplexity}


def fit(run, stop=None):
    """Every remaining epoch, each ending with a checkpoint and rewritten per-epoch logs."""
    s = run.settings
    for epoch in range(run.position.epoch, s.epochs):
        write_status(run, schema.RUNNING, epoch, run.position.step if run.position.epoch == epoch else 0)
        record = run_epoch(run, epoch, stop)
        run.metrics.append(record)
        run.position = Position(epoch + 1, 0, None)
        with holding(run):  # the logs follow the checkpoint; a rerun rewrites them from it when a kill cuts between
            checkpoint(run)
            run.run_dir.write_epochs(run.metrics)
        run.say(f"epoch {epoch + 1}/{s.epochs}: train ppl {perplexity_text(record['train_ppl'])}, valid ppl "
                f"{perplexity_text(record['valid_ppl'])} ({record['train_seconds']:.0f}s, "
                f"{record['train_tokens_per_s']:,.0f} tokens/s)")


def finish_without_test(run):
    """End a run that must never look at the test split (the learning-rate search)."""
    write_status(run, schema.COMPLETED, run.settings.epochs, message="validation only (no test evaluation)")
    return RunResult(str(run.settings.exp_id), run.run_dir.path, run.metrics, {}, math.nan)


def test(run, stop=None):
    """Evaluate the test split, write the final logs and the `completed` status."""
    s = run.settings
    reporter = _reporter(run, "test", None, run.batches["test"])
    te = evaluate_split(run.nll, run.batches["test"], run.precision, word_table=run.word_table,
                        max_steps=s.max_batches, reporter=reporter, hook=_eval_hook(run, stop, s.epochs, 0),
                        dist=run.dist)
    reporter.close()
    avg_memory = sum(run.memories) / len(run.memories) if run.memories else math.nan
    result = schema.test_record(split_values(te))
    with holding(run):
        run.run_dir.write_final(result, avg_memory)
        write_status(run, schema.COMPLETED, s.epochs, message=f"test ppl {perplexity_text(te.ppl)}")
    best = min(m["valid_ppl"] for m in run.metrics)
    run.say(f"===== Best validation perplexity: {perplexity_text(best)}; test perplexity {perplexity_text(te.ppl)} =====")
    return RunResult(str(s.exp_id), run.run_dir.path, run.metrics, result, avg_memory)


def execute(settings, dist=SINGLE, with_test=True):
    """prepare -> fit -> test (unless with_test is False), recording how the run ended in its status.json."""
    run = prepare(settings, dist)
    try:
        with GracefulStop() as stop:
            run.stop = stop
            start(run, with_test)
            return _fit_and_test(run, stop, with_test)
    except WriteError as err:  # a full disk, a file system gone read-only: bad input of a kind, one line
        raise UsageError(str(err)) from None
    finally:
        run.stop = None
        run.run_dir.unlock()


def _fit_and_test(run, stop, with_test):
    try:
        fit(run, stop)
        return test(run, stop) if with_test else finish_without_test(run)
    except TrainingDiverged as err:
        write_status(run, schema.DIVERGED, err.epoch, err.step, str(err))
        raise
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint now; the last one stands
        write_status(run, schema.INTERRUPTED, run.position.epoch, None, "stopped at once by a second Ctrl-C; rerun "
                     "the same command to continue from the last checkpoint")
        raise RunInterrupted(signal.SIGINT, "at once (second Ctrl-C); the last checkpoint stands") from None
    except RunInterrupted:
        raise
    except WriteError as err:
        _try_status(run, schema.FAILED, str(err))
        raise
    except Exception as err:
        write_status(run, schema.FAILED, run.position.epoch, None, f"{type(err).__name__}: {err}")
        raise


def _try_status(run, status, message):
    """A status written where writing may fail again (a full disk): kept when it can be."""
    try:
        write_status(run, status, run.position.epoch, None, message)
    except WriteError:
        pass
