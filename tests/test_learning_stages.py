"""benchmarks/_learning_stages.py: the RL time cap shared by the learning benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _learning_stages as stages  # noqa: E402


class FakeTrainer:
    """Counts iterations of ``seconds`` each; ``elapsed`` as if restored from a checkpoint."""

    def __init__(self, seconds: float, iteration: int = 0) -> None:
        self.seconds, self.iteration, self.env_steps = seconds, iteration, 0
        self.elapsed = seconds * iteration
        self.logged: list[int] = []
        self.logger = self

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append(int(metrics["iteration"]))

    def train_iteration(self) -> dict[str, float]:
        self.iteration += 1
        self.elapsed += self.seconds
        return {"iteration": self.iteration, "time/iteration": self.seconds}


def test_the_cap_leaves_room_for_one_more_iteration() -> None:
    trainer = FakeTrainer(seconds=25.0)
    metrics = list(stages.timed_iterations(trainer, iterations=100, minutes=1.0))
    # 25 s, 50 s; a third would end at 75 s > 60 s
    assert [m["iteration"] for m in metrics] == [1, 2] and trainer.logged == [1, 2]
    assert trainer.elapsed <= 60.0


def test_the_cap_counts_every_launch_of_a_resumed_run() -> None:
    trainer = FakeTrainer(seconds=10.0, iteration=4)  # 40 s trained by an earlier launch
    metrics = list(stages.timed_iterations(trainer, iterations=100, minutes=1.0))
    assert [m["iteration"] for m in metrics] == [5, 6] and trainer.elapsed == 60.0
    assert list(stages.timed_iterations(trainer, iterations=100, minutes=1.0)) == []


def test_the_iteration_budget_ends_before_the_cap() -> None:
    trainer = FakeTrainer(seconds=1.0)
    assert len(list(stages.timed_iterations(trainer, iterations=3, minutes=60.0))) == 3
    assert trainer.iteration == 3


def test_a_finished_run_continues_only_with_room_in_a_larger_budget() -> None:
    assert stages.rl_to_continue(None, iterations=10, minutes=60.0)
    stopped_by_time = {"iterations": 4, "train_minutes": 50.0}  # 12.5 min per iteration
    assert not stages.rl_to_continue(stopped_by_time, iterations=10, minutes=60.0)
    assert stages.rl_to_continue(stopped_by_time, iterations=10, minutes=62.5)
    finished = {"iterations": 10, "train_minutes": 5.0}
    assert not stages.rl_to_continue(finished, iterations=10, minutes=60.0)
    assert stages.rl_to_continue(finished, iterations=20, minutes=60.0)
