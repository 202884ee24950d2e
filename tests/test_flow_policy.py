"""Flow-matching VLA policy: denoising steps, log-probabilities, sampling modes, SFT loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from trainers.policies.flow import PRESETS, FlowConfig, FlowPolicy
from trainers.policies.flow.sampling import (
    gaussian_entropy,
    gaussian_log_prob,
    ode_step,
    sde_step,
    time_grid,
)

CHUNK, ACTION_DIM, STATE_DIM, BATCH = 5, 4, 7, 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def vla_space(size: int = 16) -> spaces.Dict:
    image = spaces.Box(0, 255, (size, size, 3), np.uint8)
    return spaces.Dict(
        {
            "images": spaces.Dict({"front": image, "wrist": image}),
            "state": spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
            "instruction": spaces.Text(64),
        }
    )


def vla_obs(batch: int = BATCH, size: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "images": {
            cam: torch.as_tensor(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
            for cam in ("front", "wrist")
        },
        "state": torch.as_tensor(rng.normal(size=(batch, STATE_DIM)).astype(np.float32)),
        "instruction": ["pick up the cube", "lift the red block"] * (batch // 2),
    }


def make_policy(chunk: int = CHUNK, **overrides) -> FlowPolicy:
    torch.manual_seed(0)
    config = FlowConfig.from_preset(
        "nano", image_size=16, image_patch=2, language="hash", **overrides
    )
    shape = (ACTION_DIM,) if chunk == 1 else (chunk, ACTION_DIM)
    policy = FlowPolicy(config, vla_space(), spaces.Box(-1, 1, shape, np.float32))
    # Widen the velocity output so the tests are not dominated by a near-zero initial head.
    with torch.no_grad():
        policy.velocity_out.weight.mul_(5.0)
    return policy.eval()


def flat_policy(chunk: int = CHUNK, **overrides) -> FlowPolicy:
    """A state-only policy: cheap, for tests that need many forward passes."""
    torch.manual_seed(0)
    shape = (ACTION_DIM,) if chunk == 1 else (chunk, ACTION_DIM)
    return FlowPolicy(
        FlowConfig.from_preset("nano", **overrides),
        spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
        spaces.Box(-1, 1, shape, np.float32),
    )


# ------------------------------------------------------------------------ denoising formulas
def test_time_grid_is_linspace_then_zero():
    grid = time_grid(4)
    assert torch.allclose(grid, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))


def test_ode_step_equals_x_minus_delta_v():
    gen = torch.Generator().manual_seed(1)
    x, v = torch.randn(8, 5, 4, generator=gen), torch.randn(8, 5, 4, generator=gen)
    grid = time_grid(5)
    for k in range(5):
        t, t_next = grid[k], grid[k + 1]
        assert torch.allclose(ode_step(x, v, t, t_next), x - (t - t_next) * v, atol=1e-6)


def test_policy_deterministic_chain_follows_ode_steps():
    policy = make_policy()
    obs = vla_obs()
    out = policy.act(obs, deterministic=True)
    chain, grid = out.extras["chain"], time_grid(policy.config.denoise_steps)
    prefix = policy.encode(obs)
    with torch.no_grad():
        for k in range(policy.config.denoise_steps):
            v, _ = policy.expert(prefix, chain[:, k], grid[k].expand(BATCH))
            expected = chain[:, k] - (grid[k] - grid[k + 1]) * v
            assert torch.allclose(chain[:, k + 1], expected, atol=1e-5)
    assert torch.equal(out.actions, chain[:, -1].clamp(-1, 1))


@pytest.mark.parametrize("steps", [1, 4, 5])
def test_sde_step_matches_float64_formula(steps):
    rng = np.random.default_rng(steps)
    a = 0.5
    grid = np.concatenate([np.linspace(1, 1 / steps, steps), [0.0]])
    for k in range(steps):
        x, v = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
        t, t_next = grid[k], grid[k + 1]
        delta = t - t_next
        sigma = a * math.sqrt(t / (1 - (grid[1] if t == 1 else t)))
        x0_hat, x1_hat = x - t * v, x + (1 - t) * v
        mean = (1 - (t - delta)) * x0_hat + ((t - delta) - sigma**2 * delta / (2 * t)) * x1_hat
        std = math.sqrt(delta) * sigma
        got_mean, got_std = sde_step(
            torch.tensor(x, dtype=torch.float32),
            torch.tensor(v, dtype=torch.float32),
            torch.tensor(t, dtype=torch.float32),
            torch.tensor(t_next, dtype=torch.float32),
            float(grid[1]),
            a,
        )
        np.testing.assert_allclose(got_mean.numpy(), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_std.numpy(), np.full_like(mean, std), rtol=1e-5)


def test_gaussian_log_prob_is_a_normal_density():
    gen = torch.Generator().manual_seed(2)
    x, mean = torch.randn(50, generator=gen), torch.randn(50, generator=gen)
    std = torch.rand(50, generator=gen) + 0.05
    normal = torch.distributions.Normal(mean, std)
    assert torch.allclose(gaussian_log_prob(x, mean, std), normal.log_prob(x), atol=1e-5)
    assert torch.allclose(gaussian_entropy(std), normal.entropy(), atol=1e-6)
    # It integrates to one.
    grid = torch.linspace(-3.0, 3.0, 20001, dtype=torch.float64)
    density = gaussian_log_prob(grid, torch.tensor(0.3), torch.tensor(0.4)).exp()
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------- rollout vs training
@pytest.mark.parametrize("method", ["flow_sde", "flow_noise"])
@pytest.mark.parametrize("chunk", [1, CHUNK])
def test_recomputed_log_prob_equals_rollout(method, chunk):
    policy = make_policy(chunk=chunk, noise_method=method)
    obs = vla_obs()
    out = policy.act(obs)
    action_shape = (ACTION_DIM,) if chunk == 1 else (chunk, ACTION_DIM)
    assert out.actions.shape == out.log_prob.shape == (BATCH, *action_shape)
    assert out.extras["chain"].shape == (BATCH, policy.config.denoise_steps + 1, chunk, ACTION_DIM)
    assert out.extras["denoise_index"].shape == (BATCH,)
    assert out.actions.abs().max() <= 1.0
    with torch.no_grad():
        # Shuffled order and a different batch composition, as in a training minibatch.
        perm = torch.randperm(BATCH)
        sub = {
            "images": {c: im[perm] for c, im in obs["images"].items()},
            "state": obs["state"][perm],
            "instruction": [obs["instruction"][i] for i in perm],
        }
        extras = {k: v[perm] for k, v in out.extras.items()}
        ev = policy.evaluate(sub, out.actions[perm], extras)
    assert torch.allclose(ev.log_prob, out.log_prob[perm], atol=1e-5, rtol=0)
    assert torch.allclose(ev.value, out.value[perm], atol=1e-5)
    assert torch.allclose(policy.value(sub), ev.value, atol=1e-5)


def test_flow_sde_log_prob_is_the_stochastic_step_density():
    policy = make_policy(noise_method="flow_sde")
    obs = vla_obs()
    out = policy.act(obs)
    index = int(out.extras["denoise_index"][0])
    assert (out.extras["denoise_index"] == index).all()  # one step per batch
    chain, grid = out.extras["chain"], time_grid(policy.config.denoise_steps)
    with torch.no_grad():
        v, _ = policy.expert(policy.encode(obs), chain[:, index], grid[index].expand(BATCH))
    mean, std = sde_step(chain[:, index], v, grid[index], grid[index + 1], float(grid[1]), 0.5)
    expected = torch.distributions.Normal(mean, std).log_prob(chain[:, index + 1])
    assert torch.allclose(out.log_prob, expected, atol=1e-5)
    # The other steps are deterministic ODE steps.
    with torch.no_grad():
        prefix = policy.encode(obs)
        for k in range(policy.config.denoise_steps):
            if k == index:
                continue
            v, _ = policy.expert(prefix, chain[:, k], grid[k].expand(BATCH))
            ode = chain[:, k] - (grid[k] - grid[k + 1]) * v
            assert torch.allclose(chain[:, k + 1], ode, atol=1e-5)


def test_flow_sde_draws_the_stochastic_step_uniformly():
    policy = flat_policy(noise_method="flow_sde")
    obs = torch.randn(2, STATE_DIM)
    torch.manual_seed(3)
    drawn = [int(policy.act(obs).extras["denoise_index"][0]) for _ in range(60)]
    assert set(drawn) == set(range(policy.config.denoise_steps))


def test_flow_noise_std_bounded_and_entropy_matches():
    policy = make_policy(noise_method="flow_noise")
    with torch.no_grad():  # push the noise head to its extremes
        policy.noise_head[-1].weight.normal_(0, 50.0)
    obs = vla_obs()
    out = policy.act(obs)
    chain, steps = out.extras["chain"], policy.config.denoise_steps
    grid = time_grid(steps)
    prefix = policy.encode(obs)
    stds, transitions = [], []
    with torch.no_grad():
        for k in range(steps):
            v, h = policy.expert(prefix, chain[:, k], grid[k].expand(BATCH))
            std = policy.noise_std(h)
            stds.append(std)
            mean = chain[:, k] - (grid[k] - grid[k + 1]) * v
            transitions.append(torch.distributions.Normal(mean, std).log_prob(chain[:, k + 1]))
        ev = policy.evaluate(obs, out.actions, out.extras)
    stds = torch.stack(stds, 1)
    assert stds.min() >= 0.08 - 1e-7 and stds.max() <= 0.16 + 1e-7
    assert stds.min() < 0.09 and stds.max() > 0.15  # the bounds are reached, not just respected
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(chain[:, 0])
    joint = (prior + torch.stack(transitions, 1).sum(1)) / (steps + 1)
    assert torch.allclose(out.log_prob, joint, atol=1e-5)
    entropy = torch.distributions.Normal(torch.zeros_like(stds), stds).entropy().mean(1)
    assert torch.allclose(ev.entropy, entropy, atol=1e-6)


def test_evaluate_gradients_reach_the_network():
    for method in ("flow_sde", "flow_noise"):
        policy = make_policy(noise_method=method).train()
        obs = vla_obs()
        out = policy.act(obs)
        ev = policy.evaluate(obs, out.actions, out.extras)
        (ev.log_prob.sum() + ev.value.sum()).backward()
        assert policy.velocity_out.weight.grad.abs().sum() > 0
        assert policy.value_head[-1].weight.grad.abs().sum() > 0
        if method == "flow_noise":
            assert policy.noise_head[-1].weight.grad.abs().sum() > 0


def test_value_input_is_detached_by_default():
    policy = make_policy().train()
    policy.value(vla_obs()).sum().backward()
    assert (
        policy.velocity_out.weight.grad is None or policy.velocity_out.weight.grad.abs().sum() == 0
    )
    assert all(p.grad is None for p in policy.encoder.parameters())
    prefix_policy = make_policy(value_head="prefix", value_detach=False).train()
    prefix_policy.value(vla_obs()).sum().backward()
    assert prefix_policy.encoder.state.mlp[0].weight.grad.abs().sum() > 0


def test_deterministic_evaluation_is_deterministic():
    policy = make_policy()
    obs = vla_obs()
    torch.manual_seed(0)
    first = policy.act(obs, deterministic=True)
    torch.manual_seed(123)
    second = policy.act(obs, deterministic=True)
    assert torch.equal(first.actions, second.actions)
    assert torch.equal(first.extras["chain"], second.extras["chain"])
    # A one-example batch gets the same action as inside a larger batch.
    head = {
        "images": {c: im[:2] for c, im in obs["images"].items()},
        "state": obs["state"][:2],
        "instruction": obs["instruction"][:2],
    }
    single = policy.act(head, deterministic=True).actions
    assert torch.allclose(single, first.actions[:2], atol=1e-5)
    stochastic = [policy.act(obs).actions for _ in range(2)]
    assert not torch.equal(stochastic[0], stochastic[1])


def test_evaluate_rejects_a_chain_of_the_wrong_shape():
    policy = make_policy()
    obs = vla_obs()
    out = policy.act(obs)
    bad = {**out.extras, "chain": out.extras["chain"][:, :-1]}
    with pytest.raises(ValueError, match="chain"):
        policy.evaluate(obs, out.actions, bad)


# ----------------------------------------------------------------------------------- SFT
def test_sft_loss_decreases_on_a_fixed_batch():
    policy = make_policy().train()
    obs = vla_obs(batch=8)
    gen = torch.Generator().manual_seed(5)
    actions = torch.rand(8, CHUNK, ACTION_DIM, generator=gen) * 2 - 1

    def fixed_loss() -> float:
        torch.manual_seed(11)  # same noise and flow times before and after
        with torch.no_grad():
            return policy.sft_loss(obs, actions).item()

    before = fixed_loss()
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        policy.sft_loss(obs, actions).backward()
        optimizer.step()
    after = fixed_loss()
    assert after < 0.5 * before, (before, after)


def test_sft_then_ode_reproduces_a_constant_action():
    """A policy trained to one action chunk samples it with the deterministic ODE."""
    policy = flat_policy(chunk=1).train()
    obs = torch.randn(8, STATE_DIM)
    target = torch.tensor([0.5, -0.3, 0.8, -0.9]).expand(8, ACTION_DIM)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        policy.sft_loss(obs, target).backward()
        optimizer.step()
    actions = policy.eval().act(obs, deterministic=True).actions
    assert (actions - target).abs().max() < 0.15


# ----------------------------------------------------------------------- config and inputs
def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="noise_method"):
        FlowConfig(noise_method="ddpm")
    with pytest.raises(ValueError, match="value_head"):
        FlowConfig(value_head="critic")
    with pytest.raises(ValueError, match="noise_std_min"):
        FlowConfig(noise_std_min=0.2, noise_std_max=0.1)
    with pytest.raises(ValueError, match="divisible"):
        FlowConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="unknown flow policy preset"):
        FlowConfig.from_preset("gigantic")


def test_presets_scale_from_cpu_to_gpu():
    sizes = {}
    for name in ("nano", "small", "base"):
        torch.manual_seed(0)
        config = FlowConfig.from_preset(name, language="hash")
        policy = FlowPolicy(
            config, vla_space(config.image_size), spaces.Box(-1, 1, (5, 4), np.float32)
        )
        sizes[name] = sum(p.numel() for p in policy.parameters())
    assert sizes["nano"] < sizes["small"] < sizes["base"]
    assert set(PRESETS) >= {"nano", "small", "base", "large"}
    assert FlowConfig.from_preset("large").amp and FlowConfig.from_preset("large").compile


def test_flat_observations_are_supported():
    torch.manual_seed(0)
    policy = FlowPolicy(
        FlowConfig.from_preset("nano"),
        spaces.Box(-np.inf, np.inf, (10,), np.float32),
        spaces.Box(-1, 1, (4,), np.float32),
    )
    obs = torch.randn(3, 10)
    out = policy.act(obs)
    with torch.no_grad():
        ev = policy.evaluate(obs, out.actions, out.extras)
    assert out.actions.shape == (3, 4)
    assert torch.allclose(ev.log_prob, out.log_prob, atol=1e-5)


def test_rejects_non_box_action_space():
    with pytest.raises(ValueError, match="Box action space"):
        FlowPolicy(FlowConfig.from_preset("nano"), vla_space(), spaces.Discrete(3))


def test_policy_settings_parse_into_a_flow_config():
    from trainers.policies import parse_policy_config
    from trainers.schema import ConfigError

    config = parse_policy_config(
        {"name": "flow", "preset": "nano", "heads": 2, "image_channels": [8, 16]}
    )
    assert isinstance(config, FlowConfig) and config.preset == "nano"
    assert (config.dim, config.heads, config.image_channels) == (64, 2, (8, 16))
    assert parse_policy_config({"name": "flow"}) == FlowConfig()  # the "small" preset
    with pytest.raises(ConfigError, match="unknown key 'policy.dims'"):
        parse_policy_config({"name": "flow", "dims": 3})
    with pytest.raises(ConfigError, match="policy: dim=30 is not divisible"):
        parse_policy_config({"name": "flow", "dim": 30})
