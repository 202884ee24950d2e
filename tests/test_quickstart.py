"""The README's main job (`python -m trainers.quickstart`) end to end at tiny sizes."""

from __future__ import annotations

import math

from trainers import quickstart


def test_quickstart_runs_sft_then_ppo_and_prints_before_after(tmp_path, capsys):
    out = tmp_path / "qs"
    results = quickstart.main(
        [
            "--out", str(out),
            "--demos", "2",
            "--sft-steps", "4",
            "--rl-iterations", "1",
            "--eval-episodes", "2",
            "--num-envs", "2",
            "env.max_steps=10",
            "algorithm.global_batch_size=4",
            "algorithm.micro_batch_size=2",
            "algorithm.critic_warmup_iterations=0",
        ]
    )  # fmt: skip
    assert list(results) == ["SFT", "SFT + PPO (flow_sde)"]
    for result in results.values():
        assert 0.0 <= result["success"] <= 1.0 and math.isfinite(result["return"])
    printed = capsys.readouterr().out
    assert "| SFT | " in printed and "| SFT + PPO (flow_sde) | " in printed
    assert (out / "sft" / "latest.pt").is_file()
    assert (out / "ppo" / "checkpoints" / "latest.pt").is_file()
    assert len(list((out / "demos").glob("episode_*.npz"))) == 2
