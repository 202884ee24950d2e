"""Evaluation protocols of the benchmarks (``python -m vla_gym.eval.<benchmark> --help``)."""
