"""Train and evaluate an LSTM or MiniGPT1 on Wikitext-2: one run, one configuration, or the study.

    python run_exp.py --model gpt1 --optimizer adamw          # one run, logs in logs/debug
    python run_exp.py --config 6                              # configuration 6 of the study
    python run_exp.py --config all --smoke                    # all 12, tiny budget (CPU check)
    torchrun --nproc_per_node 2 run_exp.py --config 6         # the same run on 2 processes

The course notebook imports train, evaluate and main from here (utils.train.course); the
engine lives in utils/train/. This file parses, calls it, prints and sets the exit code.
"""
import importlib
import signal
import sys
import threading


def _startup_interrupted(kind, value, trace):
    """Ctrl-C while the imports load (seconds on a cold machine): one line, not a traceback."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted while starting: nothing was written.", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, trace)


if __name__ == "__main__":
    sys.excepthook = _startup_interrupted

from utils.study.configs import CONFIGS, parse_config_list  # noqa: E402 (after the hook above)
from utils.study.parser import parse, study_options
from utils.train.settings import Arguments, UsageError
from utils.train.stop import before_training

# The engine's names, imported on first use: parsing (and --help, and a bad flag) never waits for torch.
_ENGINE = {"main": "utils.train.course", "train": "utils.train.course", "evaluate": "utils.train.course",
           "run_config": "utils.study.sweep", "run_sweep": "utils.study.sweep",
           "TrainingDiverged": "utils.train.loop"}

__all__ = ["Arguments", "main", "train", "evaluate", "run_config", "run_sweep", "TrainingDiverged", "cli"]


def __getattr__(name):
    if name in _ENGINE:
        return getattr(importlib.import_module(_ENGINE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_config_flags(numbers, given):
    """Flags that contradict a configuration are refused, never silently dropped or applied."""
    for key in ("model", "layers", "optimizer"):
        if key in given:
            clash = [n for n in numbers if getattr(CONFIGS[n], key) != given[key]]
            if clash:
                n = clash[0]
                raise UsageError(f"--config {n} sets {key}={getattr(CONFIGS[n], key)}, not {given[key]}: drop "
                                 f"--{key} or run without --config.")
    if "exp_id" in given and len(numbers) > 1:
        raise UsageError("--exp_id names one run; with several configurations each is named after its number.")


def _device_type(given):
    import torch

    wanted = str(given.get("device", Arguments.device))
    return "cuda" if wanted.startswith("cuda") and torch.cuda.is_available() else "cpu"


def check_command(given, study):
    """The configuration numbers to run (None: one run), or a UsageError; needs no torch, so a typo
    such as --config 2- is answered at once."""
    if study.get("config") is None:
        if study:
            raise UsageError(f"--{next(iter(study))} is a flag of the study: add --config N|list|all.")
        return None
    try:
        numbers = parse_config_list(study["config"])
    except ValueError as err:
        raise UsageError(str(err)) from None
    check_config_flags(numbers, given)
    return numbers


def run(given, study, dist):
    """The exit code of the command."""
    from utils.train.runner import execute
    from utils.train.settings import apply_smoke
    from utils.study.study import run_study

    numbers = check_command(given, study)
    if numbers is None:
        execute(apply_smoke(Arguments(**given), explicit=set(given)), dist)
        return 0
    return run_study(numbers, given, study_options(study), dist)


def cli(argv=None):
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, before_training) if main_thread else None
    try:
        return _cli(argv)
    finally:  # a caller in the same process (a test, a notebook) gets its own handler back
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _cli(argv):
    try:
        given, study = parse(argv)
        check_command(given, study)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from utils.train.distributed import Distributed  # the engine, once the command line is known good
    from utils.train.loop import TrainingDiverged
    from utils.train.stop import RunInterrupted

    dist = Distributed.from_env(_device_type(given))
    say = (lambda text: print(text, file=sys.stderr)) if dist.is_main else (lambda text: None)
    try:
        return run(given, study, dist)
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
    finally:
        dist.close()


if __name__ == "__main__":
    sys.exit(cli())
