"""Action-token VLA policy (OpenVLA / OpenVLA-OFT style): binned action tokens, token log-probs.

``TokenConfig`` (settings, size presets) and ``TokenPolicy(config, observation_space,
action_space)`` are what the trainer's registry uses (``policy: {name: token, ...}``).
"""

from trainers.policies.token.config import TokenConfig
from trainers.policies.token.policy import TokenPolicy
from trainers.policies.token.tokenizer import ActionTokenizer

__all__ = ["ActionTokenizer", "TokenConfig", "TokenPolicy"]
