"""The study: configurations, sweeps over seeds, the learning-rate search, launchers and the CLI
parser. It drives the engine (utils.train), which never imports it."""
