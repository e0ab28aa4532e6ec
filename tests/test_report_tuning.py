"""utils.report with a learning-rate search: tuning.json rendered (budget, grid, every point, the
choice), its folder never read as a run, and the course arm beside the tuned arm.

Fixture: LSTM x1 sgd (configuration 3) at the course lr 1e-3 with seeds 42 and 1 (best val ppl
2000, 2200) and at the tuned lr 0.3 (300, 330: x0.15 on both seeds); configuration 4 (momentum)
at the course lr (1600) and at lr 0.05 although the search chose 0.03 (a mismatch to flag)."""
import math
import os
import tempfile
import unittest

from tests import fixtures
from tests.report_fixtures import ReportCase, write_seed_run, write_tuning

from utils import report as report_package
from utils.report import markdown, summary_lines
from utils.report.__main__ import main as report_main
from utils.report.read import find_run_dirs

RESULTS = [dict(model="lstm", optimizer="sgd", lr=lr, exp_id=f"lstm-sgd-lr{lr:g}", status=status, best_valid_ppl=ppl)
           for lr, status, ppl in ((0.01, "completed", 900.0), (0.1, "completed", 500.0), (0.3, "completed", 310.0),
                                   (1.0, "diverged", None))]
RESULTS += [dict(model="lstm", optimizer="momentum", lr=0.03, exp_id="lstm-momentum-lr0.03", status="completed",
                 best_valid_ppl=280.0)]


class TuningReport(ReportCase):
    @classmethod
    def write_logs(cls, logs):
        for seed, course, tuned in ((42, 2000.0, 300.0), (1, 2200.0, 330.0)):
            write_seed_run(logs, 3, seed, course, 10.0, test_ppl=course * 1.05)
            write_seed_run(logs, 3, seed, tuned, 10.0, test_ppl=tuned * 1.05, tuned_lr=0.3)
        write_seed_run(logs, 4, 42, 1600.0, 10.0, test_ppl=1700.0)
        write_seed_run(logs, 4, 42, 250.0, 10.0, test_ppl=260.0, tuned_lr=0.05)
        write_tuning(logs, RESULTS, {"lstm/sgd": 0.3, "lstm/momentum": 0.03},
                     grids={"sgd": [0.01, 0.1, 0.3, 1.0], "momentum": [0.03]})

    def test_the_search_folder_is_never_a_run(self):
        self.assertNotIn(os.path.join(self.logs, "tuning"), find_run_dirs(self.logs))
        self.assertEqual(self.report.left_out, [])
        self.assertEqual(sorted(r.exp_id for r in self.report.runs),
                         ["3", "3-seed1", "3-tuned", "3-tuned-seed1", "4", "4-tuned"])

    def test_budget_grid_points_and_choice(self):
        md = self.md
        self.assertIn("(1 epoch(s), 50 batches per split per epoch, 16 sequences per batch, seed 0)", md)
        self.assertIn("Grids: sgd: 0.01, 0.1, 0.3, 1; momentum: 0.03.", md)
        self.assertIn("| LSTM | sgd | 0.01 | completed | 900.00 |  |", md)
        self.assertIn("| LSTM | sgd | 0.3 | completed | 310.00 | **yes** |", md)
        self.assertIn("| LSTM | sgd | 1 | diverged | — |  |", md)
        self.assertIn("Choice: lstm/sgd: lr 0.3; lstm/momentum: lr 0.03.", md)
        table = md.split("## Learning-rate search")[1]
        self.assertLess(table.index("| LSTM | sgd | 0.01"), table.index("| LSTM | sgd | 0.1 "))  # grid order

    def test_arms_are_separate_and_labelled(self):
        groups = {g.name: g for g in self.report.groups}
        self.assertEqual(sorted(groups), ["3", "3-tuned", "4", "4-tuned"])
        self.assertEqual((groups["3"].arm, groups["3-tuned"].arm), ("course", "tuned"))
        self.assertAlmostEqual(groups["3"].stats["best_valid_ppl"]["mean"], math.sqrt(2000 * 2200), places=9)
        self.assertAlmostEqual(groups["3-tuned"].stats["best_valid_ppl"]["mean"], math.sqrt(300 * 330), places=9)
        self.assertEqual(self.report.answers["course"]["best"].name, "4")
        self.assertEqual(self.report.answers["tuned"]["best"].name, "4-tuned")

    def test_course_and_tuned_side_by_side(self):
        self.assertIn("| 3: LSTM x1, sgd | 1e-3 | 2,098 [", self.md)
        self.assertIn("| 0.3 | 314.64 [", self.md)
        # Both seeds improve by exactly x0.15: no spread, so the interval is the point and excludes 1.
        self.assertIn("- 3 (LSTM x1, sgd): course lr 1e-3 -> tuned lr 0.3, best val ppl 2,098 -> 314.64; "
                      "tuned/course distinguishable at 95% (×0.15 [0.15, 0.15], paired over seeds 1, 42).", self.md)
        self.assertIn("- 4 (LSTM x1, momentum): course lr 1e-3 -> tuned lr 0.05, best val ppl 1,600 -> 250.00; "
                      "tuned/course cannot be tested (1 shared seed", self.md)

    def test_per_optimizer_answer_for_both_arms(self):
        self.assertIn("| LSTM | sgd | 2,098 [", self.md)
        self.assertIn("| 314.64 [", self.md)
        self.assertIn("(lr 0.3) |", self.md)
        self.assertIn("- Best optimizer at the course lr: LSTM: momentum.", self.md)
        self.assertIn("- Best optimizer at the tuned lr: LSTM: momentum.", self.md)
        self.assertIn("## Answers at the tuned learning rates", self.md)

    def test_a_tuned_lr_other_than_the_choice_is_flagged(self):
        self.assertIn("**Note:** 4-tuned: LSTM x1, momentum (lr 0.05) ran at lr 0.05 but this search chose 0.03",
                      self.md)

    def test_console_names_the_choice_and_the_tuned_answers(self):
        printed = "\n".join(summary_lines(self.report))
        self.assertIn("Learning-rate search chose: lstm/sgd lr 0.3, lstm/momentum lr 0.03", printed)
        self.assertIn("At tuned lr: Best generalising: 4-tuned: LSTM x1, momentum (lr 0.05), val ppl 250.00", printed)


class OnlyTheSearch(unittest.TestCase):
    def test_a_search_without_study_runs_is_summarised_and_exits_2(self):
        with tempfile.TemporaryDirectory() as tmp:
            logs, out = os.path.join(tmp, "logs"), os.path.join(tmp, "plots")
            write_tuning(logs, RESULTS, {"lstm/sgd": 0.3}, grids={"sgd": [0.01, 0.1, 0.3, 1.0]})
            code, printed, _ = fixtures.run_main(report_main, "--log_dir", logs, "--out", out)
            self.assertEqual(code, 2)
            self.assertIn("No runs found in", printed)
            self.assertIn("only the learning-rate search's record", printed)
            with open(os.path.join(out, "results.md")) as handle:
                md = handle.read()
            self.assertIn("| LSTM | sgd | 0.3 | completed | 310.00 | **yes** |", md)
            self.assertEqual(sorted(os.listdir(out)), ["results.md"])


class UnusableTuningRecord(unittest.TestCase):
    def test_a_broken_record_is_reported_not_fatal(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_seed_run(tmp, 1, 42, 100.0, 10.0, test_ppl=110.0)
            os.makedirs(os.path.join(tmp, "tuning"))
            with open(os.path.join(tmp, "tuning", "tuning.json"), "w") as handle:
                handle.write('{"budget": ')
            report = report_package.read_report(tmp, tmp)
            self.assertIn("tuning.json is unreadable", report.tuning_problem)
            self.assertIn("could not be used: tuning.json is unreadable", markdown.render(report, "cmd"))
            self.assertEqual([r.exp_id for r in report.runs], ["1"])


if __name__ == "__main__":
    unittest.main()
