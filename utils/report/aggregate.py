"""Runs of one configuration and one arm (course lr or tuned lr) gathered over seeds and summarised.

Runs are grouped by what args.json says they trained (configuration number, else model, layers
and optimizer) and by their arm (describe.run_arm: lr_from set or not), never by folder names.
Within a group only runs made with the same settings (utils.runs.schema.SAME_RUN_FIELDS except
the seed, and the same embeddings file) are seeds of one experiment; one completed run per seed
is used. A seed that diverged, failed, is still running or was not run at all is listed with its
reason and left out of the averages, so "n=2 of 3 (seed 1 diverged)" is never silently n=2.
"""
from dataclasses import dataclass, field

from utils.study.configs import CONFIGS
from utils.report.describe import COURSE, TUNED, config_text, embeddings_sha, is_smoke, run_arm, run_seed
from utils.report.fmt import lr_text
from utils.report.stats import describe_linear, describe_log
from utils.runs import schema

SEED_FIELDS = tuple(f for f in schema.SAME_RUN_FIELDS if f != "seed")
# How seeds combine (schema.RunMetric.over_seeds): perplexities, times and memory are positive, so
# their intervals are taken in log space and never go below zero (a t interval on two seeds' seconds can).
OVER_SEEDS = {"gmean": describe_log, "mean": describe_linear}


@dataclass
class SeedGroup:
    config: int | None
    arm: str  # COURSE or TUNED
    what: tuple  # (model, layers, optimizer)
    runs: list = field(default_factory=list)  # RunRecords (and stubs without epochs), report order
    rows: dict = field(default_factory=dict)  # exp_id -> results row, for runs with an epoch
    reference: object = None  # the run whose settings the seeds share
    members: dict = field(default_factory=dict)  # seed -> counted row, sorted by seed
    absent: list = field(default_factory=list)  # (seed, short reason) of seeds not averaged
    stats: dict = field(default_factory=dict)  # metric -> stats.describe_* dict (or None)

    @property
    def name(self):
        """"3", "3-tuned" (schema.tuned_run_id), or a custom run's folder."""
        if self.config is None:
            return self.reference.exp_id
        return schema.tuned_run_id(str(self.config)) if self.arm == TUNED else str(self.config)

    @property
    def label(self):
        """E.g. "3: LSTM x1, sgd" or "3-tuned: LSTM x1, sgd (lr 0.3)"."""
        args = self.reference.args
        return f"{self.name}: {config_text(args)}" + (f" (lr {lr_text(args.get('lr'))})" if self.arm == TUNED else "")

    @property
    def n(self):
        return len(self.members)

    @property
    def n_of(self):
        return len(self.members) + len(self.absent)

    def values(self, key):
        """seed -> the counted runs' value of a results-row key."""
        return {seed: row[key] for seed, row in self.members.items()}


def seed_order(seed):
    """Seeds sort as numbers (2 before 10); anything odd in args.json sorts after them."""
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def group_key(run):
    return (run.config if run.config is not None else what_of(run), run_arm(run.args))


def what_of(run):
    return (run.args.get("model"), run.args.get("layers"), run.args.get("optimizer"))


def settings_differ(a, b):
    """Settings (and the embeddings file) on which two runs differ; a field either run did not
    record is no difference (old runs record fewer fields)."""
    differ = [f for f in SEED_FIELDS if f in a.args and f in b.args and a.args[f] != b.args[f]]
    shas = embeddings_sha(a), embeddings_sha(b)
    return differ + (["embeddings"] if None not in shas and shas[0] != shas[1] else [])


def canonical_ids(group, seed):
    """Folder names the sweep gives this configuration's run with `seed` (schema's ids)."""
    if group.config is None:
        return ()
    base = str(group.config)
    ids = (base, schema.seed_run_id(base, seed))
    return tuple(schema.tuned_run_id(i) for i in ids) if group.arm == TUNED else ids


def choose_reference(group):
    """The run whose settings most runs of the group share; ties go to the configuration's own
    folder ("3", "3-tuned"), then to the first folder."""
    base = canonical_ids(group, None)[:1]

    def score(i_run):
        i, run = i_run
        agree = sum(not settings_differ(run, other) for other in group.runs)
        return (-agree, run.exp_id not in base, i)

    return min(enumerate(group.runs), key=score)[1]


def short_reason(run, row):
    """Why a seed is not averaged, in a word or two ("diverged", "running", "failed")."""
    if row is None:
        return f"{run.status}, no completed epoch"
    return run.status if run.status != "completed" else row["not_counted_why"]


def pick_members(group):
    """Mark rows of other settings or duplicate seeds as not counted; fill members and absent."""
    ref = group.reference
    candidates = {}
    for run in group.runs:
        row = group.rows.get(run.exp_id)
        differ = settings_differ(run, ref)
        if differ:
            if row is not None and row["counted"]:
                row.update(counted=False, not_counted_why=f"made with other {', '.join(differ)} than {ref.exp_id}, "
                                                          f"the run its configuration's seeds share")
            continue
        candidates.setdefault(run_seed(run.args), []).append((run, row))
    for seed in sorted(candidates, key=seed_order):
        counted = [(run, row) for run, row in candidates[seed] if row is not None and row["counted"]]
        if not counted:
            group.absent.append((seed, short_reason(*candidates[seed][0])))
            continue
        keep = min(counted, key=lambda rr: rr[0].exp_id not in canonical_ids(group, seed))[1]
        group.members[seed] = keep
        for _, row in counted:
            if row is not keep:
                row.update(counted=False, not_counted_why=f"another run of {group.name} with seed {seed} "
                                                          f"({keep['exp_id']}) is used")


def add_not_run(groups):
    """Seeds other configurations of the same arm ran but this one did not: listed as "not run",
    since a comparison over seeds would otherwise hide that this configuration has fewer. Custom
    runs (no configuration number) are not part of the study's seed plan and are left alone."""
    for arm in (COURSE, TUNED):
        same_arm = [g for g in groups if g.arm == arm and g.config is not None]
        seeds = set()
        for g in same_arm:
            seeds |= set(g.members) | {s for s, _ in g.absent}
        for g in same_arm:
            have = set(g.members) | {s for s, _ in g.absent}
            g.absent += [(s, "not run") for s in seeds - have]
            g.absent.sort(key=lambda seed_why: seed_order(seed_why[0]))


def shown_run(group):
    """The run that stands for a group with no completed seed: the reference when it logged an
    epoch, else the first run that did (a stub of a failed seed has nothing to show)."""
    if group.reference.exp_id in group.rows:
        return group.reference
    return next((run for run in group.runs if run.exp_id in group.rows), group.reference)


def summarise_group(group):
    rows = list(group.members.values())
    if not rows:  # nothing completed: show one run's own numbers, flagged by its status
        rows = [group.rows[shown_run(group).exp_id]] if group.rows else []
    for m in schema.RUN_METRICS:
        group.stats[m.key] = OVER_SEEDS[m.over_seeds]([r[m.key] for r in rows])
    return group


def build_groups(runs, rows, stubs=()):
    """SeedGroups of the runs (RunRecords with their results rows, in the same order) and of the
    stubs (left-out folders with args.json), in report order; updates rows' counted flags."""
    groups = {}
    by_id = {row["exp_id"]: row for row in rows}
    for run in list(runs) + list(stubs):
        key = group_key(run)
        group = groups.setdefault(key, SeedGroup(run.config, key[1], what_of(run)))
        group.runs.append(run)
        if run.exp_id in by_id:
            group.rows[run.exp_id] = by_id[run.exp_id]
    ordered = sorted(groups.values(), key=lambda g: (g.config if g.config is not None else len(CONFIGS) + 1,
                                                      g.arm != COURSE, str(g.what)))
    for group in ordered:
        group.reference = choose_reference(group)
        pick_members(group)
    add_not_run(ordered)
    # A configuration whose only folders have no completed epoch is listed as left out, not tabled.
    return [summarise_group(g) for g in ordered if g.rows]


def absent_text(group):
    """E.g. "seed 1 diverged; seed 3 not run"."""
    return "; ".join(f"seed {s} {why}" for s, why in group.absent)


def count_text(group):
    """E.g. "n=2 of 3 (seed 1 diverged)", or "n=3"."""
    return f"n={group.n} of {group.n_of} ({absent_text(group)})" if group.absent else f"n={group.n}"


def status_text(group):
    """"completed", the seeds not averaged and why, or the one run's status when none completed."""
    if not group.members:
        run = shown_run(group)
        return group.rows[run.exp_id]["status"] if run.exp_id in group.rows else run.status
    smoke = " (smoke)" if is_smoke(group.reference.args) else ""
    return (absent_text(group) if group.absent else "completed") + smoke
