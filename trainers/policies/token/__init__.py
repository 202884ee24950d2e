"""Action-token VLA policy (OpenVLA / OpenVLA-OFT style): binned action tokens, token log-probs.

``Config`` (settings, size presets) and ``Policy(config, observation_space, action_space)`` are
what the trainer's registry uses (``policy: {name: token, ...}``).
"""

from trainers.policies.token.config import Config
from trainers.policies.token.policy import Policy
from trainers.policies.token.tokenizer import ActionTokenizer

__all__ = ["ActionTokenizer", "Config", "Policy"]
