"""π0-style flow-matching VLA policy: ``Policy(Config.preset("nano"), obs_space, action_space)``."""

from trainers.policies.flow.config import PRESETS, Config
from trainers.policies.flow.modeling import Policy

__all__ = ["PRESETS", "Config", "Policy"]
