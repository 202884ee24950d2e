"""Config loading: shipped configs, inheritance, overrides and clear validation errors."""

from __future__ import annotations

import pytest
import torch

from trainers.config import ConfigError, available_configs, load_config

SEED_RECIPES = [
    "calvin_d_ppo_flow",
    "calvin_abc_ppo_flow",
    "calvin_abcd_ppo_flow",
    "metaworld_mt50_ppo_flow",
    "metaworld_ml45_ppo_flow",
    *[
        f"libero_{suite}_{algo}_flow"
        for suite in ("spatial", "object", "goal", "10")
        for algo in ("ppo", "grpo")
    ],
    "panda_pick_cube_ppo_mlp",
    "token_behavior_ppo",
]


def test_every_seed_recipe_ships_and_validates():
    names = available_configs()
    for recipe in SEED_RECIPES:
        assert recipe in names
    assert not any(name.startswith("_") for name in names)
    for name in names:
        load_config(name)
        load_config(name, smoke=True)


def test_recipe_defaults_follow_the_seed_table():
    calvin = load_config("calvin_abc_ppo_flow")
    assert (calvin.env.action_chunk, calvin.env.max_steps) == (5, 480)
    assert (calvin.env.num_envs, calvin.rollout.rollout_epochs) == (64, 8)
    assert (calvin.algorithm.lr, calvin.algorithm.value_lr) == (5e-6, 1e-4)
    assert calvin.env.eval_id == "VLA/CALVIN-D-v0"
    assert calvin.policy["denoise_steps"] == 5 and calvin.algorithm.value_clip == 0.2
    libero = load_config("libero_10_grpo_flow")
    assert libero.algorithm.name == "grpo" and libero.algorithm.group_size == 8
    assert libero.algorithm.update_epochs == 2 and libero.env.action_chunk == 10
    panda = load_config("panda_pick_cube_ppo_mlp")
    assert (panda.env.num_envs, panda.env.max_steps, panda.algorithm.update_epochs) == (
        128,
        200,
        8,
    )
    assert panda.algorithm.value_clip == 1.0 and panda.policy["hidden_sizes"] == [256] * 3
    behavior = load_config("token_behavior_ppo")
    assert (behavior.env.action_chunk, behavior.algorithm.value_lr) == (8, 3e-3)


def test_cpu_variant_inherits_and_overrides():
    config = load_config("panda_pick_cube_ppo_mlp_cpu")
    assert config.env.num_envs == 16 and config.algorithm.update_epochs == 8
    assert config.name == "panda_pick_cube_ppo_mlp_cpu"


def test_dotted_overrides_are_typed():
    config = load_config(
        "panda_pick_cube_ppo_mlp_cpu",
        [
            "algorithm.lr=1e-3",
            "env.num_envs=8",
            "policy.hidden_sizes=[64,64]",
            "runner.loggers=[tensorboard]",
            "env.kwargs.render_quality=fast",
        ],
    )
    assert config.algorithm.lr == 1e-3 and isinstance(config.algorithm.lr, float)
    assert config.env.num_envs == 8 and config.policy["hidden_sizes"] == [64, 64]
    assert config.env.kwargs == {"terminate_on_success": False, "render_quality": "fast"}


def test_smoke_is_two_tiny_iterations():
    config = load_config("panda_pick_cube_ppo_mlp", smoke=True)
    assert config.runner.max_iterations == 2 and config.env.num_envs <= 4
    assert config.policy["hidden_sizes"] == [32, 32]
    assert config.batch_size % config.algorithm.global_batch_size == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algorithm.lr_typo=1"], "unknown key 'algorithm.lr_typo'"),
        (["nonsense.key=1"], "unknown key 'nonsense'"),
        (["env.num_envs=ten"], "env.num_envs must be a int"),
        (
            [
                "algorithm.name=grpo",
                "rollout.episodic=true",
                "env.num_envs=12",
                "algorithm.group_size=8",
            ],
            "env.num_envs (12) must be divisible by algorithm.group_size (8)",
        ),
        (["algorithm.name=grpo"], "GRPO needs rollout.episodic"),
        (["algorithm.global_batch_size=100", "algorithm.micro_batch_size=30"], "divisible by"),
        (
            ["algorithm.global_batch_size=3000", "algorithm.micro_batch_size=1000"],
            "must be divisible by algorithm.global_batch_size",
        ),
        (["rollout.pipeline_stage_num=3"], "pipeline_stage_num must be 1 or 2"),
        (["runner.init_checkpoint_path=/no/such/file.pt"], "runner.init_checkpoint_path: file"),
        (["cluster.component_placement.gpu=0"], "unknown component 'gpu'"),
        (["cluster.component_placement.actor=cuda:x"], "bad device"),
        (["policy.name=transformer"], "policy.name 'transformer' is unknown"),
        (["policy.hidden_sizez=[3]"], "unknown key 'policy.hidden_sizez'"),
        (["algorithm.logprob_level=word"], "logprob_level must be chunk or token"),
        (["env.num_envs"], "must look like dotted.key=value"),
        (["env.backend=threads"], "env.backend must be one of ('sync', 'subproc', 'ray')"),
        (["env.ray_resources={sim: 1}"], "env.ray_resources is for env.backend=ray, not 'subproc'"),
        (["env.ray_address=auto"], "env.ray_address is for env.backend=ray"),
        (["env.backend=ray", "env.ray_resources={sim: 0}"], "env.ray_resources.sim must be a"),
        (["env.backend=ray", "env.ray_resources=[sim]"], "env.ray_resources must be a dict"),
        (["env.backend=ray", "env.ray_address="], "env.ray_address must not be empty"),
        (["env.kwargs.resources_per_worker={sim: 1}"], "setting: use env.ray_resources"),
    ],
)
def test_validation_errors_name_the_problem(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config("panda_pick_cube_ppo_mlp_cpu", overrides)
    assert message in str(error.value)


def test_unknown_config_and_missing_file():
    with pytest.raises(ConfigError, match="unknown config 'nope'.*panda_pick_cube_ppo_mlp"):
        load_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/tmp/definitely/missing.yaml")


def test_placement_parsing():
    from trainers.placement import env_devices, parse_devices, torch_device

    assert parse_devices("cpu") == ["cpu"]
    assert parse_devices("0-2") == ["cuda:0", "cuda:1", "cuda:2"]
    assert parse_devices("1,3") == ["cuda:1", "cuda:3"]
    assert parse_devices("cuda:2") == ["cuda:2"]
    assert env_devices("cpu") is None and env_devices("0-1") == "0,1"
    assert str(torch_device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="bad device range"):
        parse_devices("3-1")


def test_algorithm_settings_are_typed_per_algorithm():
    from trainers.algorithms import GRPOConfig, PPOConfig

    ppo = load_config("panda_pick_cube_ppo_mlp_cpu")
    assert type(ppo.algorithm) is PPOConfig and ppo.algorithm.critic_warmup_iterations == 0
    with pytest.raises(ConfigError, match="unknown key 'algorithm.group_size'"):
        load_config("panda_pick_cube_ppo_mlp_cpu", ["algorithm.group_size=4"])
    # a GRPO variant of a PPO recipe keeps the shared settings and drops the PPO-only ones
    grpo = load_config(
        "flow_panda_vision_ppo_cpu",
        ["algorithm.name=grpo", "rollout.episodic=true", "algorithm.group_size=4"],
    )
    assert type(grpo.algorithm) is GRPOConfig
    assert (grpo.algorithm.lr, grpo.algorithm.logprob_level) == (2e-5, "token")
    assert not hasattr(grpo.algorithm, "critic_warmup_iterations")
    with pytest.raises(ConfigError, match=r"algorithm.name 'a2c' is unknown \(known: grpo, ppo\)"):
        load_config("panda_pick_cube_ppo_mlp_cpu", ["algorithm.name=a2c"])


def test_max_episode_steps_is_read_as_max_steps(tmp_path):
    config = load_config("panda_pick_cube_ppo_mlp_cpu", ["env.max_episode_steps=30"])
    assert config.env.max_steps == 30
    path = tmp_path / "old.yaml"
    path.write_text("base: panda_pick_cube_ppo_mlp_cpu\nenv: {max_episode_steps: 40}\n")
    assert load_config(str(path)).env.max_steps == 40
    path.write_text("env: {max_episode_steps: 40, max_steps: 50}\n")
    with pytest.raises(ConfigError, match="sets both env.max_episode_steps and env.max_steps"):
        load_config(str(path))


def test_smoke_settings_come_from_the_smoke_file_and_the_config_wins():
    plain = load_config("flow_panda_vision_grpo_cpu")
    smoke = load_config("flow_panda_vision_grpo_cpu", smoke=True)
    assert (smoke.runner.max_iterations, smoke.algorithm.update_epochs) == (2, 1)
    assert smoke.env.num_envs == 16 and plain.env.num_envs == 32  # its own smoke: entry
    assert smoke.env.max_steps == 10  # _flow_ppo's smoke: entry wins over the cap of 6
    steps = smoke.steps_per_rollout
    assert smoke.algorithm.global_batch_size == 16 * steps
    assert smoke.algorithm.micro_batch_size == 8 * steps
    mlp = load_config("panda_pick_cube_ppo_mlp_cpu", smoke=True)
    assert (mlp.env.num_envs, mlp.env.max_steps, mlp.rollout.num_steps) == (4, 6, 8)


def test_only_named_paths_must_exist():
    config = load_config("panda_pick_cube_ppo_mlp_cpu", ["env.kwargs.asset_path=/no/such/dir"])
    assert config.env.kwargs["asset_path"] == "/no/such/dir"  # the env's business, not a check


def test_policy_settings_are_checked_by_the_policy_config():
    with pytest.raises(ConfigError, match="policy.activation must be one of"):
        load_config("panda_pick_cube_ppo_mlp_cpu", ["policy.activation=gelu"])
    with pytest.raises(ConfigError, match="policy.hidden_sizes must be positive integers"):
        load_config("panda_pick_cube_ppo_mlp_cpu", ["policy.hidden_sizes=[64,0]"])


RAY_OVERRIDES = ["env.backend=ray", "env.ray_address=auto", "env.ray_resources={sim: 1}"]


def test_vector_settings_reach_make_vec_for_training_and_validation(monkeypatch, tmp_path):
    import vla_gym.vector
    from trainers.config import vector_options
    from trainers.evaluate import make_eval_collector
    from trainers.train import Trainer

    config = load_config("panda_pick_cube_ppo_mlp_cpu", RAY_OVERRIDES)
    assert (config.env.ray_address, config.env.ray_resources) == ("auto", {"sim": 1.0})
    defaults = {"restart_on_failure": True, "step_timeout": 300.0}
    assert vector_options(config.env) == {
        **defaults,
        "ray_address": "auto",
        "resources_per_worker": {"sim": 1},
    }
    assert vector_options(load_config("panda_pick_cube_ppo_mlp_cpu").env) == defaults
    # off ray the settings must be unset again
    load_config("panda_pick_cube_ppo_mlp_cpu", [*RAY_OVERRIDES, "env.backend=subproc",
        "env.ray_address=null", "env.ray_resources=null"])  # fmt: skip

    calls = []
    make_vec = vla_gym.vector.make_vec

    def in_process(env_id, num_envs, *, backend, ray_address, resources_per_worker, **kwargs):
        settings = {key: kwargs.pop(key) for key in ("restart_on_failure", "step_timeout")}
        calls.append((backend, ray_address, resources_per_worker, settings))
        return make_vec(env_id, num_envs, backend="sync", **kwargs)

    monkeypatch.setattr(vla_gym.vector, "make_vec", in_process)
    overrides = [
        *RAY_OVERRIDES,
        "env.restart_on_failure=false",
        "env.step_timeout=42",
        f"runner.log_dir={tmp_path}",
    ]
    config = load_config("panda_pick_cube_ppo_mlp_cpu", overrides, smoke=True)
    collectors = [
        Trainer(config).collector,  # training envs
        make_eval_collector(config, torch.device("cpu")),  # validation envs
    ]
    for collector in collectors:
        collector.close()
    settings = {"restart_on_failure": False, "step_timeout": 42.0}
    assert calls == [("ray", "auto", {"sim": 1.0}, settings)] * 2


def test_ray_recipe_puts_envs_on_sim_nodes_and_the_learner_on_a_gpu():
    config = load_config("libero_spatial_ppo_flow_ray")
    base = load_config("libero_spatial_ppo_flow")
    assert (config.env.backend, config.env.ray_address) == ("ray", "auto")
    assert config.env.ray_resources == {"sim": 1}
    assert config.env.num_envs == base.env.num_envs == 16 * config.env.envs_per_worker
    assert config.cluster.component_placement == {
        "env": "cpu",
        "rollout": "cuda:0",
        "actor": "cuda:0",
    }
    assert (config.algorithm, config.policy) == (base.algorithm, base.policy)  # the same recipe
    smoke = load_config("libero_spatial_ppo_flow_ray", smoke=True)  # in process, no cluster
    assert (smoke.env.backend, smoke.env.ray_address, smoke.env.ray_resources) == (
        "sync",
        None,
        None,
    )


@pytest.mark.parametrize("name", ["libero_object3_grpo_flow", "libero_object3_grpo_flow_cpu"])
def test_libero_subset_recipes_hold_out_init_states(name):
    from trainers.config import env_kwargs

    config = load_config(name)
    train = env_kwargs(config.env)
    held_out = env_kwargs(config.env, evaluation=True)
    assert train["task_ids"] == held_out["task_ids"] == [0, 1, 2]
    train_states, eval_states = set(train["init_state_ids"]), set(held_out["init_state_ids"])
    assert not train_states & eval_states
    assert train_states | eval_states == set(range(50))
    # every held-out (task, init state) once; envs keep their task (a multiple of 3)
    assert config.env.eval_episodes == 3 * len(eval_states)
    assert config.env.num_envs % 3 == 0 and config.env.eval_num_envs % 3 == 0
    assert config.env.num_envs % config.algorithm.group_size == 0
    assert config.env.episode_metrics == {"task_id": "task_id"}


def test_libero_gpu_recipes_pass_only_kwargs_the_env_takes():
    import inspect

    from trainers.config import env_kwargs
    from vla_gym.envs.libero.libero_env import LiberoEnv

    accepted = set(inspect.signature(LiberoEnv).parameters)
    names = [n for n in available_configs() if n.startswith("libero_") and "cpu" not in n]
    assert "libero_object3_grpo_flow" in names and "libero_object_grpo_flow" in names
    for name in names:
        config = load_config(name)
        assert config.policy["preset"] == "base"  # the GPU size, not a CPU variant
        for evaluation in (False, True):
            assert set(env_kwargs(config.env, evaluation=evaluation)) <= accepted, name
