"""Old path of the study's configurations, kept for the notebook and users: see utils.study.configs."""
from utils.study.configs import CONFIGS, GROUPS, ExperimentConfig, parse_config_list  # noqa: F401
