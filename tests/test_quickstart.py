"""The README's main job (`python -m trainers.quickstart`) end to end at tiny sizes."""

from __future__ import annotations

import json
import math

import pytest

from trainers import quickstart


def test_quickstart_runs_sft_then_ppo_and_prints_before_after(tmp_path, capsys):
    out = tmp_path / "qs"
    status = quickstart.main(
        [
            "--out", str(out),
            "--demos", "2",
            "--sft-steps", "4",
            "--rl-iterations", "1",
            "--eval-episodes", "2",
            "--validation-episodes", "2",
            "--validate-every", "1",
            "--num-envs", "2",
            "env.max_steps=10",
            "algorithm.global_batch_size=4",
            "algorithm.micro_batch_size=2",
            "algorithm.critic_warmup_iterations=0",
        ]
    )  # fmt: skip
    assert status == 0
    results = json.loads((out / "result.json").read_text())
    stages = results["stages"]
    assert list(stages) == ["SFT", "SFT + PPO (flow_sde)"]
    for result in stages.values():
        assert 0.0 <= result["success"] <= 1.0 and math.isfinite(result["return"])
    gain = 100 * (stages["SFT + PPO (flow_sde)"]["success"] - stages["SFT"]["success"])
    assert results["gain_points"] == pytest.approx(gain)
    assert results["seed"] == 0 and results["rl_env_steps"] > 0
    assert results["selected_iteration"] in (0, 1)  # the SFT weights or the one PPO iteration
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert table[:2] == ["| stage | success | mean return |", "|---|---|---|"]
    assert [row.split(" | ")[0] for row in table[2:]] == ["| SFT", "| SFT + PPO (flow_sde)"]
    assert f"PPO: {gain:+.0f} points of success" in printed
    assert (out / "sft" / "latest.pt").is_file()
    assert (out / "ppo" / "checkpoints" / "latest.pt").is_file()
    assert len(list((out / "demos").glob("episode_*.npz"))) == 2
