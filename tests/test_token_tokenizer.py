"""Action tokenizer and token-distribution math of the action-token VLA policy."""

from __future__ import annotations

import math

import pytest
import torch

from trainers.policies.token.sampling import (
    log_prob_levels,
    process_logits,
    sample_tokens,
    token_entropy,
    token_log_prob,
)
from trainers.policies.token.tokenizer import ActionTokenizer


# ------------------------------------------------------------------------------ tokenizer
@pytest.mark.parametrize("normalization", ["none", "quantile", "meanstd"])
@pytest.mark.parametrize("num_bins", [256, 7])
def test_round_trip_error_is_at_most_half_a_bin(normalization: str, num_bins: int) -> None:
    generator = torch.Generator().manual_seed(0)
    demos = torch.rand(5000, 4, generator=generator) * torch.tensor([0.4, 2.0, 0.1, 1.0]) - 0.2
    tokenizer = ActionTokenizer(4, num_bins=num_bins, normalization=normalization).fit(demos)
    # Actions inside the fitted range (the normalised range [-1, 1] maps back into it).
    inside = tokenizer.unnormalize(torch.rand(2000, 4, generator=generator) * 2 - 1)
    tokens = tokenizer.tokenize(inside)
    assert tokens.dtype == torch.int64 and tokens.shape == inside.shape
    error = (tokenizer.detokenize(tokens) - inside).abs()
    half_bin = tokenizer.scale * tokenizer.bin_width / 2
    assert (error <= half_bin + 1e-6).all()


def test_tokens_stay_in_range_and_decode_inside_the_action_bounds() -> None:
    tokenizer = ActionTokenizer(3, num_bins=256).fit(torch.rand(1000, 3) * 0.5 - 0.25)
    extreme = torch.tensor([[-1.0, 0.0, 1.0], [-50.0, 3.0, 1e6], [0.25, -0.25, 0.999]])
    tokens = tokenizer.tokenize(extreme)
    assert tokens.min() >= 0 and tokens.max() <= 255
    assert tokens[1, 0] == 0 and tokens[1, 2] == 255  # out of range clips to the end bins
    decoded = tokenizer.detokenize(torch.arange(256).unsqueeze(-1).expand(256, 3))
    assert decoded.min() >= -1.0 and decoded.max() <= 1.0
    # Bin centres are strictly increasing and evenly spaced in the normalised range.
    centres = tokenizer.bin_centers
    assert centres[0] == pytest.approx(-1 + 1 / 256) and centres[-1] == pytest.approx(1 - 1 / 256)
    assert torch.allclose(centres.diff(), torch.full((255,), 2 / 256))


def test_default_bins_cover_the_env_range_and_round_trip_exactly_at_centres() -> None:
    tokenizer = ActionTokenizer(2, num_bins=256)  # unfitted: identity statistics
    assert not bool(tokenizer.fitted)
    tokens = torch.randint(0, 256, (100, 2))
    assert torch.equal(tokenizer.tokenize(tokenizer.detokenize(tokens)), tokens)


def test_quantile_statistics_and_constant_dimensions() -> None:
    demos = torch.stack([torch.linspace(-0.5, 0.5, 10001), torch.full((10001,), 0.3)], -1)
    tokenizer = ActionTokenizer(2, normalization="quantile", quantiles=(0.01, 0.99)).fit(demos)
    assert bool(tokenizer.fitted)
    assert tokenizer.center[0].item() == pytest.approx(0.0, abs=1e-6)
    assert tokenizer.scale[0].item() == pytest.approx(0.49, abs=1e-4)
    # A dimension the demonstrations never move decodes back to its constant.
    decoded = tokenizer.detokenize(tokenizer.tokenize(demos[:5]))
    assert torch.allclose(decoded[:, 1], torch.full((5,), 0.3), atol=1e-4)


def test_statistics_travel_with_the_state_dict() -> None:
    fitted = ActionTokenizer(3, normalization="meanstd").fit(torch.randn(500, 3) * 0.2)
    fresh = ActionTokenizer(3, normalization="meanstd")
    fresh.load_state_dict(fitted.state_dict())
    assert bool(fresh.fitted)
    assert torch.equal(fresh.center, fitted.center) and torch.equal(fresh.scale, fitted.scale)
    actions = torch.rand(20, 3) * 0.4 - 0.2
    assert torch.equal(fresh.tokenize(actions), fitted.tokenize(actions))


def test_soft_targets_are_a_gaussian_over_the_bins_peaked_at_the_token() -> None:
    tokenizer = ActionTokenizer(2, num_bins=32)
    actions = torch.tensor([[0.013, -0.47], [0.9, -0.999]])
    targets = tokenizer.soft_targets(actions, sigma_bins=1.0)
    assert targets.shape == (2, 2, 32)
    assert torch.allclose(targets.sum(-1), torch.ones(2, 2))
    assert torch.equal(targets.argmax(-1), tokenizer.tokenize(actions))
    # the mass of each bin is that of a normal law with std one bin width, renormalised
    y, width = 0.013, tokenizer.bin_width
    normal = torch.distributions.Normal(torch.tensor(y, dtype=torch.float64), width)
    edges = torch.linspace(-1, 1, 33, dtype=torch.float64)
    mass = normal.cdf(edges[1:]) - normal.cdf(edges[:-1])
    assert torch.allclose(targets[0, 0].double(), mass / mass.sum(), atol=1e-6)
    # a narrow Gaussian is the one-hot token
    narrow = tokenizer.soft_targets(actions, sigma_bins=0.01)
    one_hot = torch.nn.functional.one_hot(tokenizer.tokenize(actions), 32).float()
    assert torch.allclose(narrow, one_hot, atol=1e-4)
    with pytest.raises(ValueError, match="sigma_bins must be > 0"):
        tokenizer.soft_targets(actions, sigma_bins=0.0)


def test_bad_input_raises_clear_errors() -> None:
    tokenizer = ActionTokenizer(3, num_bins=16)
    with pytest.raises(ValueError, match="last dimension of 3"):
        tokenizer.tokenize(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        tokenizer.fit(torch.tensor([[0.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 16\)"):
        tokenizer.detokenize(torch.tensor([[0, 16, 1]]))
    with pytest.raises(ValueError, match="must be integers"):
        tokenizer.detokenize(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="num_bins"):
        ActionTokenizer(3, num_bins=1)
    with pytest.raises(ValueError, match="normalization"):
        ActionTokenizer(3, normalization="minmax")


# ------------------------------------------------------------------------- distribution
def test_top_k_sampling_never_draws_outside_the_top_k() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 64, generator=generator)
    logits[0, :10] = 5.0  # ties at the top: still exactly k tokens allowed
    k = 5
    processed = process_logits(logits, temperature=1.5, top_k=k)
    assert ((processed > float("-inf")).sum(-1) == k).all()
    allowed = processed > float("-inf")
    drawn = sample_tokens(processed.unsqueeze(0).expand(4000, 6, 64), 1.5, generator=generator)
    assert allowed.gather(-1, drawn.T).all()
    # Every allowed token of a flat-ish row shows up over many draws (the filter is not greedy).
    assert len(set(drawn[:, 1].tolist())) == k


def test_temperature_to_zero_equals_greedy() -> None:
    logits = torch.randn(32, 256, generator=torch.Generator().manual_seed(2))
    greedy = sample_tokens(process_logits(logits, 0.0, 50), 0.0)
    assert torch.equal(greedy, logits.argmax(-1))
    cold = sample_tokens(process_logits(logits, 1e-4, 50), 1e-4)
    assert torch.equal(cold, greedy)


def test_log_prob_and_entropy_match_a_direct_computation() -> None:
    logits = torch.randn(3, 5, 4, 32, generator=torch.Generator().manual_seed(3))
    tokens = torch.randint(0, 32, (3, 5, 4))
    temperature, k = 0.7, 8
    processed = process_logits(logits, temperature, k, keep=tokens)
    # Direct: renormalise the tempered softmax over the allowed set.
    probs = torch.softmax(logits / temperature, -1)
    top = (logits / temperature).topk(k, -1).indices
    allowed = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, top, True)
    allowed.scatter_(-1, tokens.unsqueeze(-1), True)
    renorm = torch.where(allowed, probs, torch.zeros_like(probs))
    renorm = renorm / renorm.sum(-1, keepdim=True)
    expected_lp = renorm.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).log()
    nonzero = renorm.clamp_min(1e-30)
    expected_entropy = -(torch.where(allowed, renorm * nonzero.log(), 0.0)).sum(-1)
    assert torch.allclose(token_log_prob(processed, tokens), expected_lp, atol=1e-5)
    assert torch.allclose(token_entropy(processed), expected_entropy, atol=1e-5)
    # Without a filter the entropy of a uniform distribution is log(num_bins).
    uniform = token_entropy(process_logits(torch.zeros(2, 32), 1.0, 0))
    assert torch.allclose(uniform, torch.full((2,), math.log(32)))


def test_log_prob_levels_sum_correctly() -> None:
    token_level = torch.randn(4, 3, 7)
    levels = log_prob_levels(token_level)
    assert levels["action"].shape == (4, 3) and levels["chunk"].shape == (4,)
    assert torch.allclose(levels["action"], token_level.sum(-1))
    assert torch.allclose(levels["chunk"], token_level.sum((-1, -2)))
    # Chunk log-prob = log of the product of every token's probability (independent tokens).
    logits = torch.randn(4, 3, 7, 16)
    tokens = torch.randint(0, 16, (4, 3, 7))
    probs = torch.softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    chunk = log_prob_levels(token_log_prob(process_logits(logits, 1.0, 0), tokens))["chunk"]
    expected = probs.double().prod(-1).prod(-1).log().float()
    assert torch.allclose(chunk, expected, atol=1e-4)
