"""benchmarks/learning_calvin.py end to end at tiny sizes: result structure and resumption."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pybullet", reason="CALVIN needs pybullet (pip install pybullet)")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import learning_calvin  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "--demos", "2", "--collect-envs", "2", "--sft-steps", "2", "--sft-batch", "4",
    "--chains", "1", "--eval-envs", "1",
    "env.kwargs.assets=builtin", "env.max_steps=10", "env.num_envs=2",
    "algorithm.global_batch_size=4", "algorithm.micro_batch_size=2",
]  # fmt: skip


def run(tmp_path: Path, *extra: str) -> dict:
    work, results = tmp_path / "work", tmp_path / "results"
    argv = ["--work", str(work), "--results-dir", str(results), *TINY, *extra]
    return learning_calvin.main(argv)[0]


def test_pipeline_writes_the_result_and_resumes(tmp_path, monkeypatch, capsys) -> None:
    state = run(tmp_path, "--rl-iterations", "1")
    assert state["collect"]["episodes"] == 2 and 0.0 <= state["collect"]["expert_success"] <= 1
    assert state["collect"]["assets"] == "builtin"
    assert state["sft"]["steps"] == 2 and state["rl"]["iterations"] == 1
    for key in ("sft_eval", "rl_eval"):
        evaluation = state[key]
        assert evaluation["chains"] == 1
        rates = [evaluation[f"chain_success_{i}"] for i in range(1, 6)]
        assert evaluation["avg_len"] == pytest.approx(sum(rates))
        # the first of the 1000 official chains
        assert sum(c["total"] for c in evaluation["task_counts"].values()) == 1

    result = json.loads((tmp_path / "results" / "learning_calvin_d.json").read_text())
    assert result["metric"] == "gain" and result["seeds"] == [0]
    assert "builtin assets" in result["claim"]
    values = result["per_seed"]["0"]
    assert values["gain"] == pytest.approx(values["RL avg. len"] - values["SFT avg. len"])
    assert {f"{stage} {i}/5 (%)" for stage in ("SFT", "RL") for i in range(1, 6)} <= set(values)
    assert [row["task"] for row in result["rows"]] == sorted(state["sft_eval"]["task_counts"])

    # a second invocation runs no stage again
    def fail(*args, **kwargs):
        pytest.fail("a finished stage ran again")

    with monkeypatch.context() as patch:
        patch.setattr(learning_calvin, "evaluate_chains", fail)
        patch.setattr("trainers.collect.collect", fail)
        patch.setattr("trainers.sft.train_sft", fail)
        patch.setattr("trainers.train.Trainer", fail)
        assert run(tmp_path, "--rl-iterations", "1") == state

    # a larger RL budget continues from the RL checkpoint, not from the SFT weights
    path = tmp_path / "work" / "seed0" / "state.json"
    unfinished = json.loads(path.read_text())
    del unfinished["rl"], unfinished["rl_eval"]
    path.write_text(json.dumps(unfinished))
    with monkeypatch.context() as patch:
        patch.setattr("trainers.sft.train_sft", fail)
        state = run(tmp_path, "--rl-iterations", "2")
    assert [point["iteration"] for point in state["rl_curve"]] == [1, 2]
    assert state["rl"]["iterations"] == 2 and "rl_eval" in state

    # the trained checkpoint through the recipe's command line: the official table, per task
    from trainers.__main__ import main as trainers_main

    capsys.readouterr()
    checkpoint = state["rl"]["checkpoint"]
    argv = ["eval", "--config", "calvin_d_ppo_flow_cpu", "--checkpoint", checkpoint]
    assert trainers_main([*argv, "--episodes", "1", "env.kwargs.assets=builtin"]) == 0
    out = capsys.readouterr().out
    assert f"policy {checkpoint}: 1 chains, 360 steps per subtask" in out
    assert "| 1/5 | 2/5 | 3/5 | 4/5 | 5/5 | avg. len |" in out
    first_task = next(iter(state["rl_eval"]["task_counts"]))
    assert any(line.startswith(first_task) for line in out.splitlines())


def test_grpo_recipe_trains_on_recorded_chain_starts_in_groups(tmp_path) -> None:
    """``--algorithm grpo --start-chains 1``: one group of two envs on single subtasks that
    start where the subtasks of one expert chain began; the evaluation keeps the official
    start states, and the claim names the GRPO recipe and the start states."""
    state = run(
        tmp_path, "--algorithm", "grpo", "--rl-iterations", "1", "--start-chains", "1",
        "--chain-demos", "2", "--probe-episodes", "3", "algorithm.group_size=2",
    )  # fmt: skip
    assert state["collect"]["subtasks"] == 1 and state["rl"]["iterations"] == 1
    # --chain-demos: two more expert subtasks, each the task of its recorded chain position
    from trainers.demos import read_index
    from vla_gym.envs.calvin.language import BUILTIN_SENTENCES
    from vla_gym.envs.calvin.start_states import load_start_states

    assert state["collect"]["episodes"] == 4 and state["collect"]["chain_demos"] == 2
    recorded = load_start_states(tmp_path / "work" / "seed0" / "start_states.npz")
    chain_tasks = {BUILTIN_SENTENCES[task] for task in recorded.chain[0]}
    records = read_index(tmp_path / "work" / "seed0" / "demos")
    assert all(r["instructions"][0] in chain_tasks for r in records[2:])
    starts = state["starts"]
    assert starts["chains"] == 1 and starts["per_position"][0] == 1
    assert starts["states"] == sum(starts["per_position"])
    from trainers.config import load_config

    seed_dir = tmp_path / "work" / "seed0"
    config = load_config(str(seed_dir / "rl" / "config.yaml"))
    # --probe-episodes: the SFT policy's success per task on RL episodes weighs RL's starts
    probe = state["probe"]["task_counts"]
    assert sum(total for _, total in probe.values()) == 4  # whole rounds of the two envs
    assert all(0 <= success <= total for success, total in probe.values())
    weighted = load_start_states(seed_dir / "start_states_weighted.npz")
    weights = learning_calvin.task_weights(probe, set(weighted.starting_tasks().tolist()))
    assert weighted.weight.tolist() == [weights[t] for t in weighted.starting_tasks()]
    assert config.env.kwargs["start_states"] == str(seed_dir / "start_states_weighted.npz")
    assert config.env.kwargs["num_subtasks"] == 1 and config.env.eval_kwargs["start_states"] is None
    # the recipe's behaviour-cloning term clones this seed's demonstrations
    assert config.algorithm.sft_coef == 10 and config.algorithm.sft_demos == str(seed_dir / "demos")
    curve = state["rl_curve"][0]
    assert 0.0 <= curve["avg_len"] <= 1.0 or np.isnan(curve["avg_len"])
    result = json.loads((tmp_path / "results" / "learning_calvin_d.json").read_text())
    assert "GRPO (flow_sde)" in result["claim"] and "calvin_d_grpo_flow_cpu" in result["claim"]
    assert "where the subtasks of 1 expert chains began" in result["claim"]
    assert "cloning the SFT demonstrations in every update (sft_coef 10)" in result["claim"]


def test_task_weights_favour_tasks_solved_sometimes() -> None:
    weights = learning_calvin.task_weights(
        {"open_drawer": [10, 10], "stack_block": [0, 10], "push_into_drawer": [5, 10]},
        {"open_drawer", "stack_block", "push_into_drawer", "turn_on_led"},
    )
    assert weights["push_into_drawer"] == pytest.approx(0.25)
    assert weights["turn_on_led"] == pytest.approx(0.25)  # not probed: p = 0.5
    assert (
        weights["open_drawer"]
        == pytest.approx(weights["stack_block"])
        == pytest.approx((11 / 12) * (1 / 12))
    )


@pytest.mark.parametrize("flag", ["--chain-demos", "--probe-episodes"])
def test_start_chain_options_need_recorded_chain_starts(tmp_path, capsys, flag) -> None:
    with pytest.raises(SystemExit):
        run(tmp_path, flag, "2")
    assert f"{flag} needs --start-chains" in capsys.readouterr().err
