"""The Meta-World task catalogue: the 50 task names, the suites and their fixed trials.

Task names are Meta-World's without the version suffix (``"pick-place"`` for ``pick-place-v3``).
A *trial* is one fixed initial layout (object and goal positions) of a task, identified by its
index: trial ``i`` of a task is the layout Meta-World's own sampler draws from a generator
seeded with ``(trial_seed, task index among the 50, i)``, so it is the same on every machine,
in every process and for every suite.

Episode cycling (what a plain ``reset()`` picks) is a pure function of the seed given to the last
``reset(seed=s)`` and the number ``e`` of episodes since then::

    task  = tasks[(s + task_stride * (e // num_trials)) % len(tasks)]
    trial = (s // len(tasks) + e) % num_trials

so an env runs all trials of one task, then moves ``task_stride`` tasks on. A vector env seeds
env ``i`` with ``s + i``: its envs start on different tasks, and with ``task_stride=num_envs``
they visit disjoint tasks (which is how the evaluation covers a suite exactly once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Meta-World's MT50 order (metaworld.env_dict.MT50_V3).
ALL_TASKS: tuple[str, ...] = (
    "assembly",
    "basketball",
    "bin-picking",
    "box-close",
    "button-press-topdown",
    "button-press-topdown-wall",
    "button-press",
    "button-press-wall",
    "coffee-button",
    "coffee-pull",
    "coffee-push",
    "dial-turn",
    "disassemble",
    "door-close",
    "door-lock",
    "door-open",
    "door-unlock",
    "hand-insert",
    "drawer-close",
    "drawer-open",
    "faucet-open",
    "faucet-close",
    "hammer",
    "handle-press-side",
    "handle-press",
    "handle-pull-side",
    "handle-pull",
    "lever-pull",
    "pick-place-wall",
    "pick-out-of-hole",
    "pick-place",
    "plate-slide",
    "plate-slide-side",
    "plate-slide-back",
    "plate-slide-back-side",
    "peg-insert-side",
    "peg-unplug-side",
    "soccer",
    "stick-push",
    "stick-pull",
    "push",
    "push-wall",
    "push-back",
    "reach",
    "reach-wall",
    "shelf-place",
    "sweep-into",
    "sweep",
    "window-open",
    "window-close",
)
ML45_TEST_TASKS: tuple[str, ...] = (
    "bin-picking",
    "box-close",
    "hand-insert",
    "door-lock",
    "door-unlock",
)
ML45_TRAIN_TASKS: tuple[str, ...] = tuple(t for t in ALL_TASKS if t not in ML45_TEST_TASKS)
VERSION_SUFFIX = "-v3"


@dataclass(frozen=True)
class Suite:
    """A set of tasks with a number of fixed trials each.

    ``goal_observable`` says whether the flat observation shows the goal position (multi-task
    suites) or hides it (meta-learning suites, as Meta-World does); ``one_hot`` whether the flat
    observation carries a one-hot task id (multi-task suites with more than one task).
    """

    name: str
    tasks: tuple[str, ...]
    num_trials: int
    goal_observable: bool = True

    @property
    def one_hot(self) -> bool:
        return self.goal_observable and len(self.tasks) > 1

    def __len__(self) -> int:
        return len(self.tasks) * self.num_trials


SUITES: dict[str, Suite] = {
    "MT50": Suite("MT50", ALL_TASKS, num_trials=10),
    "ML45-train": Suite("ML45-train", ML45_TRAIN_TASKS, num_trials=10, goal_observable=False),
    "ML45-test": Suite("ML45-test", ML45_TEST_TASKS, num_trials=20, goal_observable=False),
}


def canonical_task(name: str) -> str:
    """``"pick-place-v3"`` or ``"pick-place"`` -> ``"pick-place"``; unknown names raise."""
    task = str(name).removesuffix(VERSION_SUFFIX)
    if task not in ALL_TASKS:
        raise ValueError(
            f"unknown Meta-World task {name!r}; the 50 tasks are: {', '.join(ALL_TASKS)}"
        )
    return task


def make_suite(
    suite: str | None = None,
    task: str | Sequence[str] | None = None,
    num_trials: int | None = None,
) -> Suite:
    """The suite of an ID: a named suite, or ``task``: one task or a list of tasks (a multi-task
    subset, cycled and one-hot encoded like MT50 in the order given), 10 trials unless told."""
    if (suite is None) == (task is None):
        raise ValueError("give exactly one of suite= (MT50, ML45-train, ML45-test) or task=")
    if isinstance(task, str):
        base = Suite(canonical_task(task), (canonical_task(task),), num_trials=10)
    elif task is not None:
        tasks = tuple(canonical_task(name) for name in task)
        if not tasks:
            raise ValueError("task= needs at least one Meta-World task, got an empty list")
        repeated = sorted({t for t in tasks if tasks.count(t) > 1})
        if repeated:
            raise ValueError(f"task= lists {', '.join(repeated)} more than once")
        base = Suite("+".join(tasks), tasks, num_trials=10)
    elif isinstance(suite, str) and suite in SUITES:
        base = SUITES[suite]
    else:
        raise ValueError(f"unknown Meta-World suite {suite!r}; known: {', '.join(SUITES)}")
    if num_trials is None:
        return base
    if int(num_trials) < 1:
        raise ValueError(f"num_trials must be >= 1, got {num_trials!r}")
    return Suite(base.name, base.tasks, int(num_trials), base.goal_observable)


def cycle_position(suite: Suite, seed: int, episode: int, task_stride: int = 1) -> tuple[str, int]:
    """(task, trial) of the ``episode``-th episode after ``reset(seed=seed)`` (see module doc)."""
    n_tasks, n_trials = len(suite.tasks), suite.num_trials
    task = suite.tasks[(seed + task_stride * (episode // n_trials)) % n_tasks]
    trial = (seed // n_tasks + episode) % n_trials
    return task, trial


def trial_seed_sequence(task: str, trial: int, trial_seed: int = 0) -> list[int]:
    """Entropy for the generator that draws trial ``trial`` of ``task`` (see module doc)."""
    return [int(trial_seed), ALL_TASKS.index(canonical_task(task)), int(trial)]
