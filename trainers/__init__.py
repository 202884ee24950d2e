"""vla_gym trainer: PPO/GRPO/SFT over vla_gym.make_vec."""
