"""What the report says must be true at a glance (issue 21 section 3, issue 22's positive intervals):
ties read as ties, the per-optimizer table never pools two models, a skipped run's summary line
shows its numbers, figure links survive spaces, coinciding curves stay visible, titles are one
short line, time intervals never go below zero, a --max_batches run is marked with its cap (a smoke
run is one made with --smoke), values of no unit read to 4 significant digits, and --vocab_folder
names one default."""
import csv
import io
import math
import os
import re
import tempfile
import unittest
from urllib.parse import unquote

from tests.report_fixtures import memory_run, write_seed_run

from utils.report import Report, markdown, read_report, summary_lines
from utils.report.answers import headline_lines, ranking_lines
from utils.report.compute import arm_answers, build_groups, summarise
from utils.report.fmt import number_text, stat_text
from utils.report.plots import coinciding, plot_group, plot_run, run_caption
from utils.report.compute import describe_linear, describe_log
from utils.report.tables import csv_text, group_table, latex_table


def groups_of(runs):
    return build_groups(runs, [summarise(r) for r in runs])


class TiesAreTies(unittest.TestCase):
    """LSTM adam and adamw end at 2,325.2 and 2,325.4 (both shown as 2,325); sgd at 9,000."""

    def setUp(self):
        runs = [memory_run("1", 1, valid=(3000.0, 2325.2)), memory_run("2", 2, valid=(3000.0, 2325.4)),
                memory_run("3", 3, valid=(9500.0, 9000.0))]
        self.answers = arm_answers(groups_of(runs))

    def test_equal_values_as_displayed_are_a_tie_not_an_order(self):
        (line,) = ranking_lines(self.answers["optimizer_rankings"], one_seed=True)
        self.assertIn("tie between adam and adamw at 2,325", line)
        self.assertIn("adam 2,325 = adamw 2,325 < sgd 9,000", line)
        self.assertNotIn("adam 2,325 < adamw", line)

    def test_the_headline_names_the_configuration_it_ties_with(self):
        best = headline_lines(self.answers)[1]
        self.assertIn("1: LSTM x1, adam — 2,325 at epoch 2, tied as shown with 2: LSTM x1, adamw", best)

    def test_different_values_keep_their_order(self):
        runs = [memory_run("1", 1, valid=(300.0, 180.0)), memory_run("2", 2, valid=(300.0, 150.0))]
        (line,) = ranking_lines(arm_answers(groups_of(runs))["optimizer_rankings"], one_seed=True)
        self.assertIn("best adamw (best val ppl, lower is better: adamw 150.00 < adam 180.00)", line)


class PerOptimizerWithinModel(unittest.TestCase):
    def test_lstm_and_minigpt1_are_never_averaged_together(self):
        # Pooled over both models adam and adamw would both average 250 and hide opposite rankings.
        runs = [memory_run("1", 1, valid=(500.0, 100.0)), memory_run("2", 2, valid=(500.0, 200.0)),
                memory_run("5", 5, valid=(500.0, 400.0)), memory_run("6", 6, valid=(500.0, 300.0))]
        entries = arm_answers(groups_of(runs))["per_optimizer"]
        self.assertEqual([(e["model"], e["optimizer"], e["members"], round(e["geomean_best_valid_ppl"], 9))
                          for e in entries],
                         [("LSTM", "adam", [1], 100.0), ("LSTM", "adamw", [2], 200.0),
                          ("MiniGPT1", "adamw", [6], 300.0), ("MiniGPT1", "adam", [5], 400.0)])


class PositiveTimeIntervals(unittest.TestCase):
    def test_two_seeds_of_seconds_never_give_a_negative_bound(self):
        seconds = [10.0, 200.0]  # a t interval on the values themselves goes far below zero
        self.assertLess(describe_linear(seconds)["lo"], 0)
        stat = describe_log(seconds)
        gmean = math.sqrt(2000.0)
        half = 12.706204736174694 * abs(math.log(200.0 / 10.0)) / math.sqrt(2) / math.sqrt(2)
        self.assertAlmostEqual(stat["mean"], gmean, places=9)
        self.assertAlmostEqual(stat["lo"], gmean * math.exp(-half), places=9)
        self.assertGreater(stat["lo"], 0)

    def test_the_report_summarises_time_and_memory_in_log_space(self):
        runs = [memory_run("1", 1, seed=0, valid=(300.0, 200.0), seconds=(5.0, 5.0)),
                memory_run("1-seed1", 1, seed=1, valid=(300.0, 210.0), seconds=(100.0, 100.0))]
        (group,) = groups_of(runs)
        for key in ("train_time_s", "time_per_epoch_s"):
            self.assertGreater(group.stats[key]["lo"], 0, key)
        self.assertAlmostEqual(group.stats["time_per_epoch_s"]["mean"], math.sqrt(500.0), places=9)
        table, _ = group_table([group])
        row = table.splitlines()[2]
        self.assertIn("| 44.7 [", row)  # 2 seeds: geometric mean of 5 and 100 s per epoch, then [lo, hi]
        self.assertNotIn("-", row.split("| 44.7 [")[1].split("]")[0])


class FiguresAndLinks(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def test_a_run_name_with_spaces_keeps_a_working_image_link(self):
        out = os.path.join(self.tmp.name, "plots")
        report = Report("logs", out, figures=[os.path.join(out, "experiment_my run [2].png")])
        (link,) = [line for line in markdown.figure_lines(report) if line.startswith("![")]
        self.assertEqual(link, "![experiment_my run \\[2\\].png](experiment_my%20run%20%5B2%5D.png)")
        destination = link[link.index("](") + 2:-1]
        self.assertNotIn(" ", destination)
        self.assertEqual(unquote(destination), "experiment_my run [2].png")

    def test_coinciding_curves_are_all_visible_and_said_to_coincide(self):
        runs = [memory_run("1", 1, valid=(900.0, 300.0)), memory_run("2", 2, valid=(900.0, 300.0)),
                memory_run("3", 3, valid=(5000.0, 2000.0))]
        groups = groups_of(runs)
        self.assertEqual(coinciding(groups), {"1": [], "2": ["1"], "3": []})
        fig = plot_group("lstm_optimizers", groups, [4], os.path.join(self.tmp.name, "c.png"))
        lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
        over = lines["2: LSTM x1, adamw (= 1)"]  # drawn on top of adam's: hollow, larger, dotted
        under = lines["1: LSTM x1, adam"]
        self.assertEqual((over.get_linestyle(), over.get_markerfacecolor()), (":", "none"))
        self.assertGreater(over.get_markersize(), under.get_markersize())
        self.assertNotEqual(over.get_marker(), under.get_marker())
        caption = fig.legends[0].get_title().get_text()
        self.assertIn("2 coincides with 1", caption)
        self.assertIn("configuration 4.", caption)
        self.assertEqual(fig.get_suptitle(), "LSTM (1 layer): optimizers compared")

    def test_a_run_title_is_one_short_line_and_the_device_goes_to_the_caption(self):
        run = memory_run("my run", None, model="lstm", layers=1, optimizer="adam", lr=1e-3)
        run.provenance = dict(device="cpu", device_name="Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz")
        fig = plot_run(run, os.path.join(self.tmp.name, "r.png"))
        self.assertEqual(fig.get_suptitle(), "my run: LSTM x1, adam")
        self.assertIn("Intel(R) Xeon(R) Platinum 8375C", fig.get_supxlabel())
        self.assertEqual(fig.get_supxlabel().count("\n"), 2)  # settings; embeddings and device; best and status

    def test_the_epoch_one_note_suggests_init_stable_only_to_runs_without_it(self):
        far = (math.exp(58.0), 300.0)  # MiniGPT1 at 58 nats/token in epoch 1
        course, stable = memory_run("5", 5, valid=far), memory_run("5", 5, valid=far, init="stable")
        self.assertIn("--init stable", run_caption(course))
        self.assertIn("52-64 nats/token", run_caption(stable))
        self.assertNotIn("--init stable", run_caption(stable))


class ShortRunsAreMarkedForWhatTheyAre(unittest.TestCase):
    """Configuration 1 capped by --max_batches 50, configuration 2 made with --smoke, 3 a full run."""

    @classmethod
    def setUpClass(cls):
        with tempfile.TemporaryDirectory() as tmp:
            write_seed_run(tmp, 1, 42, 300.0, 10.0, test_ppl=310.0, max_batches=50)
            write_seed_run(tmp, 2, 42, 400.0, 10.0, test_ppl=410.0, smoke=True, max_batches=2, epochs=2)
            write_seed_run(tmp, 3, 42, 900.0, 10.0, test_ppl=910.0)
            cls.report = read_report(tmp, tmp)
        cls.md = markdown.render(cls.report, "cmd")

    def test_rows_groups_and_csv(self):
        rows = {r["exp_id"]: r for r in self.report.rows}
        self.assertEqual([rows[k]["status"] for k in "123"],
                         ["completed (max_batches=50)", "completed (smoke)", "completed"])
        records = csv.DictReader(io.StringIO(csv_text(self.report.rows)))
        self.assertEqual([(r["smoke"], r["max_batches"]) for r in records],
                         [("False", "50"), ("True", "2"), ("False", "")])  # only --smoke makes a smoke run
        latex = latex_table(self.report.groups)
        daggered = [line.split(" & ")[0] for line in latex.splitlines() if r"$^\dagger$ &" in line]
        self.assertEqual(daggered, [r"1$^\dagger$", r"2$^\dagger$"])
        self.assertIn("max\\_batches=50", latex.split(r"\caption{")[1].split(r"\label")[0])

    def test_results_md_and_console_notes(self):
        notes = [line for line in self.md.splitlines() if line.startswith("> **")]
        self.assertEqual([n.split("**")[1] for n in notes], ["max_batches=50 runs", "smoke runs"])  # report order
        self.assertTrue(notes[0].endswith("1: LSTM x1, adam."), notes[0])
        self.assertTrue(notes[1].endswith("2: LSTM x1, adamw."), notes[1])
        self.assertIn("first 50 batches of each split", notes[0])  # validation and test too
        printed = [line for line in summary_lines(self.report) if line.startswith("Note:")]
        self.assertEqual([line.split(":")[1] for line in printed], [" 1 max_batches=50 run(s)", " 1 smoke run(s)"])

    def test_figures(self):
        runs = {r.exp_id: r for r in self.report.runs}
        self.assertNotIn("SMOKE", run_caption(runs["1"]))
        self.assertIn("max_batches=50", run_caption(runs["1"]))
        self.assertIn("SMOKE RUN (2 epoch(s), 2 batches/split)", run_caption(runs["2"]))


class ValuesOfNoUnit(unittest.TestCase):
    def test_raw_values_read_to_four_significant_digits(self):
        values = (0.123456789, 123456.789, 3, 2.0, [1.23456, None], math.nan)
        self.assertEqual([number_text(x, "raw") for x in values], ["0.1235", "1.235e5", "3", "2", "[1.235, None]",
                                                                   "nan"])
        seeds = [0.0123456789, 0.0234567891]
        for stat, shown in ((describe_log(seeds), 3), (describe_linear(seeds), 2)):  # m [lo, hi]; m ± half-width
            numbers = re.findall(r"\d[\d.]*", stat_text(stat, "raw"))
            self.assertEqual(len(numbers), shown)
            for number in numbers:
                self.assertLessEqual(len(number.replace(".", "").lstrip("0")), 4, number)


class VocabFolderHelp(unittest.TestCase):
    def test_one_default_is_shown(self):
        from utils.study.parser import build_parser

        text = " ".join(build_parser().format_help().split())
        start = text.index("--vocab_folder VOCAB_FOLDER GPT-1")
        shown = text[start:text.index("--", start + 10)]
        self.assertEqual(shown.count("default"), 1, shown)
        self.assertIn("(default: data/gpt1_bpe)", shown)


if __name__ == "__main__":
    unittest.main()
