"""Trainer policies: MLP, flow-matching VLA, action-token VLA."""
