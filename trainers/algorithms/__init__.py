"""Advantage estimators and the clipped-surrogate update shared by PPO and GRPO."""
