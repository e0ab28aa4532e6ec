"""The engine: settings, the epoch loop, the runner, precision, optimizers, processes. It never
imports the study (utils.study), which drives it."""
