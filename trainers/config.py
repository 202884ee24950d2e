"""Typed training configuration: YAML files under ``trainers/configs/`` plus dotted CLI overrides.

A config file is a nested mapping matching :class:`TrainConfig`. It may name another config in
``base:`` to inherit from (CPU-sized variants only list what differs), and may carry a ``smoke:``
mapping of dotted overrides that ``--smoke`` applies on top of the generic smoke settings in
``configs/_smoke.yaml`` (tiny envs, model and batches, two iterations).

``algorithm:`` holds ``name`` plus the fields of that algorithm's config (``PPOConfig``,
``GRPOConfig``); ``policy:`` holds ``name`` plus the fields of that policy's config
(``MLPConfig``, ``FlowConfig``, ``TokenConfig``). ``env.max_episode_steps`` is read as
``env.max_steps``, the env's own name for its episode limit.

Validation errors are :class:`ConfigError` naming the offending key and what is wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainers.algorithms import AlgorithmConfig, PPOConfig, RolloutSetup, algorithm_class
from trainers.placement import parse_devices
from trainers.policies import parse_policy_config
from trainers.schema import ConfigError, build, check

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROJECT_ROOT = CONFIG_DIR.parents[1]
SMOKE_FILE = CONFIG_DIR / "_smoke.yaml"
# old key -> its name now (read from YAML files, smoke sections and CLI overrides)
KEY_ALIASES = {"env.max_episode_steps": "env.max_steps"}
# make_vec's own settings (not the envs'), as it names them -> their env.* key here
VECTOR_SETTINGS = {
    "restart_on_failure": "restart_on_failure",
    "step_timeout": "step_timeout",
    "ray_address": "ray_address",
    "resources_per_worker": "ray_resources",
}
BACKENDS = ("sync", "subproc", "ray")


@dataclass
class EnvConfig:
    id: str = "VLA/PandaPickCube-v0"
    num_envs: int = 16
    backend: str = "sync"  # vla_gym.make_vec backend: sync | subproc | ray
    envs_per_worker: int = 1  # subproc/ray: envs per worker process (e.g. num_envs / cores)
    obs_mode: str = "flat"  # "flat" for MLP policies, "vla" for VLA policies
    action_chunk: int = 1
    max_steps: int = 100  # control steps per episode (the env's max_steps)
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
    # backend ray: the cluster to join ("auto": the one this machine joined with `ray start`;
    # unset: $RAY_ADDRESS, else a local instance) and the custom resources each env worker asks
    # for, e.g. {sim: 1} to place env workers only on nodes started with a `sim` resource
    ray_address: str | None = None
    ray_resources: dict[str, float] | None = None


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
    save_interval: int = 10  # iterations between numbered checkpoints (latest also at the end)
    # checkpoints/best.pt: the state whose validation evaluation (eval_interval) scored best
    best_metric: str = "eval/success_once"
    best_mode: str = "max"  # max | min
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
    algorithm: AlgorithmConfig = field(default_factory=PPOConfig)
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
        return math.ceil(self.env.max_steps / self.env.action_chunk)

    @property
    def batch_size(self) -> int:
        """Samples (policy steps x envs) collected per training iteration."""
        return self.steps_per_rollout * self.env.num_envs * self.rollout.rollout_epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def vector_options(env: EnvConfig) -> dict[str, Any]:
    """``make_vec``'s own settings from ``env`` (worker restarts, the step timeout and, with the
    ray backend, the cluster address and resources), the same for training and evaluation envs."""
    options: dict[str, Any] = {
        "restart_on_failure": env.restart_on_failure,
        "step_timeout": env.step_timeout,
    }
    if env.ray_address is not None:
        options["ray_address"] = env.ray_address
    if env.ray_resources is not None:
        options["resources_per_worker"] = dict(env.ray_resources)
    return options


def env_kwargs(env: EnvConfig, *, evaluation: bool = False) -> dict[str, Any]:
    """The keyword arguments of ``gym.make(env.id, ...)`` (evaluation adds ``eval_kwargs``)."""
    kwargs = {
        "obs_mode": env.obs_mode,
        "action_chunk": env.action_chunk,
        "max_steps": env.max_steps,
        **env.kwargs,
    }
    if evaluation:
        kwargs.update(env.eval_kwargs)
    return kwargs


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
    return config_from_dict(raw, overrides, smoke=smoke)


def config_from_dict(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), *, smoke: bool = False
) -> TrainConfig:
    """A config from its nested mapping (e.g. ``TrainConfig.to_dict()`` kept in a checkpoint),
    with ``key=value`` overrides, validated."""
    raw = copy.deepcopy(raw)
    if smoke:  # before the CLI overrides, so those still win
        _apply_smoke(raw)
    for override in overrides:
        key, value = _parse_override(override)
        if key == "algorithm.name":
            _drop_other_algorithm_settings(raw, {"algorithm": {"name": value}})
        _set_dotted(raw, key, value, source=f"override {override!r}")
    config = build_config(raw)
    validate(config)
    return config


def build_config(raw: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a mapping; ``algorithm.name`` picks the algorithm's config."""
    algorithm = raw.get("algorithm", {})
    if isinstance(algorithm, dict):
        config_class = algorithm_class(algorithm.get("name", "ppo")).config_class
        raw = {**raw, "algorithm": build(config_class, algorithm, prefix="algorithm.")}
    return build(TrainConfig, raw)


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


def _read_yaml(path: Path) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping at the top level")
    for old, new in KEY_ALIASES.items():  # nested spelling of an aliased key
        section, old_key = old.split(".")
        node = raw.get(section)
        if isinstance(node, dict) and old_key in node:
            new_key = new.split(".")[1]
            check(new_key not in node, f"{str(path)!r} sets both {old} and {new}")
            node[new_key] = node.pop(old_key)
    return raw


def _read_with_bases(name_or_path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    path = _resolve_path(name_or_path)
    if str(path) in seen:
        raise ConfigError(f"config {path.stem!r} inherits from itself via 'base'")
    raw = _read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _read_with_bases(str(base), seen=(*seen, str(path)))
    merged.pop("name", None)
    _drop_other_algorithm_settings(merged, raw)
    return _deep_merge(merged, raw)


def _drop_other_algorithm_settings(base: dict[str, Any], config: dict[str, Any]) -> None:
    """A config (or an ``algorithm.name`` override) that switches algorithm, e.g. a GRPO variant
    of a PPO recipe, keeps only the base's algorithm settings the new algorithm has."""
    name = (config.get("algorithm") or {}).get("name")
    inherited = base.get("algorithm") or {}
    if name is None or name == inherited.get("name", "ppo"):
        return
    known = {f.name for f in dataclasses.fields(algorithm_class(name).config_class)}
    base["algorithm"] = {key: value for key, value in inherited.items() if key in known}


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
    key = KEY_ALIASES.get(key, key)
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {part!r} in {key!r} is not a section")
        node = child
    node[parts[-1]] = value


def _get_dotted(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part, None)
    return config


def _apply_smoke(raw: dict[str, Any]) -> None:
    """``--smoke``: the config's own ``smoke:`` overrides, then ``_smoke.yaml``'s settings (a
    config's own smoke value wins over them), then batch sizes that fit the tiny rollout."""
    own = {KEY_ALIASES.get(key, key): value for key, value in (raw.get("smoke") or {}).items()}
    for key, value in own.items():
        _set_dotted(raw, key, value, source=f"smoke override {key!r}")
    settings = yaml.safe_load(SMOKE_FILE.read_text())
    draft = build_config(raw)  # the values (defaults included) the caps compare against
    for kind in ("set", "at_most"):
        for key, value in (settings.get(kind) or {}).items():
            current = _get_dotted(draft, key)
            if key in own or current is None:  # a config's own choice, or not its setting
                continue
            if kind == "at_most":
                value = min(current, value)
            _set_dotted(raw, key, value, source=f"{SMOKE_FILE.name}: {key!r}")
    # One optimiser step over the whole (tiny) rollout, in two micro-batches when it splits.
    draft = build_config(raw)
    batch = draft.env.num_envs * draft.steps_per_rollout
    micro = batch // 2 if batch % 2 == 0 else batch
    _set_dotted(raw, "algorithm.global_batch_size", batch, source="smoke")
    _set_dotted(raw, "algorithm.micro_batch_size", micro, source="smoke")


# ----------------------------------------------------------------------------- validation
PLACEMENT_COMPONENTS = ("env", "rollout", "actor")


def validate(config: TrainConfig) -> None:
    env, algo, rollout, runner = config.env, config.algorithm, config.rollout, config.runner
    check(env.num_envs >= 1, f"env.num_envs must be >= 1, got {env.num_envs}")
    check(env.action_chunk >= 1, f"env.action_chunk must be >= 1, got {env.action_chunk}")
    check(env.max_steps >= 1, "env.max_steps must be >= 1")
    check(env.obs_mode in ("vla", "flat"), f"env.obs_mode must be vla or flat: {env.obs_mode!r}")
    check(env.step_timeout > 0, f"env.step_timeout must be > 0 seconds, got {env.step_timeout}")
    for key, setting in VECTOR_SETTINGS.items():
        check(key not in env.kwargs, f"env.kwargs.{key} is a vector-env setting: use env.{setting}")
    check(env.backend in BACKENDS, f"env.backend must be one of {BACKENDS}, got {env.backend!r}")
    _validate_ray(env)
    check(
        config.batch_size % algo.global_batch_size == 0,
        f"the rollout batch (num_envs {env.num_envs} x steps {config.steps_per_rollout} x "
        f"rollout_epochs {rollout.rollout_epochs} = {config.batch_size}) must be divisible by "
        f"algorithm.global_batch_size ({algo.global_batch_size})",
    )
    stages = rollout.pipeline_stage_num
    check(stages in (1, 2), f"rollout.pipeline_stage_num must be 1 or 2, got {stages}")
    check(
        env.num_envs % stages == 0,
        f"env.num_envs ({env.num_envs}) must be divisible by rollout.pipeline_stage_num ({stages})",
    )
    algorithm_class(algo.name)(algo).check_setup(
        RolloutSetup(
            num_envs=env.num_envs,
            envs_per_stage=env.num_envs // stages,
            episodic=rollout.episodic,
            covers_episode=rollout.num_steps == 0
            or rollout.num_steps * env.action_chunk >= env.max_steps,
        )
    )
    check(rollout.rollout_epochs >= 1, "rollout.rollout_epochs must be >= 1")
    check(runner.max_iterations >= 1, "runner.max_iterations must be >= 1")
    for logger in runner.loggers:
        check(logger in ("tensorboard", "wandb"), f"runner.loggers: unknown logger {logger!r}")
    check(runner.progress_bar in ("auto", "on", "off"), "runner.progress_bar: auto | on | off")
    check(runner.save_interval >= 1, f"runner.save_interval must be >= 1: {runner.save_interval}")
    check(runner.best_mode in ("max", "min"), f"runner.best_mode: max | min: {runner.best_mode!r}")
    if runner.init_checkpoint_path:
        path = Path(runner.init_checkpoint_path).expanduser()
        if not path.is_absolute() and not path.exists():
            path = PROJECT_ROOT / path
        check(
            path.exists(),
            f"runner.init_checkpoint_path: file {runner.init_checkpoint_path!r} does not exist",
        )
    placement = config.cluster.component_placement
    for component, spec in placement.items():
        check(
            component in PLACEMENT_COMPONENTS,
            f"cluster.component_placement: unknown component {component!r} "
            f"(known: {', '.join(PLACEMENT_COMPONENTS)})",
        )
        try:
            parse_devices(spec)
        except ValueError as exc:
            raise ConfigError(f"cluster.component_placement.{component}: {exc}") from None
    parse_policy_config(config.policy)


def _validate_ray(env: EnvConfig) -> None:
    for key in ("ray_address", "ray_resources"):
        check(
            getattr(env, key) is None or env.backend == "ray",
            f"env.{key} is for env.backend=ray, not {env.backend!r} (unset it: env.{key}=null)",
        )
    check(env.ray_address != "", "env.ray_address must not be empty (null: $RAY_ADDRESS)")
    for name, amount in (env.ray_resources or {}).items():
        # CPUs and GPUs are not custom resources: make_vec refuses them by name
        check(isinstance(name, str) and name, f"env.ray_resources: bad resource name {name!r}")
        check(
            isinstance(amount, int | float) and not isinstance(amount, bool) and amount > 0,
            f"env.ray_resources.{name} must be a positive number, got {amount!r}",
        )


def validate_ranks(config: TrainConfig, ranks: int) -> None:
    """With ``ranks`` data-parallel ranks (``docs/distributed.md``) each runs an even share of
    ``env.num_envs``; the share must hold whole pipeline stages and whole GRPO groups (a group
    never straddles two ranks)."""
    if ranks == 1:
        return
    env, rollout = config.env, config.rollout
    check(
        env.num_envs % ranks == 0,
        f"env.num_envs ({env.num_envs}) is the global env count and must be divisible by the "
        f"number of ranks ({ranks})",
    )
    share = env.num_envs // ranks
    context = f"with {ranks} ranks each rank runs {share} of env.num_envs ({env.num_envs})"
    stages = rollout.pipeline_stage_num
    check(share % stages == 0, f"{context}: not divisible by rollout.pipeline_stage_num ({stages})")
    try:
        algorithm_class(config.algorithm.name)(config.algorithm).check_setup(
            RolloutSetup(
                num_envs=share,
                envs_per_stage=share // stages,
                episodic=rollout.episodic,
                covers_episode=True,  # a property of the rollout length, checked by validate
            )
        )
    except ConfigError as exc:
        raise ConfigError(f"{context}: {exc}") from None
