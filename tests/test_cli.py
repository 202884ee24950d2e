"""One command-line idiom for env kwargs, and the console scripts."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import tomllib

from trainers.cli import mapping_overrides, parse_kwargs, parse_mapping
from trainers.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_dotted_kwargs_are_parsed_as_yaml_per_prefix():
    items = [
        "env.kwargs.image_size=64",
        "env.kwargs.cameras=[front]",
        "expert.kwargs.max_speed=0.02",
    ]
    parsed = parse_kwargs(items, prefixes=("env.kwargs", "expert.kwargs"))
    assert parsed == {
        "env.kwargs": {"image_size": 64, "cameras": ["front"]},
        "expert.kwargs": {"max_speed": 0.02},
    }
    for bad in ("image_size=64", "env.kwargs.image_size", "expert.kwargs.max_speed=1"):
        with pytest.raises(SystemExit, match="env.kwargs.KEY=VALUE"):
            parse_kwargs([bad])


def test_env_kwargs_mapping_equals_the_dotted_overrides():
    assert parse_mapping("") == {}
    mapping = parse_mapping('{"obs_mode": "flat", max_episode_steps: 7, cameras: [a, b]}')
    via_flag = load_config("panda_pick_cube_ppo_mlp_cpu", mapping_overrides(mapping))
    dotted = ["env.kwargs.obs_mode=flat", "env.kwargs.max_episode_steps=7"]
    via_dots = load_config("panda_pick_cube_ppo_mlp_cpu", [*dotted, "env.kwargs.cameras=[a, b]"])
    assert via_flag.env.kwargs == via_dots.env.kwargs
    assert via_flag.env.kwargs["max_episode_steps"] == 7
    with pytest.raises(SystemExit, match="must be a mapping"):
        parse_mapping("[1, 2]")


def test_console_scripts_point_at_the_command_line_entry_points():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"trainers", "trainers-sb3"} <= set(scripts)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_sft_maps_lerobot_cameras_and_state_from_flags():
    import argparse

    from trainers import sft

    parser = argparse.ArgumentParser()
    sft.add_arguments(parser)
    flags = ["--config", "x", "--demos", "d", "--lerobot-camera", "front=observation.images.top"]
    args = parser.parse_args([*flags, "--lerobot-state", "observation.joints"])
    assert sft.lerobot_options(args) == {
        "cameras": {"front": "observation.images.top"},
        "state_key": "observation.joints",
    }
    assert sft.lerobot_options(parser.parse_args(flags[:4])) == {}
    with pytest.raises(SystemExit, match="NAME=KEY"):
        sft.lerobot_options(parser.parse_args([*flags[:4], "--lerobot-camera", "front"]))
