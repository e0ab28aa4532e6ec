"""The machinery run_exp.py's loop calls: settings, the run's lifecycle, passes, precision,
optimizers, processes, stop and watch. It never imports the study (utils/study) or run_exp."""
