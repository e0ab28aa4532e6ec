"""utils.report on synthetic logs: empty, partial, diverged, complete and old-notebook runs.

The values are chosen so every answer can be checked by hand (see ReportOnMixedLogs.write_logs).
"""
import csv
import json
import math
import os
import tempfile
import unittest

from tests import fixtures
from tests.report_fixtures import ReportCase, config_args, memory_run, write_notebook_run, write_run

from utils import report
from utils.report.__main__ import main as report_main
from utils.report.compute import averages, best_epoch, build_groups, fastest, summarise
from utils.report.tables import latex_escape
from utils.report.plots import spans_decade, time_unit
from utils.report.read import read_run

INF = float("inf")


def groups_of(runs):
    return build_groups(runs, [summarise(r) for r in runs])


def run_main(argv):
    code, out, _ = fixtures.run_main(report_main, *argv)
    return code, out


class ReportOnNothing(unittest.TestCase):
    def test_missing_log_dir_says_how_to_make_runs(self):
        with tempfile.TemporaryDirectory() as tmp:
            code, out = run_main(["--log_dir", os.path.join(tmp, "logs"), "--out", os.path.join(tmp, "plots")])
            self.assertEqual(code, 2)
            self.assertEqual(len(out.strip().splitlines()), 1)
            self.assertIn("No runs found", out)
            self.assertIn("run_exp.py --config", out)
            self.assertFalse(os.path.exists(os.path.join(tmp, "plots")))

    def test_empty_log_dir_writes_nothing(self):
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "logs"))
            code, out = run_main(["--log_dir", os.path.join(tmp, "logs"), "--out", os.path.join(tmp, "plots")])
            self.assertEqual(code, 2)
            self.assertIn("No runs found", out)
            self.assertFalse(os.path.exists(os.path.join(tmp, "plots")))

    def test_only_unfinished_runs_are_listed_with_reasons(self):
        with tempfile.TemporaryDirectory() as tmp:
            logs = os.path.join(tmp, "logs")
            run_dir = os.path.join(logs, "1")
            os.makedirs(run_dir)
            with open(os.path.join(run_dir, "args.json"), "w") as handle:
                json.dump(config_args(1), handle)
            with open(os.path.join(run_dir, "status.json"), "w") as handle:
                json.dump(dict(status="running", epoch=0, step=7, message="epoch 1, step 7"), handle)
            code, out = run_main(["--log_dir", logs, "--out", os.path.join(tmp, "plots")])
            self.assertEqual(code, 2)
            self.assertIn("left out 1: no completed epoch yet (status running: epoch 1, step 7)", out)
            with open(os.path.join(tmp, "plots", "results.md")) as handle:
                self.assertIn("no completed epoch yet", handle.read())


class ReportCommand(unittest.TestCase):
    def test_one_completed_run_exits_zero(self):
        with tempfile.TemporaryDirectory() as tmp:
            logs, out = os.path.join(tmp, "logs"), os.path.join(tmp, "plots")
            write_run(logs, "9", config_args(9, epochs=2), [150.0, 120.0], [160.0, 110.0], [20.0, 20.0], test_ppl=125.0)
            code, printed = run_main(["--log_dir", logs, "--out", out])
            self.assertEqual(code, 0)
            self.assertIn("Best generalising: 9: LSTM x2, adamw, val ppl 120.00", printed)
            self.assertEqual(sorted(os.listdir(out)), ["compare_lstm_layers.png", "experiment_9.png", "results.csv",
                                                       "results.md", "results.tex", "results_groups.csv"])


class ReportOnMixedLogs(ReportCase):
    """Complete runs 1, 2, 5, 6; an old-notebook run 4 (txt only); run 3 still running with epoch 3
    missing; run 7 diverged; folder "junk" without args.json and run 8 without an epoch."""

    generate = True

    @classmethod
    def write_logs(cls, logs):
        four = dict(status="completed", test_ppl=200.0)
        write_run(logs, "1", config_args(1, epochs=4), [300, 200, 180, 190], [350, 210, 150, 120], [10] * 4, **four,
                  samples=[dict(prompt="the cat", text="sat on the mat")])
        write_run(logs, "2", config_args(2, epochs=4), [250, 170, 160, 165], [260, 180, 140, 130], [12] * 4, **four)
        write_run(logs, "5", config_args(5, epochs=4), [220, 150, 140, 130], [230, 160, 120, 100], [8] * 4, **four,
                  peak_mb=1500.0, steady_mb=1200.0)
        write_run(logs, "6", config_args(6, epochs=4), [210, 145, 125, 128], [215, 150, 110, 90], [9] * 4, **four)
        write_notebook_run(logs, "4", config_args(4, epochs=4), [900, 800, 700, 650], [950, 820, 690, 640],
                           [11] * 4, test_ppl=660.0, steady_mb=4630.0)
        partial = write_run(logs, "3", config_args(3, epochs=4), [5000, 4000, 3000], [5100, 4100, 3100], [10] * 3,
                            status="running")
        renumber_last_epoch(os.path.join(partial, "metrics.jsonl"), 4)
        write_run(logs, "7", config_args(7, epochs=4), [5000, INF], [5200, math.nan], [8, 8], status="diverged")
        os.makedirs(os.path.join(logs, "junk"))
        os.makedirs(os.path.join(logs, "8"))
        with open(os.path.join(logs, "8", "args.json"), "w") as handle:
            json.dump(config_args(8), handle)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.printed = "\n".join(report.summary_lines(cls.report))
        cls.rows = {r["exp_id"]: r for r in cls.report.rows}
        with open(os.path.join(cls.out, "results.csv")) as handle:
            cls.csv = {r["exp_id"]: r for r in csv.DictReader(handle)}
        with open(os.path.join(cls.out, "results.md")) as handle:
            cls.markdown = handle.read()
        with open(os.path.join(cls.out, "results.tex")) as handle:
            cls.latex = handle.read()

    def test_printed_answers(self):
        printed = self.printed
        self.assertIn("Fastest (total training time): 5: MiniGPT1 x1, adam, 32.0 s", printed)
        self.assertIn("Best generalising: 6: MiniGPT1 x1, adamw, val ppl 125.00", printed)

    def test_best_validation_epoch_and_train_ppl_there(self):
        self.assertEqual((self.rows["1"]["best_valid_ppl"], self.rows["1"]["best_epoch"]), (180, 3))
        self.assertEqual(self.rows["1"]["train_ppl_at_best"], 150)
        self.assertEqual((self.rows["6"]["best_valid_ppl"], self.rows["6"]["best_epoch"]), (125, 3))
        self.assertEqual((self.rows["4"]["best_valid_ppl"], self.rows["4"]["best_epoch"]), (650, 4))

    def test_old_notebook_run_is_recognised_from_its_txt_files(self):
        row = self.rows["4"]
        self.assertEqual((row["config"], row["optimizer"], row["status"]), (4, "momentum", "completed"))
        self.assertEqual((row["train_time_s"], row["test_ppl"], row["steady_memory_mb"]), (44.0, 660.0, 4630.0))
        self.assertIsNone(row["params_learnable"])

    def test_partial_and_diverged_runs_are_shown_but_not_compared(self):
        self.assertEqual(self.rows["3"]["status"], "running")
        self.assertEqual(self.rows["7"]["status"], "diverged")
        self.assertEqual(self.rows["7"]["best_valid_ppl"], 5000)
        not_counted = dict(self.report.not_counted)
        self.assertIn("running", not_counted["3: LSTM x1, sgd"])
        self.assertEqual(not_counted["7: MiniGPT1 x1, sgd"], "diverged: diverged run")
        self.assertIn("epoch(s) 3 missing", self.markdown)

    def test_left_out_runs_have_a_reason(self):
        left_out = dict(self.report.left_out)
        self.assertEqual(set(left_out), {"junk", "8"})
        self.assertIn("no args.json", left_out["junk"])
        self.assertIn("no completed epoch", left_out["8"])
        for name, reason in left_out.items():
            self.assertIn(f"`{name}`: {reason}", self.markdown)
            self.assertIn(f"left out {name}: {reason}", self.printed)

    def test_fastest_and_best_generalising(self):
        course = self.report.answers["course"]
        self.assertEqual(course["fastest"].name, "5")
        self.assertEqual(course["fastest_by"], "total training time")
        self.assertEqual(course["best"].name, "6")
        self.assertIsNone(self.report.answers["tuned"])  # no run has a tuned lr

    def test_averages_per_optimizer_and_architecture(self):
        # Within each model: LSTM and MiniGPT1 are never averaged together (sgd runs are not completed).
        entries = self.report.answers["course"]["per_optimizer"]
        self.assertEqual([(a["model"], a["optimizer"]) for a in entries],
                         [("LSTM", "adamw"), ("LSTM", "adam"), ("LSTM", "momentum"),
                          ("MiniGPT1", "adamw"), ("MiniGPT1", "adam")])  # registry order, then best first
        per_optimizer = {(a["model"], a["optimizer"]): a for a in entries}
        self.assertEqual(per_optimizer[("LSTM", "adam")]["members"], [1])
        self.assertEqual(per_optimizer[("MiniGPT1", "adam")]["members"], [5])
        self.assertAlmostEqual(per_optimizer[("LSTM", "adam")]["mean_train_time_s"], 40.0)
        self.assertAlmostEqual(per_optimizer[("LSTM", "adam")]["mean_best_valid_ppl"], 180.0)
        self.assertAlmostEqual(per_optimizer[("MiniGPT1", "adamw")]["geomean_best_valid_ppl"], 125.0)
        self.assertIn("| Model | Optimizer | Configurations |", self.markdown)
        self.assertIn("| MiniGPT1 | adam | 5 | 1 | 32.0 |", self.markdown)
        per_model = {a["model"]: a for a in self.report.answers["course"]["per_architecture"]}
        self.assertAlmostEqual(per_model["LSTM"]["mean_train_time_s"], 44.0)
        self.assertAlmostEqual(per_model["LSTM"]["mean_best_valid_ppl"], 330.0)
        self.assertAlmostEqual(per_model["MiniGPT1"]["mean_best_valid_ppl"], 127.5)

    def test_csv_holds_raw_numbers(self):
        self.assertEqual(list(self.csv), ["1", "2", "3", "4", "5", "6", "7"])
        row = self.csv["6"]
        self.assertEqual((float(row["best_valid_ppl"]), int(row["best_epoch"])), (125.0, 3))
        self.assertEqual((float(row["train_ppl_at_best"]), float(row["train_time_s"])), (110.0, 36.0))
        self.assertEqual((row["params_learnable"], row["counted"]), ("1234567", "True"))
        self.assertEqual(self.csv["5"]["peak_memory_mb"], "1500.0")
        self.assertEqual(self.csv["6"]["peak_memory_mb"], "nan")  # CPU: not measured
        self.assertEqual(self.csv["4"]["peak_memory_mb"], "")  # old notebook: not logged
        self.assertEqual(self.csv["7"]["counted"], "False")

    def test_markdown_answers_memory_and_samples(self):
        self.assertIn("| 5 | MiniGPT1 | 1 | adam |", self.markdown)
        self.assertIn("**Fastest configuration** (by total training time): 5: MiniGPT1 x1, adam", self.markdown)
        self.assertIn("| 6: MiniGPT1 x1, adamw | not measured (CPU) | not measured (CPU) |", self.markdown)
        self.assertIn("| 5: MiniGPT1 x1, adam | 1,500.0 MB | 1,200.0 MB |", self.markdown)
        self.assertIn("sat on the mat", self.markdown)

    def test_latex_is_booktabs_and_escaped(self):
        for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{table}"):
            self.assertIn(rule, self.latex)
        body = self.latex.split(r"\midrule")[1].split(r"\bottomrule")[0]
        self.assertEqual(len(body.strip().splitlines()), 7)
        self.assertNotIn("not measured", body)  # too wide for print; the caption explains n/a
        self.assertEqual(latex_escape("a_b & 50% #1 {x}"), r"a\_b \& 50\% \#1 \{x\}")

    def test_figures_exist_and_are_png(self):
        names = [f"experiment_{i}.png" for i in range(1, 8)] + [
            f"compare_{g}.png" for g in ("lstm_optimizers", "gpt1_optimizers", "lstm_layers", "gpt1_layers")]
        for name in names:
            with open(os.path.join(self.out, name), "rb") as handle:
                self.assertEqual(handle.read(8), b"\x89PNG\r\n\x1a\n", name)
            self.assertIn(f"]({name})", self.markdown)


def renumber_last_epoch(path, epoch):
    """Give the last line of a metrics.jsonl another epoch number: a gap in the logs."""
    with open(path) as handle:
        records = [json.loads(line) for line in handle]
    records[-1]["epoch"] = epoch
    with open(path, "w") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))


class PureFunctions(unittest.TestCase):
    def test_best_epoch_skips_non_finite_and_takes_the_earliest_tie(self):
        epochs = [dict(epoch=1, valid_ppl=INF), dict(epoch=2, valid_ppl=50.0), dict(epoch=3, valid_ppl=50.0)]
        self.assertEqual(best_epoch(epochs)["epoch"], 2)
        self.assertIsNone(best_epoch([dict(epoch=1, valid_ppl=math.nan)]))

    def test_fastest_compares_per_epoch_when_budgets_differ(self):
        runs = [memory_run("1", 1, valid=[100.0] * 10, seconds=[10.0] * 10),  # 100 s, 10 s/epoch
                memory_run("2", 2, valid=[100.0] * 2, seconds=[20.0] * 2),  # 40 s, 20 s/epoch
                memory_run("3", 3, valid=[100.0], seconds=[1.0], status="diverged")]
        group, how, key = fastest(groups_of(runs))
        self.assertEqual((group.name, how.split(" (")[0], key), ("1", "training time per epoch", "time_per_epoch_s"))

    def test_a_rerun_counts_once(self):
        runs = [memory_run("old", 1), memory_run("1", 1)]  # same configuration, same seed
        rows = [summarise(r) for r in runs]
        (group,) = build_groups(runs, rows)
        self.assertEqual([r["counted"] for r in rows], [False, True])
        self.assertIn("(1) is used", rows[0]["not_counted_why"])
        self.assertEqual((group.n, list(group.members), group.absent), (1, [42], []))

    def test_averages_of_counted_groups_only(self):
        runs = [memory_run("3", 3, valid=[100.0], seconds=[10.0]), memory_run("7", 7, valid=[400.0], seconds=[30.0]),
                memory_run("x", None, valid=[1.0], seconds=[1.0], status="diverged", model="lstm", layers=3,
                           optimizer="sgd")]
        (entry,) = averages(groups_of(runs), "optimizer")
        self.assertEqual((entry["n"], entry["members"]), (2, [3, 7]))
        self.assertEqual((entry["mean_train_time_s"], entry["mean_best_valid_ppl"]), (20.0, 250.0))
        self.assertAlmostEqual(entry["geomean_best_valid_ppl"], 200.0)

    def test_log_scale_and_time_units(self):
        self.assertTrue(spans_decade([100.0, 2000.0, INF]))
        self.assertFalse(spans_decade([100.0, 900.0, math.nan]))
        self.assertEqual(time_unit(300)[1], "s")
        self.assertEqual(time_unit(3000)[1], "min")
        self.assertEqual(time_unit(9000)[1], "h")

    def test_reader_tolerates_half_written_and_repeated_lines(self):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = write_run(tmp, "2", config_args(2), [100.0, 90.0], [110.0, 95.0], [5.0, 5.0], status="running")
            with open(os.path.join(run_dir, "metrics.jsonl"), "a") as handle:
                handle.write(json.dumps(dict(epoch=2, train_loss=4.0, train_ppl=54.6, valid_loss=4.1, valid_ppl=60.3,
                                             train_seconds=6.0, valid_seconds=1.0)) + "\n")  # epoch 2 redone
                handle.write('{"epoch": 3, "train_lo')  # killed mid-write
            run, reason = read_run(run_dir)
            self.assertIsNone(reason)
            self.assertEqual([e["valid_ppl"] for e in run.epochs], [100.0, 60.3])
            self.assertTrue(any("line 4" in note for note in run.notes))
            self.assertEqual(summarise(run)["train_time_s"], 11.0)

    def test_uneven_txt_files_keep_only_whole_epochs(self):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = write_notebook_run(tmp, "9", config_args(9), [100.0, 90.0, 80.0], [110.0, 95.0, 85.0],
                                         [5.0] * 3, test_ppl=80.0, steady_mb=math.nan)
            with open(os.path.join(run_dir, "valid_ppl.txt"), "w") as handle:
                handle.write("100.0\n90.0\n")  # killed before the third validation
            run, _ = read_run(run_dir)
            self.assertEqual((len(run.epochs), run.config, run.source), (2, 9, "txt"))
            self.assertTrue(math.isnan(run.test["avg_steady_state_memory"]))

    def test_report_does_not_import_torch(self):
        code = "import sys, utils.report; sys.exit('torch' in sys.modules or 'run_exp' in sys.modules)"
        done = fixtures.run_python("-c", code)
        self.assertEqual(done.returncode, 0, done.stderr)


if __name__ == "__main__":
    unittest.main()
