"""Benchmark adapters, one package each (see vla_gym.registration)."""
