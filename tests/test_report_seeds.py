"""utils.report over seeds: aggregation, Student-t intervals, paired comparisons, missing and
diverged seeds, one seed per configuration. Values are checked against hand computations
(see each fixture's docstring); the report is read without drawing figures where figures are not
what is tested, so these tests stay fast on a shared CPU."""
import math
import statistics
import tempfile
import unittest

from tests.report_fixtures import ReportCase, memory_run, seed_args, write_seed_run, write_stub

from utils.report import markdown, read_report
from utils.report.answers import ONE_SEED
from utils.report.compute import build_groups, shown_run, summarise
from utils.report.plots import member_runs
from utils.report.compute import describe_linear, describe_log, paired_difference, t_quantile
from utils.report.tables import latex_table, run_cell, status_text

T2 = 4.302652729749462  # Student t, 97.5% quantile, 2 degrees of freedom
T1 = 12.706204736174694  # ... 1 degree of freedom


class Statistics(unittest.TestCase):
    def test_linear_mean_sd_and_t_interval(self):
        s = describe_linear([10.0, 12.0, 14.0])
        self.assertEqual((s["n"], s["mean"], s["sd"]), (3, 12.0, 2.0))
        self.assertAlmostEqual(s["half_width"], T2 * 2.0 / math.sqrt(3), places=9)
        self.assertAlmostEqual(s["lo"], 12.0 - T2 * 2.0 / math.sqrt(3), places=9)
        self.assertAlmostEqual(s["hi"], 12.0 + T2 * 2.0 / math.sqrt(3), places=9)

    def test_one_value_has_no_interval_and_nan_is_ignored(self):
        s = describe_linear([5.0, math.nan, None])
        self.assertEqual((s["n"], s["mean"], s["sd"], s["lo"]), (1, 5.0, None, None))
        self.assertIsNone(describe_linear([math.nan]))

    def test_log_space_geometric_mean_and_factor(self):
        s = describe_log([100.0, 400.0])
        self.assertAlmostEqual(s["mean"], 200.0, places=9)  # sqrt(100 * 400)
        self.assertAlmostEqual(s["sd_log"], math.log(4) / math.sqrt(2), places=12)
        # half-width of mean log = t1 * sd / sqrt(2) = t1 * ln 2, so the factor is 2 ** t1
        self.assertAlmostEqual(s["factor"], 2 ** T1, delta=1e-6 * 2 ** T1)
        self.assertAlmostEqual(s["lo"], 200.0 / 2 ** T1, places=9)
        self.assertAlmostEqual(s["hi"] / 200.0, 2 ** T1, delta=1e-6 * 2 ** T1)
        self.assertEqual(describe_log([1e22])["mean"], 1e22)  # one value: exactly itself

    def test_t_quantiles(self):
        self.assertAlmostEqual(t_quantile(1), T1, places=9)
        self.assertAlmostEqual(t_quantile(2), T2, places=9)
        self.assertAlmostEqual(t_quantile(30), 2.042272456301238, places=9)

    def test_paired_difference_not_distinguishable(self):
        # log ratios 0, ln 1.1, 2 ln 1.1: mean ln 1.1, sd ln 1.1, interval ln 1.1 * (1 ± t2 / sqrt 3) holds 0
        c = paired_difference({1: 100.0, 2: 110.0, 3: 121.0}, {1: 100.0, 2: 100.0, 3: 100.0}, log=True)
        self.assertEqual((c["seeds"], c["distinguishable"]), ([1, 2, 3], False))
        self.assertAlmostEqual(c["mean"], 1.1, places=12)
        self.assertAlmostEqual(c["lo"], 1.1 ** (1 - T2 / math.sqrt(3)), places=9)
        self.assertAlmostEqual(c["hi"], 1.1 ** (1 + T2 / math.sqrt(3)), places=9)

    def test_paired_difference_distinguishable_and_unpaired_seeds_ignored(self):
        a = {1: 200.0, 2: 210.0, 3: 190.0, 9: 1.0}  # seed 9 has no partner: not used
        c = paired_difference(a, {1: 100.0, 2: 100.0, 3: 100.0}, log=True)
        self.assertEqual((c["n"], c["distinguishable"]), (3, True))
        self.assertGreater(c["lo"], 1.0)
        linear = paired_difference({1: 10.0, 2: 12.0}, {1: 9.0, 2: 10.0})
        self.assertEqual((linear["mean"], linear["distinguishable"]), (1.5, False))  # diffs 1, 2
        self.assertAlmostEqual(linear["hi"] - linear["mean"], T1 * 0.5, places=9)  # sd 1/sqrt 2, over sqrt 2

    def test_one_shared_seed_cannot_be_tested(self):
        c = paired_difference({42: 100.0, 1: 120.0}, {42: 90.0, 2: 95.0}, log=True)
        self.assertIsNone(c["distinguishable"])
        self.assertEqual(c["seeds"], [42])
        self.assertIn("1 shared seed", c["why"])


class SeedsOnFabricatedLogs(ReportCase):
    """LSTM, one layer, seeds 42, 1, 2 (3 epochs each; best val ppl = the last epoch's):
    - config 1 (adam): best 100, 200, 400; 10, 12, 14 s/epoch; test 110, 220, 440.
    - config 2 (adamw): best 150 (seed 42), 160 (seed 1); seed 2 diverged (its 5000 is not averaged).
    - config 3 (sgd): best 900, 1000 (seeds 42, 1); seed 2 was never run.
    - config 4 (momentum): seed 42 only (best 1200); seed 1 failed before its first epoch; seed 2 not run.
    So adamw wins; against adam (ratios 1.5, 0.8) it is not distinguishable, against sgd (ratios
    1/6, 0.16) it is, and against momentum (one shared seed) it cannot be tested."""

    @classmethod
    def write_logs(cls, logs):
        for seed, best, sec in ((42, 100.0, 10.0), (1, 200.0, 12.0), (2, 400.0, 14.0)):
            write_seed_run(logs, 1, seed, best, sec, test_ppl=best * 1.1)
        write_seed_run(logs, 2, 42, 150.0, 11.0, test_ppl=155.0)
        write_seed_run(logs, 2, 1, 160.0, 11.0, test_ppl=165.0)
        write_seed_run(logs, 2, 2, 5000.0, 11.0, status="diverged")
        write_seed_run(logs, 3, 42, 900.0, 9.0, test_ppl=950.0)
        write_seed_run(logs, 3, 1, 1000.0, 9.0, test_ppl=1050.0)
        write_seed_run(logs, 4, 42, 1200.0, 9.5, test_ppl=1250.0)
        write_stub(logs, "4-seed1", seed_args(4, 1, epochs=3), "failed", "CUDA out of memory")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.groups = {g.name: g for g in cls.report.groups}

    def test_geometric_mean_and_t_interval_of_best_valid_ppl(self):
        s = self.groups["1"].stats["best_valid_ppl"]
        self.assertEqual(s["n"], 3)
        self.assertAlmostEqual(s["mean"], 200.0, places=9)  # (100 * 200 * 400) ** (1/3)
        self.assertAlmostEqual(s["sd_log"], math.log(2), places=12)  # logs spaced by ln 2
        self.assertAlmostEqual(s["factor"], 2 ** (T2 / math.sqrt(3)), places=9)
        self.assertAlmostEqual(self.groups["1"].stats["test_ppl"]["mean"], 220.0, places=9)

    def test_time_per_epoch_geometric_mean_and_log_interval(self):
        # Seconds are positive: summarised in log space like perplexities, so no bound goes below zero.
        s = self.groups["1"].stats["time_per_epoch_s"]
        logs = [math.log(x) for x in (10.0, 12.0, 14.0)]
        sd = statistics.stdev(logs)
        self.assertAlmostEqual(s["mean"], 1680 ** (1 / 3), places=9)
        self.assertAlmostEqual(s["sd_log"], sd, places=12)
        self.assertAlmostEqual(s["lo"], 1680 ** (1 / 3) * math.exp(-T2 * sd / math.sqrt(3)), places=9)
        self.assertAlmostEqual(s["hi"], 1680 ** (1 / 3) * math.exp(T2 * sd / math.sqrt(3)), places=9)
        self.assertAlmostEqual(self.groups["1"].stats["train_time_s"]["mean"], 3 * 1680 ** (1 / 3), places=9)

    def test_diverged_seed_is_reported_not_averaged(self):
        g = self.groups["2"]
        self.assertEqual((sorted(g.members), g.absent, g.n, g.n_of), ([1, 42], [(2, "diverged")], 2, 3))
        self.assertAlmostEqual(g.stats["best_valid_ppl"]["mean"], math.sqrt(150 * 160), places=9)
        self.assertIn("- 2: LSTM x1, adamw: n=2 of 3 (seed 2 diverged)", self.md)
        self.assertIn("| 2 | LSTM x1 | adamw | 1e-3 | 2 of 3 |", self.md)

    def test_missing_and_failed_seeds_are_reported(self):
        self.assertEqual(self.groups["3"].absent, [(2, "not run")])
        self.assertEqual(self.groups["4"].absent, [(1, "failed, no completed epoch"), (2, "not run")])
        self.assertIn("n=1 of 3 (seed 1 failed, no completed epoch; seed 2 not run)", self.md)
        self.assertIn(("4-seed1", "no completed epoch (status failed: CUDA out of memory)"), self.report.left_out)

    def test_best_and_paired_verdicts(self):
        course = self.report.answers["course"]
        self.assertEqual(course["best"].name, "2")
        verdicts = {g.name: c["distinguishable"] for g, c in course["best_versus"]}
        self.assertEqual(verdicts, {"1": False, "3": True, "4": None})
        ratio = dict((g.name, c) for g, c in course["best_versus"])["1"]
        self.assertAlmostEqual(ratio["mean"], math.sqrt(1.5 * 0.8), places=12)  # 150/100 and 160/200
        self.assertFalse(course["one_seed"])

    def test_verdicts_in_words(self):
        self.assertIn("**Not distinguishable at 95%** from 1: LSTM x1, adam (×1.1 [", self.md)
        self.assertIn("paired over seeds 1, 42)", self.md)
        self.assertIn("Distinguishable at 95% (paired over shared seeds) from 3 (sgd)", self.md)
        self.assertIn("Cannot be tested against 4 (momentum) (1 shared seed: no interval can be computed", self.md)
        self.assertIn("Student's t with n-1 degrees of freedom", self.md)

    def test_latex_shows_n_of_and_factor(self):
        tex = latex_table(self.report.groups)
        row = next(line for line in tex.splitlines() if line.startswith("1 &"))
        self.assertIn(r"200 $\times/\div$ " + f"{2 ** (T2 / math.sqrt(3)):.2f}", row)
        self.assertIn("& 2/3 &", next(line for line in tex.splitlines() if line.startswith("2 &")))
        self.assertIn("n: completed seeds", tex)


class GroupingRules(unittest.TestCase):
    def groups(self, runs):
        rows = [summarise(r) for r in runs]
        return build_groups(runs, rows), rows

    def test_other_settings_are_not_seeds_of_the_configuration(self):
        runs = [memory_run("1", 1), memory_run("1-seed1", 1, seed=1),
                memory_run("old", 1, seed=3, valid=(300.0, 200.0, 150.0), seconds=(10.0,) * 3)]  # 3 epochs, not 2
        (group,), rows = self.groups(runs)
        self.assertEqual((sorted(group.members), group.absent), ([1, 42], []))
        self.assertEqual(rows[2]["not_counted_why"], "made with other epochs than 1, the run its configuration's "
                                                     "seeds share")

    def test_course_and_tuned_arms_are_grouped_by_lr_from_not_folder_names(self):
        runs = [memory_run("3", 3), memory_run("3-tuned", 3, lr=0.3),  # no lr_from: the course's arm, custom lr
                memory_run("x", 3, seed=1, lr=0.3, lr_from="logs/tuning/tuning.json")]
        groups, rows = self.groups(runs)
        self.assertEqual([(g.name, g.arm) for g in groups], [("3", "course"), ("3-tuned", "tuned")])
        self.assertEqual([r["arm"] for r in rows], ["course", "course", "tuned"])
        self.assertNotIn("tuned lr", rows[1]["label"])  # the folder's name is shown, never a tuned label
        self.assertEqual((run_cell(rows[1], "lr"), run_cell(rows[2], "lr")), ("0.3", "0.3 (tuned)"))
        self.assertIn("made with other lr", rows[1]["not_counted_why"])
        self.assertEqual(groups[1].label, "3-tuned: LSTM x1, sgd (lr 0.3)")

    def test_a_configuration_whose_only_epochs_diverged_is_drawn_from_that_run(self):
        runs = [memory_run("7-seed1", 7, seed=1, valid=(5000.0, math.inf), status="diverged")]
        stub = memory_run("7", 7, valid=(), seconds=(), status="failed")  # seed 42 never finished an epoch
        stub.args["epochs"] = 2  # as planned: the same settings as seed 1
        rows = [summarise(r) for r in runs]
        (group,) = build_groups(runs, rows, [stub])
        self.assertEqual((group.reference.exp_id, shown_run(group).exp_id), ("7", "7-seed1"))
        self.assertEqual(status_text(group), "diverged")
        self.assertEqual(group.stats["best_valid_ppl"]["mean"], 5000.0)
        self.assertEqual([r.exp_id for r in member_runs(group)], ["7-seed1"])
        self.assertEqual(group.absent, [(1, "diverged"), (42, "failed, no completed epoch")])

    def test_one_seed_per_configuration_says_no_interval(self):
        runs = [memory_run("1", 1, valid=(200.0, 100.0)), memory_run("2", 2, valid=(200.0, 150.0))]
        groups, _ = self.groups(runs)
        self.assertTrue(all(g.stats["best_valid_ppl"]["lo"] is None for g in groups))
        with tempfile.TemporaryDirectory() as tmp:
            write_seed_run(tmp, 1, 42, 100.0, 10.0, test_ppl=110.0)
            write_seed_run(tmp, 2, 42, 150.0, 10.0, test_ppl=160.0)
            report = read_report(tmp, tmp)
        self.assertTrue(report.answers["course"]["one_seed"])
        self.assertIn(ONE_SEED, markdown.render(report, "cmd"))
        tex = latex_table(report.groups)
        self.assertIn("One seed per configuration, so no interval can be computed", tex)
        self.assertNotIn(" & n & ", tex)


if __name__ == "__main__":
    unittest.main()
