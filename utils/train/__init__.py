"""The engine: settings, the epoch loop, the runner, sweeps, precision, optimizers, processes."""
