"""CALVIN's symbolic world state: task preconditions and effects, the 192 evaluation initial
states, the five-task chain generator and the symbolic -> ``(robot_obs, scene_obs)``
construction (spec §6.2, §6.3). Pure numpy: the official random streams are reproduced with
legacy ``np.random.RandomState`` objects, so the global NumPy state is never touched.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vla_gym.envs.calvin.layout import BLOCK_REST_Z, BLOCKS, EVAL_ROBOT_OBS, SceneLayout, get_layout
from vla_gym.envs.calvin.tasks import TASK_NAMES

SymbolicState = dict[str, Any]
BLOCK_KEYS = tuple(f"{c}_block" for c in BLOCKS)
SLIDER = ("slider_right", "slider_left")

# Key order matters: it fixes the product order of the initial states and the hashed string.
POSSIBLE_CONDITIONS: dict[str, list[Any]] = {
    "led": [0, 1],
    "lightbulb": [0, 1],
    "slider": ["right", "left"],
    "drawer": ["closed", "open"],
    "red_block": ["table", "slider_right", "slider_left"],
    "blue_block": ["table", "slider_right", "slider_left"],
    "pink_block": ["table", "slider_right", "slider_left"],
    "grasped": [0],
}

TASK_CATEGORIES: dict[str, int] = {}
for _name in TASK_NAMES:
    if _name.startswith(("rotate_", "push_")) and _name != "push_into_drawer":
        TASK_CATEGORIES[_name] = 1
    elif _name.startswith("move_slider"):
        TASK_CATEGORIES[_name] = 2
    elif _name.endswith("_drawer") and _name.startswith(("open", "close")):
        TASK_CATEGORIES[_name] = 3
    elif _name.startswith("lift_"):
        TASK_CATEGORIES[_name] = {"table": 4, "slider": 5, "drawer": 6}[_name.rsplit("_", 1)[1]]
    elif _name.startswith("place_in"):
        TASK_CATEGORIES[_name] = 7
    elif _name.startswith("turn_"):
        TASK_CATEGORIES[_name] = 8
    else:
        TASK_CATEGORIES[_name] = {"push_into_drawer": 9, "stack_block": 10, "unstack_block": 11}[
            _name
        ]

Branch = tuple[dict[str, Any], dict[str, Any]]  # (condition, effect)


def _task_branches() -> dict[str, list[Branch]]:
    branches: dict[str, list[Branch]] = {}
    for name in TASK_NAMES:
        parts = name.split("_")
        if parts[0] in ("rotate", "push") and name != "push_into_drawer":
            key = f"{parts[1]}_block"
            branches[name] = [({key: "table", "grasped": 0}, {key: "table"})]
        elif name == "move_slider_left":
            branches[name] = [({"slider": "right", "grasped": 0}, {"slider": "left"})]
        elif name == "move_slider_right":
            branches[name] = [({"slider": "left", "grasped": 0}, {"slider": "right"})]
        elif name == "open_drawer":
            branches[name] = [({"drawer": "closed", "grasped": 0}, {"drawer": "open"})]
        elif name == "close_drawer":
            branches[name] = [({"drawer": "open", "grasped": 0}, {"drawer": "closed"})]
        elif parts[0] == "lift":
            key, source, lifted = (
                f"{parts[1]}_block",
                parts[3],
                {f"{parts[1]}_block": "grasped", "grasped": 1},
            )
            if source == "table":
                branches[name] = [({key: "table", "grasped": 0}, lifted)]
            elif source == "slider":  # a block is reachable in the compartment the door uncovers
                branches[name] = [
                    ({key: "slider_left", "slider": "right", "grasped": 0}, lifted),
                    ({key: "slider_right", "slider": "left", "grasped": 0}, lifted),
                ]
            else:
                branches[name] = [({key: "drawer", "drawer": "open", "grasped": 0}, lifted)]
        elif name == "place_in_slider":
            # Official quirk (spec §6.2): labels the compartment on the door's own side.
            branches[name] = [
                (
                    {key: "grasped", "slider": side, "grasped": 1},
                    {key: f"slider_{side}", "grasped": 0},
                )
                for key in BLOCK_KEYS
                for side in ("right", "left")
            ]
        elif name == "place_in_drawer":
            branches[name] = [
                ({key: "grasped", "drawer": "open", "grasped": 1}, {key: "drawer", "grasped": 0})
                for key in BLOCK_KEYS
            ]
        elif name == "stack_block":
            branches[name] = [
                (
                    {top: "grasped", bottom: "table", "grasped": 1},
                    {top: "stacked_top", bottom: "stacked_bottom", "grasped": 0},
                )
                for top, bottom in itertools.permutations(BLOCK_KEYS, 2)
            ]
        elif name == "unstack_block":
            branches[name] = [
                (
                    {top: "stacked_top", bottom: "stacked_bottom", "grasped": 0},
                    {top: "table", bottom: "table"},
                )
                for top, bottom in itertools.permutations(BLOCK_KEYS, 2)
            ]
        elif parts[0] == "turn":
            light, before = parts[2], 0 if parts[1] == "on" else 1
            branches[name] = [({light: before, "grasped": 0}, {light: 1 - before})]
        elif name == "push_into_drawer":
            branches[name] = []
            for key in BLOCK_KEYS:
                others = {k: list(SLIDER) for k in BLOCK_KEYS if k != key}
                condition = {key: "table", **others, "drawer": "open", "grasped": 0}
                branches[name].append((condition, {key: "drawer", "grasped": 0}))
    return branches


TASK_BRANCHES = _task_branches()


def _holds(state: Mapping[str, Any], condition: Mapping[str, Any]) -> bool:
    for key, value in condition.items():
        if isinstance(value, list):
            if state[key] not in value:
                return False
        elif state[key] != value:
            return False
    return True


def next_states(state: Mapping[str, Any], task: str) -> list[SymbolicState]:
    """The states ``task`` can lead to from ``state`` (one per matching branch)."""
    return [
        {**state, **effect} for condition, effect in TASK_BRANCHES[task] if _holds(state, condition)
    ]


def task_valid(state: Mapping[str, Any], task: str) -> bool:
    """A task is valid when exactly one of its branches matches (as in the official checker)."""
    return len(next_states(state, task)) == 1


def check_sequence(state: Mapping[str, Any], tasks) -> bool:
    for task in tasks:
        successors = next_states(state, task)
        if len(successors) != 1:
            return False
        state = successors[0]
    categories = [TASK_CATEGORIES[t] for t in tasks]
    return len(categories) == len(set(categories))


@lru_cache(maxsize=1)
def initial_states() -> tuple[tuple[tuple[str, Any], ...], ...]:
    """The 192 evaluation initial states (as item tuples, in product order)."""

    def allowed(values) -> bool:
        blocks = values[4:7]
        return (
            blocks.count("table") in (1, 2)
            and blocks.count("slider_right") < 2
            and blocks.count("slider_left") < 2
        )

    keys = list(POSSIBLE_CONDITIONS)
    combos = filter(allowed, itertools.product(*POSSIBLE_CONDITIONS.values()))
    return tuple(tuple(zip(keys, values, strict=True)) for values in combos)


_KEYS = tuple(POSSIBLE_CONDITIONS)
_CATEGORY = np.array([TASK_CATEGORIES[t] for t in TASK_NAMES])


@cache
def _successor(state: tuple, task_index: int) -> tuple | None:
    """The unique successor of a state (as a value tuple) under a task, or None."""
    successors = next_states(dict(zip(_KEYS, state, strict=True)), TASK_NAMES[task_index])
    return tuple(successors[0][k] for k in _KEYS) if len(successors) == 1 else None


def _valid_indices(state: tuple, indices) -> bool:
    if len(set(_CATEGORY[indices].tolist())) < len(indices):
        return False
    for index in indices:
        state = _successor(state, int(index))
        if state is None:
            return False
    return True


def sample_chain(state: Mapping[str, Any], rng, length: int = 5, max_tries: int = 1_000_000):
    """Draw tasks without replacement until the chain is valid (the official procedure).

    ``rng.permutation(34)[:length]`` consumes a legacy ``RandomState`` exactly like the
    official ``np.random.choice(task_names, length, replace=False)``.
    """
    key = tuple(state.get(k, 0) for k in _KEYS)
    for _ in range(max_tries):
        indices = rng.permutation(len(TASK_NAMES))[:length]
        if _valid_indices(key, indices):
            return [TASK_NAMES[i] for i in indices]
    raise RuntimeError(f"no valid CALVIN chain of length {length} from {dict(state)}")


def chains_for_state(index: int, count: int) -> list[list[str]]:
    """The first ``count`` official chains of initial state ``index`` (seeded with ``index``)."""
    state = dict(initial_states()[index])
    rng = np.random.RandomState(index)
    return [sample_chain(state, rng) for _ in range(count)]


CHAIN_CACHE = Path(__file__).with_name("eval_chains.json")


@lru_cache(maxsize=1)
def _cached_chains() -> list[list[list[str]]]:
    """Per-state official chains shipped with the package (made by ``chains_for_state``)."""
    if not CHAIN_CACHE.exists():
        return [[] for _ in initial_states()]
    return [
        [[TASK_NAMES[i] for i in chain] for chain in per_state]
        for per_state in json.loads(CHAIN_CACHE.read_text())
    ]


def generate_sequences(
    num_sequences: int = 1000, use_cache: bool = True
) -> list[tuple[SymbolicState, list[str]]]:
    """The official evaluation chains, identical to ``calvin_agent ... get_sequences``.

    Chains of one state do not depend on ``num_sequences`` (each state has its own seed), so
    the shipped per-state cache serves any size it covers; the rest is generated (~0.5 s/state).
    """
    states = [dict(items) for items in initial_states()]
    counts = [len(part) for part in np.array_split(np.arange(num_sequences), len(states))]
    cache = _cached_chains() if use_cache else [[] for _ in states]
    pairs: list[tuple[SymbolicState, list[str]]] = []
    for index, (state, count) in enumerate(zip(states, counts, strict=True)):
        chains = (
            cache[index][:count] if len(cache[index]) >= count else chains_for_state(index, count)
        )
        pairs.extend((state, chain) for chain in chains)
    np.random.RandomState(0).shuffle(pairs)
    return [(dict(state), list(chain)) for state, chain in pairs]


def write_chain_cache(per_state: int = 6) -> None:
    """Regenerate ``eval_chains.json`` (``per_state`` chains for each of the 192 states)."""
    data = [
        [[TASK_NAMES.index(t) for t in chain] for chain in chains_for_state(i, per_state)]
        for i in range(len(initial_states()))
    ]
    CHAIN_CACHE.write_text(json.dumps(data, separators=(",", ":")))


# ------------------------------------------------------------ state -> observation
def fnv1_32(data: bytes, seed: int = 0) -> int:
    """pyhash's ``fnv1_32`` (default seed 0): multiply by the FNV prime, then xor each byte."""
    h = seed
    for byte in data:
        h = (h * 0x01000193) % 2**32
        h ^= byte
    return h


def condition_seed(state: Mapping[str, Any]) -> int:
    """The official per-state seed: FNV-1 over the UTF-16-LE bytes of ``str(state.values())``."""
    text = str(dict(state).values())
    return fnv1_32(text.encode("utf-16-le"))


# The official evaluation's block slots, tuned for scene D (spec §6.3).
D_SLIDER_LEFT = np.array([-2.40851662e-01, 9.24044687e-02, 4.60990009e-01])
D_SLIDER_RIGHT = np.array([7.03416330e-02, 9.24044687e-02, 4.60990009e-01])
D_TABLE = (
    np.array([5.00000896e-02, -1.20000177e-01, 4.59990009e-01]),
    np.array([2.29995412e-01, -1.19995140e-01, 4.59990010e-01]),
)
BLOCK_YAW_RANGE = (np.pi / 2 - np.pi / 8, np.pi / 2 + np.pi / 8)


def block_slots(layout: SceneLayout) -> dict[str, Any]:
    """Block positions for the symbolic locations. Scene D uses the official numbers; other
    scenes use the same construction on their own surfaces (the official D poses would sit
    inside B's and C's cabinet walls, spec §2.1)."""
    if layout.name == "D":
        return {"slider_left": D_SLIDER_LEFT, "slider_right": D_SLIDER_RIGHT, "table": D_TABLE}
    z_slider, z_table = D_SLIDER_LEFT[2], D_TABLE[0][2]
    left, right, table = (
        layout.slider_left_surface,
        layout.slider_right_surface,
        layout.table_surface,
    )
    return {
        "slider_left": np.array([np.mean(left), D_SLIDER_LEFT[1], z_slider]),
        "slider_right": np.array([np.mean(right), D_SLIDER_RIGHT[1], z_slider]),
        "table": (
            np.array([table[0] + 0.05, -0.12, z_table]),
            np.array([table[0] + 0.23, -0.12, z_table]),
        ),
    }


def drawer_slot(layout: SceneLayout, index: int = 0) -> np.ndarray:
    """A resting place inside the open drawer (its floor top is at z = 0.34 when closed)."""
    return np.array([layout.drawer_x + (-0.07 if index == 0 else 0.07), -0.28, 0.36])


def state_to_obs(
    state: Mapping[str, Any],
    scene: str = "D",
    rng: np.random.RandomState | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(robot_obs, scene_obs)`` for a symbolic state (``get_env_state_for_initial_condition``).

    With ``rng=None`` the official hashed seed is used, so scene D gives the official numbers.
    Blocks may also be ``"drawer"``, ``"stacked_top"``/``"stacked_bottom"`` (for single-task
    start states). ``scene_obs`` lists the blocks in the scene's slot order.
    """
    layout = get_layout(scene)
    rng = np.random.RandomState(condition_seed(state)) if rng is None else rng
    slots = block_slots(layout)
    table = list(slots["table"])
    rng.shuffle(table)
    door_left = min(0.28, layout.door_limit) if scene != "D" else 0.28
    poses: dict[str, np.ndarray] = {}
    in_drawer = 0
    for colour in BLOCKS:
        where = state[f"{colour}_block"]
        if where in SLIDER:
            pos = slots[where]
        elif where == "drawer":
            pos, in_drawer = drawer_slot(layout, in_drawer), in_drawer + 1
        elif colour == "red":
            pos = table[0]
        elif colour == "blue":
            pos = (
                table[1]
                if state["red_block"] in ("table", "stacked_bottom", "stacked_top")
                else table[0]
            )
        else:
            pos = table[1]
        yaw = rng.uniform(*BLOCK_YAW_RANGE)
        poses[colour] = np.array([*pos, 0.0, 0.0, yaw])
    _stack(state, poses)
    scene_obs = np.zeros(24)
    scene_obs[0] = door_left if state["slider"] == "left" else 0.0
    scene_obs[1] = 0.22 if state["drawer"] == "open" else 0.0
    scene_obs[3] = 0.088 if state["lightbulb"] == 1 else 0.0
    scene_obs[4] = state["lightbulb"]
    scene_obs[5] = state["led"]
    for slot, colour in enumerate(layout.block_order):
        scene_obs[6 + 6 * slot : 12 + 6 * slot] = poses[colour]
    return EVAL_ROBOT_OBS.copy(), scene_obs


def _stack(state: Mapping[str, Any], poses: dict[str, np.ndarray]) -> None:
    """Put a ``stacked_top`` block on its ``stacked_bottom`` block (same yaw, touching)."""
    tops = [c for c in BLOCKS if state[f"{c}_block"] == "stacked_top"]
    bottoms = [c for c in BLOCKS if state[f"{c}_block"] == "stacked_bottom"]
    if tops and bottoms:
        top, bottom = poses[tops[0]], poses[bottoms[0]]
        top[:2], top[2], top[5] = bottom[:2], bottom[2] + 0.04 - 0.0005, bottom[5]


def state_from_scene_obs(scene_obs: np.ndarray, layout: SceneLayout) -> SymbolicState:
    """The symbolic state a physical scene is in (used to draw valid chains after any reset)."""
    door_mid = layout.door_limit / 2
    state: SymbolicState = {
        "led": int(round(scene_obs[5])),
        "lightbulb": int(round(scene_obs[4])),
        "slider": "left" if scene_obs[0] > door_mid else "right",
        "drawer": "open" if scene_obs[1] > 0.11 else "closed",
    }
    divider = layout.door_x - 0.14  # the door's left edge at q = 0 splits the compartments
    for slot, colour in enumerate(layout.block_order):
        x, y, z = scene_obs[6 + 6 * slot : 9 + 6 * slot]
        if y > 0.02 and 0.43 < z < 0.5:
            where = "slider_left" if x < divider else "slider_right"
        elif y < -0.16 and z < 0.42:
            where = "drawer"
        elif z > BLOCK_REST_Z + 0.03:
            where = "stacked_top"
        else:
            where = "table"
        state[f"{colour}_block"] = where
    tops = [k for k in BLOCK_KEYS if state[k] == "stacked_top"]
    for top in tops:  # the block under a stacked one
        tx, ty = scene_obs[6 + 6 * layout.block_order.index(top[:-6]) :][:2]
        for key in BLOCK_KEYS:
            if key != top and state[key] == "table":
                bx, by = scene_obs[6 + 6 * layout.block_order.index(key[:-6]) :][:2]
                if np.hypot(tx - bx, ty - by) < 0.04:
                    state[key] = "stacked_bottom"
    state["grasped"] = 0
    return {key: state[key] for key in POSSIBLE_CONDITIONS}
