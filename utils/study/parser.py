"""run_exp.py's command line: every Arguments field as a flag, plus the study's flags. Only typed
flags are returned, so an explicit flag is honoured (or refused) even at its default. No torch."""
import argparse
import dataclasses
import typing

from utils.study import tuning
from utils.study.configs import CONFIGS, parse_config_list
from utils.study.launchers import LAUNCHERS
from utils.train.settings import Arguments, UsageError, check_used, validate

# --help's groups of run settings, each opened by its first field (in Arguments' order).
SECTIONS = {"data_folder": "one run: data", "model": "one run: model", "optimizer": "one run: optimization",
            "exp_id": "one run: experiment (where it is logged)", "num_workers": "one run: miscellaneous",
            "config": "one run: extras"}

EXAMPLES = """\
examples:
  python run_exp.py --model gpt1 --optimizer adamw      one run, logs in logs/debug
  python run_exp.py --config 6                          configuration 6 of the study, logs in logs/6
  python run_exp.py --config all                        all 12: completed runs are skipped, unfinished ones continue
  python run_exp.py --config 2,6 --smoke                the smoke preset (CPU check), logs in logs_smoke/
  torchrun --nproc_per_node 4 run_exp.py --config 12    data-parallel on 4 GPUs, same result as one

exit status: 0 done; 1 a run failed or diverged; 2 bad input (nothing written);
130/143 stopped by Ctrl-C/SIGTERM after saving a checkpoint (rerun the same command to continue)."""

# The study's own flags (not run settings): name -> (default, type, help).
STUDY_FLAGS = {
    "config": (None, str, "configuration(s) to run: N, a list like 1,3,5-8, or all (each run is named after its "
                          "number; run settings below override the configuration where they do not contradict it)"),
    "seeds": (None, str, "run each configuration for each of these seeds, e.g. 0,1,2 (folders <id>-seed<k>); "
                         "default: the course's single run (folder <id>, --seed)"),
    "tune_lr": (False, bool, "first search a learning rate per model and optimizer on a short budget (validation "
                             "only), then run the configurations at the course's lr AND at the chosen one (<id>-tuned)"),
    "tune_grid": (None, str, "grids to search, e.g. 'sgd=0.1,0.3,1;adam=1e-3,3e-3' (default: 5 values per "
                             "optimizer, each optimizer's entry in utils/train/optim.py)"),
    "tune_epochs": (None, int, f"epochs of each search run (default: {tuning.DEFAULT_BUDGET['epochs']})"),
    "tune_batches": (None, int, f"batches per split per epoch of each search run (default: "
                                f"{tuning.DEFAULT_BUDGET['max_batches']}; {tuning.SMOKE_BUDGET['max_batches']} with --smoke)"),
    "launcher": ("inline", str, "; ".join(f"{name}: {entry.help}" for name, entry in LAUNCHERS.items())),
    "partition": (None, str, "SLURM partition (default: the cluster's)"),
    "gpus_per_job": (0, int, "GPUs per job; with more than 1 the job trains data-parallel, one task per GPU"),
    "tasks_per_job": (None, int, "processes per job (default: gpus_per_job, at least 1); on CPUs: Gloo data-parallel"),
    "cpus_per_job": (1, int, "CPUs per task"),
    "mem_gb": (None, int, "memory per job in GB (default: the partition's)"),
    "time": (60, int, "time limit per job in minutes; a job warned before it is checkpointed and requeued"),
    "max_parallel": (4, int, "jobs running at once (the SLURM array's %%K; waves of this size locally)"),
    "status": (False, bool, "show where every run of this sweep stands (SLURM job, status, epoch, best valid ppl)"),
}


def study_options(given):
    """Every study flag: the value given, else its default."""
    return {name: given.get(name, default) for name, (default, _, _) in STUDY_FLAGS.items()}


def _field_type(f):
    """int for Optional[int], str for Optional[str], else the annotation itself."""
    args = [a for a in typing.get_args(f.type) if a is not type(None)]
    return args[0] if args else f.type


def _add_flag(group, name, kind, default, help_text, choices=None):
    if kind is bool:
        group.add_argument(f"--{name}", action="store_true", help=help_text)
        return
    metavar = None if choices or kind is str else {int: "N", float: "X"}[kind]
    if "default" not in help_text:  # the help may name the real default itself
        help_text += f" (default: {'none' if default is None else default})"
    group.add_argument(f"--{name}", type=kind, choices=choices, metavar=metavar, help=help_text)


def _add_setting(group, f):
    if f.name == "log":
        group.add_argument("--no_log", dest="log", action="store_false", help="write no logs or checkpoints")
        group.add_argument("--log", dest="log", action="store_true", help=argparse.SUPPRESS)
        return
    _add_flag(group, f.name, _field_type(f), f.default, f.metadata.get("help", ""), f.metadata.get("choices"))


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line and exit code 2 through the caller's UsageError handling, not argparse's usage dump."""
        raise UsageError(f"{message} (python {self.prog} --help lists every flag).")


def build_parser():
    parser = Parser(
        prog="run_exp.py", argument_default=argparse.SUPPRESS, epilog=EXAMPLES,
        usage="%(prog)s [one run's flags] [--config N|list|all [the study's flags]]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and evaluate an LSTM or MiniGPT1 on Wikitext-2 (IFT6135 assignment 2): one run, "
                    "one configuration of the study, or several.")
    group = None
    for f in dataclasses.fields(Arguments):
        if f.name in SECTIONS:
            group = parser.add_argument_group(SECTIONS[f.name])
        if f.name != "config":  # set by --config
            _add_setting(group, f)
    study = parser.add_argument_group("the study (with --config N|list|all)")
    for name, (default, kind, help_text) in STUDY_FLAGS.items():
        _add_flag(study, name, kind, default, help_text, list(LAUNCHERS) if name == "launcher" else None)
    return parser


def parse(argv=None):
    """(settings the user gave: dict of Arguments fields, the study flags the user gave: dict)."""
    given = vars(build_parser().parse_args(argv))
    study = {k: given.pop(k) for k in list(given) if k in STUDY_FLAGS}
    return given, study


def check_config_flags(numbers, given):
    """Flags that contradict a configuration are refused, never silently dropped or applied."""
    for key in ("model", "layers", "optimizer"):
        clash = [n for n in numbers if key in given and getattr(CONFIGS[n], key) != given[key]]
        if clash:
            raise UsageError(f"--config {clash[0]} sets {key}={getattr(CONFIGS[clash[0]], key)}, not {given[key]}: "
                             f"drop --{key} or run without --config.")
    if "exp_id" in given and len(numbers) > 1:
        raise UsageError("--exp_id names one run; with several configurations each is named after its number.")


def check_command(given, study):
    """The configuration numbers to run (None: one run), or a UsageError, before torch is imported."""
    settings = validate(Arguments(**given))  # the values themselves (a configuration's own values are valid)
    if study.get("config") is None:
        if study:
            raise UsageError(f"--{next(iter(study))} is a flag of the study: add --config N|list|all.")
        check_used(settings.optimizer, given)
        return None
    try:
        numbers = parse_config_list(study["config"])
    except ValueError as err:
        raise UsageError(str(err)) from None
    check_config_flags(numbers, given)
    return numbers
