"""Train and evaluate an LSTM or MiniGPT1 on Wikitext-2: one run, one configuration, or the study.

    python run_exp.py --model gpt1 --optimizer adamw          # one run, logs in logs/debug
    python run_exp.py --config 6                              # configuration 6 of the study
    python run_exp.py --config all --smoke                    # all 12, tiny budget (CPU check)
    torchrun --nproc_per_node 2 run_exp.py --config 6         # the same run on 2 processes

This file is the loop you edit: main(args) runs one run, train(...) one epoch (the training step
reads top to bottom below), evaluate(...) one pass of exact perplexity. The course notebook imports
train and evaluate; the study (--config, seeds, the lr search, SLURM) runs this same main. The
machinery (run folder, resume, lock, stop, progress, checkpoints) is utils/train/run.py's, called
by name. A new flag is a field of utils/train/settings.py's Arguments, read here as `s.<field>`.
"""
import os
import sys


def _startup_interrupted(kind, value, trace):
    """Ctrl-C while the imports load (seconds on a cold machine): one line, not a traceback."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted while starting: nothing was written.", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, trace)


if __name__ == "__main__":
    sys.excepthook = _startup_interrupted
    os.environ.setdefault("MKL_CBWR", "AUTO")  # before torch loads MKL: its sums do not depend on memory alignment

# Parsing imports no torch: --help and a bad flag answer at once; the functions import it when they run.
from utils.study.parser import check_command, parse, study_options  # noqa: E402 (after the hook above)
from utils.train.settings import Arguments, UsageError  # noqa: F401 (the course's Arguments)
from utils.train.stop import RunInterrupted, stopping_before_training


def train(epoch, model, dataloader, optimizer, args, run=None):
    """One epoch of training; returns (loss, ppl, seconds) as the course's train does (an
    EpochResult: its .values has every per-epoch quantity by name). `run`: the run main() opened;
    None for the course notebook's own loop (float32, one process)."""
    import torch
    from utils.train.optim import scheduled_lr
    from utils.train.passes import Pass, batch_loss
    from utils.train.run import course_run

    run = run or course_run(model, optimizer, args, dataloader)
    s = run.settings
    run.nll.train()
    steps = Pass(run, "train", epoch, dataloader)  # the batches from where a checkpoint left off; progress lines
    for step, batch in steps:  # batch: "source", "target", "mask" (B, T) on the device
        optimizer.zero_grad(set_to_none=True)
        with run.precision.autocast():  # bf16 or fp16 where chosen (--precision); fp32: no-op
            nll = run.nll(batch["source"], batch["target"])  # (B, T) per-token NLL
        loss = batch_loss(nll, batch, run.dist.world)  # the course's loss: mean over sequences of their mean NLL
        run.scaler.scale(loss).backward()  # fp16: the loss is scaled so that small gradients do not underflow
        if s.grad_clip:
            run.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        if s.lr_schedule != "constant" or s.warmup_steps:  # this step's learning rate; constant: the optimizer's
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(s, epoch * steps.total + step, run.total_steps)
        run.scaler.step(optimizer)  # optimizer.step(); fp16: skipped when the gradients overflowed
        run.scaler.update()
        steps.add(nll, batch, loss)  # the epoch's sums, for its exact perplexity
    return steps.result()


def evaluate(epoch, model, dataloader, args, mode="val", run=None):
    """Exact perplexity over the split (or its first max_batches batches); returns (loss, ppl,
    seconds) as the course's evaluate does (an EpochResult)."""
    import torch
    from utils.train.passes import Pass
    from utils.train.run import course_run

    run = run or course_run(model, None, args, dataloader)
    run.nll.eval()
    steps = Pass(run, mode, epoch, dataloader)
    with torch.no_grad(), run.precision.autocast():  # one autocast for the pass: each weight is cast once
        for step, batch in steps:
            nll = run.nll(batch["source"], batch["target"])  # (B, T)
            steps.add(nll, batch)
    return steps.result()


def main(args, dist=None, with_test=True):
    """Train, validate each epoch, test (with_test False: validation only, as the lr search runs);
    returns the course notebook's 10 values: train losses, ppls, times, valid losses, ppls, times,
    test loss, ppl, time, steady-state GPU memory. A rerun continues an unfinished run."""
    from utils.train.run import open_run

    with open_run(args, dist) as run:  # checks everything, locks the run folder, resumes a checkpoint
        for epoch in run.epochs():  # from where a checkpoint left off
            train_result = train(epoch, run.model, run.batches["train"], run.optimizer, args, run)
            valid_result = evaluate(epoch, run.model, run.batches["validation"], args, "valid", run)
            run.end_epoch(train_result, valid_result)  # metrics.jsonl, checkpoint
        test_result = evaluate(None, run.model, run.batches["test"], args, "test", run) if with_test else None
        return run.finish(test_result)  # the test's logs, status `completed`


def run_command(given, study, dist):
    """The exit code of the command (`given`: the run settings typed, `study`: the study's flags)."""
    from utils.study.study import run_study
    from utils.train.settings import apply_smoke

    numbers = check_command(given, study)
    if numbers is None:
        main(apply_smoke(Arguments(**given), explicit=set(given)), dist)
        return 0
    return run_study(numbers, given, study_options(study), dist, main=main)


def run_config(number, **overrides):
    """Configuration `number` of the study with this file's main (the project notebook's call)."""
    from utils.study.sweep import run_config

    return run_config(number, main, **overrides)


def run_sweep(numbers, seeds=None, **overrides):
    """Several configurations (for each of `seeds`, if given), in order, with this file's main."""
    from utils.study.sweep import run_sweep

    return run_sweep(numbers, main, seeds=seeds, **overrides)


def cli(argv=None):
    with stopping_before_training():  # SIGTERM, USR2, HUP while torch loads: one line, not a traceback
        try:
            return _cli(argv)
        except RunInterrupted as err:
            print(f"interrupted by {err}: nothing was written.", file=sys.stderr)
            return err.exit_code


def _cli(argv):
    try:
        given, study = parse(argv)
        check_command(given, study)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from utils.train.distributed import Distributed  # the engine, once the command line is known good
    from utils.train.memory import out_of_memory
    from utils.train.watch import TrainingDiverged

    dist = Distributed.from_env(given.get("device", Arguments.device))
    say = (lambda text: print(text, file=sys.stderr)) if dist.is_main else (lambda text: None)
    try:
        return run_command(given, study, dist)
    except UsageError as err:
        say(f"error: {err}")
        return 2
    except TrainingDiverged as err:
        say(f"diverged: {err}")
        return 1
    except RunInterrupted as err:
        say(f"interrupted by {err}: rerun the same command to continue.")
        return err.exit_code
    except KeyboardInterrupt:
        say("interrupted before training started: nothing was saved, nothing to continue.")
        return 130
    except Exception as err:
        if not out_of_memory(err):
            raise
        say(f"error: out of memory while starting ({type(err).__name__}): lower --batch_size or free some memory.")
        return 2
    finally:
        dist.close()


if __name__ == "__main__":
    sys.exit(cli())
