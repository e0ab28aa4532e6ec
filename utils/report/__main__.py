"""`python -m utils.report --log_dir logs --out plots`: see utils.report."""
import argparse
import os
import sys

from utils.report import HOW_TO_RUN, __doc__ as REPORT_DOC, generate_report, summary_lines


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m utils.report", description=REPORT_DOC.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m utils.report --log_dir logs --out plots\n"
               "  python -m utils.report --log_dir logs_smoke --out plots_smoke     # the smoke runs\n\n"
               "exit status: 0 when a run was reported; 2 when there was nothing to report.")
    parser.add_argument("--log_dir", default="logs", help="folder of run folders (default: logs)")
    parser.add_argument("--out", default="plots", help="folder for figures and tables (default: plots)")
    options = parser.parse_args(argv)
    hint = HOW_TO_RUN.format(log_dir=options.log_dir)
    if not os.path.isdir(options.log_dir):
        print(f"No runs found: {options.log_dir} does not exist; {hint}")
        return 2
    report = generate_report(options.log_dir, options.out)
    if not report.runs and not report.left_out:
        search = f" (only the learning-rate search's record: see {report.tables['md']})" if report.tables else ""
        print(f"No runs found in {options.log_dir}{search}; {hint}")
        return 2
    print("\n".join(summary_lines(report)))
    if not report.runs:
        print(f"Nothing to plot yet (see {report.tables['md']}); {hint}")
    return 0 if report.runs else 2

if __name__ == "__main__":
    sys.exit(main())
