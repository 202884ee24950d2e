"""Typed training configuration: YAML files under ``trainers/configs/`` plus dotted CLI overrides.

A config file is a nested mapping matching :class:`TrainConfig`. It may name another config in
``base:`` to inherit from (CPU-sized variants only list what differs), and may carry a ``smoke:``
mapping of dotted overrides that ``--smoke`` applies on top (tiny envs, model and batches).
``policy:`` holds ``name`` plus the fields of that policy's own ``Config`` dataclass, validated
against it once the policy module can be imported.

Validation errors are :class:`ConfigError` naming the offending key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROJECT_ROOT = CONFIG_DIR.parents[1]


VECTOR_SETTINGS = ("restart_on_failure", "step_timeout")  # env.* settings of make_vec, not envs


class ConfigError(ValueError):
    """A config that cannot be run, with the key and the reason."""


@dataclass
class EnvConfig:
    id: str = "VLA/PandaPickCube-v0"
    num_envs: int = 16
    backend: str = "sync"  # vla_gym.make_vec backend: sync | subproc | ray
    envs_per_worker: int = 1  # subproc/ray: envs per worker process (e.g. num_envs / cores)
    obs_mode: str = "flat"  # "flat" for MLP policies, "vla" for VLA policies
    action_chunk: int = 1
    max_episode_steps: int = 100
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra env kwargs (train and eval)
    eval_id: str = ""  # evaluation env ID when it differs (e.g. CALVIN always evaluates on D)
    eval_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_num_envs: int = 0  # 0: same as num_envs
    eval_episodes: int = 32
    # extra episode metrics: metric name -> info key read at episode end (CALVIN avg_len)
    episode_metrics: dict[str, str] = field(default_factory=dict)
    # a crashed or hung env worker is replaced and training goes on; its envs count as truncated
    restart_on_failure: bool = True
    step_timeout: float = 300.0  # seconds an env worker may take for one step or reset


@dataclass
class AlgorithmConfig:
    name: str = "ppo"  # ppo | grpo
    gamma: float = 0.99
    gae_lambda: float = 0.95
    normalize_advantages: bool = True
    clip_ratio_low: float = 0.2
    clip_ratio_high: float = 0.2
    value_clip: float = 0.2
    huber_delta: float = 10.0
    value_coef: float = 1.0
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    update_epochs: int = 4
    micro_batch_size: int = 256  # samples per forward/backward pass
    global_batch_size: int = 256  # samples per optimiser step (gradient accumulation)
    lr: float = 3e-4
    value_lr: float = 3e-4
    weight_decay: float = 0.0
    logprob_level: str = "chunk"  # chunk: one ratio per policy step; token: one per element
    # PPO critic warm-up (RLinf): the first N iterations update only the value head, so the
    # actor's first steps use advantages from a fitted critic rather than an untrained one
    critic_warmup_iterations: int = 0
    # both learning rates fall linearly to 0 at runner.max_iterations (CleanRL's anneal_lr): a
    # run whose policy peaks and then drifts (measured on Meta-World) makes ever smaller steps
    anneal_lr: bool = False
    # GRPO
    group_size: int = 8
    dr_grpo: bool = False  # Dr. GRPO: advantages not divided by the group std
    filter_groups: bool = True
    group_reward_lower: float = 0.1  # drop groups whose mean score is outside [lower, upper]
    group_reward_upper: float = 0.9


@dataclass
class RolloutConfig:
    num_steps: int = 0  # policy steps per env per rollout; 0: one full episode (episodic)
    episodic: bool = False  # reset every env at the start of each rollout, mask after done
    rollout_epochs: int = 1  # rollouts collected per training iteration
    pipeline_stage_num: int = 1  # 2: step half of the envs while the policy acts on the other


@dataclass
class RunnerConfig:
    seed: int = 0
    max_iterations: int = 100
    max_env_steps: int = 0  # 0: no limit
    log_dir: str = "runs"
    run_name: str = ""  # default: the config name
    save_interval: int = 10  # iterations between checkpoints (always saved at the end)
    eval_interval: int = 0  # iterations between evaluations (0: off)
    video_interval: int = 0  # iterations between episode videos (0: off)
    video_envs: int = 1
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])  # + "wandb"
    wandb_project: str = "vla_gym"
    progress_bar: str = "auto"  # auto (TTY and not CI) | on | off
    init_checkpoint_path: str = ""  # policy weights to start from (e.g. after SFT)
    torch_threads: int = 0  # 0: torch's default; 1 is fastest for small MLPs on a busy CPU


@dataclass
class ClusterConfig:
    # RLinf-style placement: each component on "cpu", "cuda:N", a GPU index "N", a range "0-3"
    # or "all". The env entry is handed to make_vec(devices=...) to pin env workers.
    component_placement: dict[str, str] = field(
        default_factory=lambda: {"env": "cpu", "rollout": "cpu", "actor": "cpu"}
    )


@dataclass
class TrainConfig:
    name: str = ""
    env: EnvConfig = field(default_factory=EnvConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    policy: dict[str, Any] = field(default_factory=lambda: {"name": "mlp"})
    smoke: dict[str, Any] = field(default_factory=dict)

    @property
    def policy_name(self) -> str:
        return str(self.policy.get("name", ""))

    @property
    def steps_per_rollout(self) -> int:
        """Policy steps per env per rollout."""
        if self.rollout.num_steps > 0:
            return self.rollout.num_steps
        return math.ceil(self.env.max_episode_steps / self.env.action_chunk)

    @property
    def batch_size(self) -> int:
        """Samples (policy steps x envs) collected per training iteration."""
        return self.steps_per_rollout * self.env.num_envs * self.rollout.rollout_epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------- loading
def available_configs() -> list[str]:
    """Runnable config names (files starting with ``_`` are bases for others)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml") if not path.stem.startswith("_"))


def load_config(
    name_or_path: str, overrides: list[str] | tuple[str, ...] = (), *, smoke: bool = False
) -> TrainConfig:
    """Load a named config (or a YAML path), apply ``key=value`` overrides, validate."""
    raw = _read_with_bases(name_or_path, seen=())
    raw.setdefault("name", Path(name_or_path).stem)
    if smoke:  # before the CLI overrides, so those still win
        for key, value in (raw.get("smoke") or {}).items():
            _set_dotted(raw, key, value, source=f"smoke override {key!r}")
        _apply_smoke_defaults(raw)
    for override in overrides:
        key, value = _parse_override(override)
        _set_dotted(raw, key, value, source=f"override {override!r}")
    config = _build(TrainConfig, raw, prefix="")
    validate(config)
    return config


def _resolve_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return path
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise ConfigError(
            f"unknown config {name_or_path!r}; available: {', '.join(available_configs())}"
        )
    return candidate


def _read_with_bases(name_or_path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    path = _resolve_path(name_or_path)
    if str(path) in seen:
        raise ConfigError(f"config {path.stem!r} inherits from itself via 'base'")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping at the top level")
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _read_with_bases(str(base), seen=(*seen, str(path)))
    merged.pop("name", None)
    return _deep_merge(merged, raw)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "smoke":
            out[key] = _deep_merge(out[key], value)
        elif key == "smoke" and isinstance(value, dict):
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like dotted.key=value")
    key, value = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    return key.strip(), yaml.safe_load(value) if value != "" else ""


def _set_dotted(raw: dict[str, Any], key: str, value: Any, *, source: str) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {part!r} in {key!r} is not a section")
        node = child
    node[parts[-1]] = value


def _apply_smoke_defaults(raw: dict[str, Any]) -> None:
    """Two tiny iterations: few envs and steps, small batches, no eval/video, a checkpoint."""
    env = raw.setdefault("env", {})
    algorithm = raw.setdefault("algorithm", {})
    rollout = raw.setdefault("rollout", {})
    runner = raw.setdefault("runner", {})
    group = int(algorithm.get("group_size", 8)) if algorithm.get("name") == "grpo" else 1
    stages = int(rollout.get("pipeline_stage_num", 1))
    env["num_envs"] = min(int(env.get("num_envs", 4)), max(4, 2 * group, 2 * stages))
    env["eval_num_envs"] = min(int(env.get("eval_num_envs", 0) or env["num_envs"]), 2)
    env["eval_episodes"] = 2
    if "env.max_episode_steps" not in (raw.get("smoke") or {}):  # let episodes end in 2 iterations
        chunk = int(env.get("action_chunk", 1))
        env["max_episode_steps"] = min(int(env.get("max_episode_steps", 100)), 6 * chunk)
    rollout["rollout_epochs"] = 1
    if not rollout.get("episodic", False):
        rollout["num_steps"] = min(int(rollout.get("num_steps") or 8), 8)
    algorithm["update_epochs"] = 1
    # at most one warm-up iteration, so the second one still exercises the actor's update
    warmup = int(algorithm.get("critic_warmup_iterations", 0))
    algorithm["critic_warmup_iterations"] = min(warmup, 1)
    algorithm["filter_groups"] = False  # tiny GRPO groups are often degenerate; still update
    # One optimiser step over the whole (tiny) rollout, in two micro-batches when it splits.
    steps = int(rollout.get("num_steps") or 0) or math.ceil(
        int(env.get("max_episode_steps", 100)) / int(env.get("action_chunk", 1))
    )
    batch = env["num_envs"] * steps
    algorithm["global_batch_size"] = batch
    algorithm["micro_batch_size"] = batch // 2 if batch % 2 == 0 else batch
    runner["max_iterations"] = 2
    runner["max_env_steps"] = 0
    runner["save_interval"] = 1
    runner["eval_interval"] = 0
    runner["video_interval"] = 0
    runner["progress_bar"] = "off"
    runner["loggers"] = ["tensorboard"]


# ---------------------------------------------------------------------------- typed build
def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {prefix + unknown[0]!r} (known under {prefix.rstrip('.') or 'top'}: "
            f"{', '.join(sorted(known))})"
        )
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, prefix=f"{prefix}{key}.")
        else:
            values[key] = coerce(value, hint, f"{prefix}{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # a dataclass's own __post_init__ checks
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from None


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check/convert one value against a simple type hint (bool, int, float, str, list, dict)."""
    origin = getattr(hint, "__origin__", hint)
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif origin is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads on/off as booleans
            return "on" if value else "off"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [value]
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
        if value is None:
            return {}
    else:
        return value
    type_name = getattr(origin, "__name__", str(origin))
    raise ConfigError(f"{key} must be a {type_name}, got {value!r}")


# ----------------------------------------------------------------------------- validation
PLACEMENT_COMPONENTS = ("env", "rollout", "actor")


def validate(config: TrainConfig) -> None:
    env, algo, rollout, runner = config.env, config.algorithm, config.rollout, config.runner
    _check(env.num_envs >= 1, f"env.num_envs must be >= 1, got {env.num_envs}")
    _check(env.action_chunk >= 1, f"env.action_chunk must be >= 1, got {env.action_chunk}")
    _check(env.max_episode_steps >= 1, "env.max_episode_steps must be >= 1")
    _check(env.obs_mode in ("vla", "flat"), f"env.obs_mode must be vla or flat: {env.obs_mode!r}")
    _check(env.step_timeout > 0, f"env.step_timeout must be > 0 seconds, got {env.step_timeout}")
    for key in VECTOR_SETTINGS:
        _check(key not in env.kwargs, f"env.kwargs.{key} is a vector-env setting: use env.{key}")
    _check(algo.name in ("ppo", "grpo"), f"algorithm.name must be ppo or grpo, got {algo.name!r}")
    _check(
        algo.logprob_level in ("chunk", "token"),
        f"algorithm.logprob_level must be chunk or token, got {algo.logprob_level!r}",
    )
    _check(0 <= algo.clip_ratio_low < 1, "algorithm.clip_ratio_low must be in [0, 1)")
    _check(algo.clip_ratio_high >= 0, "algorithm.clip_ratio_high must be >= 0")
    _check(algo.update_epochs >= 1, "algorithm.update_epochs must be >= 1")
    _check(algo.critic_warmup_iterations >= 0, "algorithm.critic_warmup_iterations must be >= 0")
    _check(algo.micro_batch_size >= 1, "algorithm.micro_batch_size must be >= 1")
    _check(
        algo.global_batch_size % algo.micro_batch_size == 0,
        f"algorithm.global_batch_size ({algo.global_batch_size}) must be divisible by "
        f"algorithm.micro_batch_size ({algo.micro_batch_size})",
    )
    _check(
        config.batch_size % algo.global_batch_size == 0,
        f"the rollout batch (num_envs {env.num_envs} x steps {config.steps_per_rollout} x "
        f"rollout_epochs {rollout.rollout_epochs} = {config.batch_size}) must be divisible by "
        f"algorithm.global_batch_size ({algo.global_batch_size})",
    )
    if algo.name == "grpo":
        _check(algo.group_size >= 2, f"algorithm.group_size must be >= 2, got {algo.group_size}")
        _check(
            env.num_envs % algo.group_size == 0,
            f"env.num_envs ({env.num_envs}) must be divisible by algorithm.group_size "
            f"({algo.group_size}) for GRPO",
        )
        _check(rollout.episodic, "GRPO needs rollout.episodic: true (whole episodes per group)")
        _check(
            rollout.num_steps == 0 or rollout.num_steps * env.action_chunk >= env.max_episode_steps,
            "GRPO needs rollouts covering a whole episode (rollout.num_steps: 0)",
        )
        _check(
            algo.group_reward_lower <= algo.group_reward_upper,
            "algorithm.group_reward_lower must be <= algorithm.group_reward_upper",
        )
    stages = rollout.pipeline_stage_num
    _check(stages in (1, 2), f"rollout.pipeline_stage_num must be 1 or 2, got {stages}")
    _check(
        env.num_envs % stages == 0,
        f"env.num_envs ({env.num_envs}) must be divisible by rollout.pipeline_stage_num ({stages})",
    )
    if algo.name == "grpo" and stages > 1:
        _check(
            (env.num_envs // stages) % algo.group_size == 0,
            f"each pipeline stage ({env.num_envs // stages} envs) must hold whole GRPO groups "
            f"of {algo.group_size}",
        )
    _check(rollout.rollout_epochs >= 1, "rollout.rollout_epochs must be >= 1")
    _check(runner.max_iterations >= 1, "runner.max_iterations must be >= 1")
    for logger in runner.loggers:
        _check(logger in ("tensorboard", "wandb"), f"runner.loggers: unknown logger {logger!r}")
    _check(runner.progress_bar in ("auto", "on", "off"), "runner.progress_bar: auto | on | off")
    placement = config.cluster.component_placement
    for component in placement:
        _check(
            component in PLACEMENT_COMPONENTS,
            f"cluster.component_placement: unknown component {component!r} "
            f"(known: {', '.join(PLACEMENT_COMPONENTS)})",
        )
    from trainers.placement import parse_devices  # local: placement imports this module

    for component, spec in placement.items():
        try:
            parse_devices(spec)
        except ValueError as exc:
            raise ConfigError(f"cluster.component_placement.{component}: {exc}") from None
    _check(bool(config.policy_name), "policy.name is required (mlp, flow or token)")
    from trainers.policies import POLICY_MODULES

    _check(
        config.policy_name in POLICY_MODULES,
        f"policy.name {config.policy_name!r} is unknown (known: {', '.join(POLICY_MODULES)})",
    )
    _check_policy_settings(config)
    _check_paths(config.to_dict(), prefix="")


def _check_policy_settings(config: TrainConfig) -> None:
    """Policy fields against the policy's own Config (skipped while its module is absent)."""
    from trainers.policies import build_policy_config, policy_module

    try:
        policy_module(config.policy_name)
    except ModuleNotFoundError:
        return  # reported when the policy is built; configs stay loadable meanwhile
    build_policy_config(config.policy)


def _check_paths(node: Any, prefix: str) -> None:
    """Every non-empty ``*_path`` value must name an existing file or folder."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "smoke":
            continue
        if isinstance(value, dict):
            _check_paths(value, f"{prefix}{key}.")
        elif key.endswith("_path") and isinstance(value, str) and value:
            path = Path(value).expanduser()
            if not path.is_absolute() and not path.exists():
                path = PROJECT_ROOT / path
            _check(path.exists(), f"{prefix}{key}: file {value!r} does not exist")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
