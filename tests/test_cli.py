"""One command-line idiom for env kwargs in every command, and the console scripts."""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib

from trainers.cli import mapping_overrides
from trainers.config import load_config
from vla_gym.cli import (
    add_env_kwargs_arguments,
    env_kwargs_from_args,
    parse_kwargs,
    parse_mapping,
)

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
    with pytest.raises(SystemExit, match="'env.kwargs.cameras=\\[a': the value is not YAML"):
        parse_kwargs(["env.kwargs.cameras=[a"])


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
    with pytest.raises(SystemExit, match="keys must be kwarg names, got \\[1\\]"):
        parse_mapping("{1: 2}")


def _parse(argv: list[str], *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    for flag in flags:
        parser.add_argument(flag, type=int)
    add_env_kwargs_arguments(parser)
    return parser.parse_args(argv)


def test_items_override_the_mapping_and_shorthands_must_not_clash():
    args = _parse(["--env-kwargs", "{max_steps: 5, obs_mode: flat}", "env.kwargs.max_steps=9"])
    assert env_kwargs_from_args(args) == {"max_steps": 9, "obs_mode": "flat"}
    shorthands = {"--image-size": "image_size"}
    args = _parse(["--image-size", "64", "env.kwargs.max_steps=9"], "--image-size")
    assert env_kwargs_from_args(args, shorthands) == {"image_size": 64, "max_steps": 9}
    assert env_kwargs_from_args(_parse([], "--image-size"), shorthands) == {}
    args = _parse(["--image-size", "64", "env.kwargs.image_size=32"], "--image-size")
    with pytest.raises(SystemExit, match="--image-size is short for env.kwargs.image_size"):
        env_kwargs_from_args(args, shorthands)


@pytest.mark.parametrize(
    ("module", "flag", "value", "key"),
    [
        ("calvin", "--assets", "builtin", "assets"),
        ("libero", "--max-steps", 5, "max_steps"),
        ("metaworld", "--max-episode-steps", 5, "max_steps"),
    ],
)
def test_benchmark_command_lines_pass_env_kwargs_in_the_common_syntax(
    module, flag, value, key, monkeypatch
):
    """Each benchmark's command line hands its env kwargs to its ``evaluate`` (stubbed)."""
    protocol = importlib.import_module(f"vla_gym.eval.{module}")
    calls = []

    @functools.wraps(protocol.evaluate)  # keeps the signature the command line checks
    def record(*args, **kwargs):
        calls.append(kwargs)
        return SimpleNamespace(report="report")

    monkeypatch.setattr(protocol, "evaluate", record)
    argv = ["--policy", "random", "--progress", "off", "--env-kwargs", "{obs_mode: flat}"]
    protocol.main([*argv, "env.kwargs.cameras=[wrist]", "env.kwargs.obs_mode=vla"])
    assert calls[-1]["obs_mode"] == "vla" and calls[-1]["cameras"] == ["wrist"]
    assert calls[-1]["progress"] is False
    protocol.main([*argv, flag, str(value)])
    assert calls[-1][key] == value and calls[-1]["obs_mode"] == "flat"
    with pytest.raises(SystemExit, match=f"{flag} is short for env.kwargs.{key}"):
        protocol.main([flag, str(value), f"env.kwargs.{key}={value}"])
    with pytest.raises(SystemExit, match="'seed' is an option of the evaluation"):
        protocol.main(["env.kwargs.seed=3"])
    with pytest.raises(SystemExit, match="must look like env.kwargs.KEY=VALUE"):
        protocol.main(["env.kwargs.obs_mode"])
    fixed = protocol.FIXED_KWARGS[-1]  # not `suite`: that one is also an evaluate() option
    with pytest.raises(SystemExit, match=f"env.kwargs.{fixed}: the evaluation protocol sets"):
        protocol.main([f"env.kwargs.{fixed}=1"])
    assert len(calls) == 2


def test_eval_command_line_passes_env_kwargs_to_the_env(tmp_path):
    pytest.importorskip("mujoco")
    from vla_gym.eval.__main__ import main
    from vla_gym.vector import EnvError

    path = tmp_path / "result.json"
    argv = ["--env-id", "VLA/PandaPickCube-v0", "--policy", "zero", "--episodes", "1"]
    argv += ["--backend", "sync", "--progress", "off", "--json", str(path)]
    assert main([*argv, "--env-kwargs", "{obs_mode: flat}", "env.kwargs.max_steps=3"]) == 0
    result = json.loads(path.read_text())
    assert result["details"]["episodes"][0]["episode_len"] == 3 == result["env_steps"]
    # an unknown kwarg: the env constructor's own error, raised in env 0 of the vector env
    with pytest.raises(EnvError, match="unexpected keyword argument 'no_such_kwarg'"):
        main([*argv, "env.kwargs.no_such_kwarg=1"])
    with pytest.raises(EnvError, match="max_steps must be an integer"):
        main([*argv, "env.kwargs.max_steps=[3]"])
    with pytest.raises(SystemExit, match="--env-kwargs must be a mapping"):
        main([*argv, "--env-kwargs", "max_steps=3"])
    with pytest.raises(SystemExit, match="'episodes' is an option of the evaluation"):
        main([*argv, "env.kwargs.episodes=3"])


def test_console_scripts_point_at_the_command_line_entry_points():
    """A console script calls ``main()`` with no arguments and exits with what it returns."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {
        "trainers": "trainers.__main__:main",
        "trainers-sb3": "trainers.sb3:main",
        "trainers-quickstart": "trainers.quickstart:main",
        "vla-gym-eval": "vla_gym.eval.__main__:main",
    }
    for target in scripts.values():
        module, function = target.split(":")
        main = getattr(importlib.import_module(module), function)
        parameters = inspect.signature(main).parameters.values()
        assert all(parameter.default is None for parameter in parameters), target
        assert typing.get_type_hints(main)["return"] is int, target


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


def test_quickstart_takes_env_kwargs_in_the_common_syntax():
    from trainers import quickstart

    argv = ["--env-kwargs", "{max_steps: 7, reward_type: sparse}", "env.kwargs.max_steps=9"]
    config = quickstart.make_config(quickstart.build_parser().parse_args(argv))
    assert config.env.kwargs["max_steps"] == 9 and config.env.kwargs["reward_type"] == "sparse"
