"""π0-style flow-matching VLA policy: ``FlowPolicy(FlowConfig.from_preset("nano"), obs_space,
action_space)``."""

from trainers.policies.flow.config import PRESETS, FlowConfig
from trainers.policies.flow.modeling import FlowPolicy

__all__ = ["PRESETS", "FlowConfig", "FlowPolicy"]
