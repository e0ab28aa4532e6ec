"""What the report says must be true at a glance (issue 21 section 3, issue 22's positive intervals):
ties read as ties, the per-optimizer table never pools two models, a skipped run's summary line
shows its numbers, figure links survive spaces, coinciding curves stay visible, titles are one
short line, time intervals never go below zero, and --vocab_folder names one default."""
import math
import os
import tempfile
import unittest
from urllib.parse import unquote

from tests.report_fixtures import memory_run

from utils.report import Report, markdown
from utils.report.answers import headline_lines, ranking_lines
from utils.report.compute import arm_answers, build_groups, summarise
from utils.report.plots import coinciding, plot_group, plot_run
from utils.report.compute import describe_linear, describe_log
from utils.report.tables import group_table


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
