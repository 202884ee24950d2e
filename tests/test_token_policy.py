"""The action-token VLA policy behind the trainer interface (act / evaluate / value / sft_loss)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from trainers.policies import make_policy
from trainers.policies.token import TokenConfig, TokenPolicy
from trainers.policies.token.sampling import log_prob_levels, process_logits
from vla_gym.core.spaces import chunked_action_space, vla_observation_space

CAMERAS = {"front": (32, 32), "wrist": (32, 32)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = {"encoder": {"dim": 32, "image_size": 32, "language": "hash"}, "num_heads": 2}


def make(chunk: int = 3, action_dim: int = 4, **overrides) -> TokenPolicy:
    torch.manual_seed(0)
    config = TokenConfig(**{**TINY, **overrides})
    return TokenPolicy(
        config, vla_observation_space(CAMERAS, 5), chunked_action_space(action_dim, chunk)
    )


def observation(batch: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    images = {
        name: torch.randint(0, 256, (batch, *hw, 3), dtype=torch.uint8, generator=generator)
        for name, hw in CAMERAS.items()
    }
    instructions = ["pick up the cube", "open the drawer"] * (batch // 2) + ["stack"] * (batch % 2)
    return {
        "images": images,
        "state": torch.randn(batch, 5, generator=generator),
        "instruction": instructions,
    }


def subset(obs: dict, index: torch.Tensor) -> dict:
    return {
        "images": {name: image[index] for name, image in obs["images"].items()},
        "state": obs["state"][index],
        "instruction": [obs["instruction"][i] for i in index.tolist()],
    }


@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_recomputed_log_probs_equal_rollout_log_probs(decoding: str) -> None:
    policy = make(decoding=decoding, top_k=20)
    obs = observation(10)
    out = policy.act(obs)
    assert out.actions.shape == (10, 3, 4) and out.log_prob.shape == (10, 3, 4)
    assert out.value.shape == (10,) and out.extras["tokens"].shape == (10, 3, 4)
    assert out.actions.abs().max() <= 1.0
    # Training recomputes on shuffled minibatches, in train mode.
    policy.train()
    index = torch.randperm(10)[:6]
    with torch.no_grad():
        recomputed = policy.evaluate(
            subset(obs, index), out.actions[index], {"tokens": out.extras["tokens"][index]}
        )
    assert (recomputed.log_prob - out.log_prob[index]).abs().max() <= 1e-5
    assert torch.allclose(recomputed.value, out.value[index], atol=1e-5)
    # The tokens decode to the actions, so scoring the actions alone gives the same numbers.
    with torch.no_grad():
        from_actions = policy.evaluate(obs, out.actions, {})
    assert (from_actions.log_prob - out.log_prob).abs().max() <= 1e-5


@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_greedy_and_near_zero_temperature_pick_the_argmax(decoding: str) -> None:
    policy = make(decoding=decoding)
    obs = observation(6)
    greedy = policy.act(obs, deterministic=True)
    fused = policy.model.fuse(obs)
    with torch.no_grad():
        logits = policy.model.logits(fused, greedy.extras["tokens"])
    assert torch.equal(greedy.extras["tokens"], logits.argmax(-1))
    assert torch.equal(policy.act(obs, deterministic=True).actions, greedy.actions)
    policy.config.temperature = 1e-5  # sampling at a vanishing temperature is greedy
    assert torch.equal(policy.act(obs).extras["tokens"], greedy.extras["tokens"])


def test_sampled_tokens_stay_in_the_top_k() -> None:
    policy = make(chunk=2, action_dim=2, top_k=3, num_bins=32)
    obs = observation(1)
    obs = subset(obs, torch.zeros(300, dtype=torch.long))  # one observation, 300 draws
    out = policy.act(obs)
    with torch.no_grad():
        logits = policy.model.logits(policy.model.fuse(obs))
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == out.extras["tokens"].unsqueeze(-1)).any(-1).all()
    assert len(out.extras["tokens"][:, 0, 0].unique()) > 1  # it does sample


def test_log_prob_levels_and_entropy_of_the_policy() -> None:
    policy = make(top_k=10)
    obs = observation(4)
    out = policy.act(obs)
    evaluated = policy.evaluate(obs, out.actions, out.extras)
    levels = log_prob_levels(evaluated.log_prob)
    assert torch.allclose(levels["chunk"], out.log_prob.sum((1, 2)), atol=1e-5)
    # Entropy: direct computation over the same processed distribution.
    with torch.no_grad():
        logits = policy.model.logits(policy.model.fuse(obs))
    processed = process_logits(logits, 1.0, 10, keep=out.extras["tokens"])
    probs = torch.softmax(processed, -1)
    direct = -(probs * torch.log(probs.clamp_min(1e-38))).sum(-1)
    assert torch.allclose(evaluated.entropy, direct, atol=1e-5)
    assert (evaluated.entropy <= torch.log(torch.tensor(10.0)) + 1e-5).all()
    # Log-probs and entropy carry gradients to the network.
    (evaluated.log_prob.sum() + evaluated.entropy.sum() + evaluated.value.sum()).backward()
    assert (
        policy.model.head.weight.grad is not None and policy.model.head.weight.grad.abs().sum() > 0
    )
    assert policy.model.value_head[0].weight.grad.abs().sum() > 0


def test_single_step_actions_are_shaped_like_the_action_space() -> None:
    policy = make(chunk=1, action_dim=7)
    out = policy.act(observation(3))
    assert out.actions.shape == (3, 7) and out.log_prob.shape == (3, 7)
    assert out.extras["tokens"].shape == (3, 7)
    assert policy.evaluate(observation(3), out.actions, out.extras).log_prob.shape == (3, 7)


def test_soft_target_sft_loss_is_the_cross_entropy_against_the_gaussian_targets() -> None:
    policy = make(num_bins=16, label_sigma=1.5)
    obs = observation(4)
    actions = (torch.rand(4, 3, 4, generator=torch.Generator().manual_seed(1)) - 0.5) * 1.8
    logits = policy.model.logits(policy.model.fuse(obs)).reshape(-1, 16)
    targets = policy.tokenizer.soft_targets(actions, 1.5).reshape(-1, 16)
    expected = -(targets * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(policy.sft_loss(obs, actions), expected, atol=1e-6)
    hard = make(num_bins=16)
    tokens = hard.tokenizer.tokenize(actions).reshape(-1)
    assert torch.allclose(
        hard.sft_loss(obs, actions),
        logits.log_softmax(-1).neg()[torch.arange(len(tokens)), tokens].mean(),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="label_sigma must be >= 0"):
        TokenConfig(label_sigma=-1.0)


@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_sft_fits_demonstrations_and_stats_travel_with_the_state_dict(decoding: str) -> None:
    policy = make(decoding=decoding, num_bins=64)
    obs = observation(8)
    generator = torch.Generator().manual_seed(4)
    actions = (torch.rand(8, 3, 4, generator=generator) - 0.5) * 0.4  # a narrow expert range
    policy.fit_action_statistics(actions)
    policy.set_state_statistics(obs["state"].mean(0), obs["state"].std(0))
    assert bool(policy.tokenizer.fitted)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = policy.sft_loss(obs, actions).item()
    for _ in range(150):
        optimizer.zero_grad()
        loss = policy.sft_loss(obs, actions)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first
    assert policy.token_accuracy(obs, actions) > 0.9
    greedy = policy.act(obs, deterministic=True).actions
    half_bin = policy.tokenizer.scale * policy.tokenizer.bin_width / 2
    assert ((greedy - actions).abs() <= half_bin + 1e-5).float().mean() > 0.9
    # A fresh policy with the saved state reproduces it exactly (statistics included).
    restored = make(decoding=decoding, num_bins=64)
    restored.load_state_dict(policy.state_dict())
    assert torch.equal(restored.tokenizer.scale, policy.tokenizer.scale)
    assert torch.equal(restored.model.encoder.state.mean, policy.model.encoder.state.mean)
    assert torch.equal(restored.act(obs, deterministic=True).actions, greedy)


def test_registry_builds_the_policy_from_config_settings() -> None:
    settings = {"name": "token", **TINY, "decoding": "autoregressive", "quantiles": [0.05, 0.95]}
    policy = make_policy(settings, vla_observation_space(CAMERAS, 5), chunked_action_space(4, 2))
    assert isinstance(policy, TokenPolicy) and policy.model.autoregressive
    assert policy.tokenizer.quantiles == (0.05, 0.95)
    flat = make_policy(
        {"name": "token", **TINY}, gym.spaces.Box(-5, 5, (10,)), chunked_action_space(4, 1)
    )
    assert flat.act(torch.randn(3, 10)).actions.shape == (3, 4)


def test_presets_and_config_errors() -> None:
    assert (
        TokenConfig.cpu().encoder_config().dim == 64
        and TokenConfig.gpu().encoder_config().dim == 512
    )
    assert TokenConfig.gpu(decoder_layers=2).decoder_layers == 2
    assert TokenConfig(size="gpu", encoder={"image_size": 128}).encoder_config().image_size == 128
    with pytest.raises(ValueError, match="policy.size"):
        TokenConfig(size="huge")
    with pytest.raises(ValueError, match="policy.encoder: unknown key 'width'"):
        TokenConfig(encoder={"width": 3})
    with pytest.raises(ValueError, match="policy.decoding"):
        TokenConfig(decoding="beam")
    with pytest.raises(ValueError, match="policy.temperature"):
        TokenConfig(temperature=0.0)
    with pytest.raises(ValueError, match="Box action space"):
        TokenPolicy(TokenConfig(**TINY), vla_observation_space(CAMERAS, 5), gym.spaces.Discrete(3))
    policy = make()
    with pytest.raises(ValueError, match=r"actions must be shaped \(B, 3, 4\)"):
        policy.sft_loss(observation(2), torch.zeros(2, 4))
