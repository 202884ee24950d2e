"""The 34 CALVIN oracles on constructed start/end snapshots: each fires on a positive case and
not on a near-miss negative case (spec §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_gym.envs.calvin.layout import BLOCKS
from vla_gym.envs.calvin.scene import BlockSnapshot, SceneSnapshot
from vla_gym.envs.calvin.tasks import (
    TASK_NAMES,
    achieved_tasks,
    check_task,
    relative_rotation_xyz_degrees,
    task_block,
    task_progress,
)

TABLE = ("table", "base_link")
PLANK = ("table", "plank_link")
DRAWER = ("table", "drawer_link")
ROBOT = ("robot", "10")


def quat_z(degrees: float) -> np.ndarray:
    half = math.radians(degrees) / 2
    return np.array([0.0, 0.0, math.sin(half), math.cos(half)])


def block(x=0.1, z=0.46, yaw=0.0, contacts=(TABLE,), vel=0.0) -> BlockSnapshot:
    return BlockSnapshot(
        pos=np.array([x, -0.1, z]),
        orn=quat_z(yaw),
        lin_vel=np.full(3, vel),
        ang_vel=np.zeros(3),
        contacts=frozenset(contacts),
    )


def snapshot(door=0.0, drawer=0.0, lightbulb=0, led=0, robot=(), **blocks) -> SceneSnapshot:
    parked = {c: block() for c in BLOCKS}
    parked.update(blocks)
    return SceneSnapshot(door, drawer, lightbulb, led, parked, frozenset(robot))


def cases(task: str):
    """(start, positive end, negative start, negative end) for one task."""
    s = snapshot()
    parts = task.split("_")
    if parts[0] == "rotate":
        c, sign = parts[1], -1 if parts[3] == "right" else 1
        pos = snapshot(**{c: block(yaw=sign * 75, contacts=(TABLE, ROBOT))})
        neg = snapshot(**{c: block(yaw=sign * 50, contacts=(TABLE,))})  # not far enough
        return s, pos, s, neg
    if parts[0] == "push" and task != "push_into_drawer":
        c, sign = parts[1], 1 if parts[3] == "right" else -1
        pos = snapshot(**{c: block(x=0.1 + sign * 0.12, contacts=(TABLE, ROBOT))})
        neg = snapshot(**{c: block(x=0.1 + sign * 0.12, z=0.5, contacts=(ROBOT,))})  # carried
        return s, pos, s, neg
    if parts[0] == "move":
        start = 0.0 if parts[2] == "left" else 0.28
        end = 0.2 if parts[2] == "left" else 0.08
        half = 0.1 if parts[2] == "left" else 0.18
        return snapshot(door=start), snapshot(door=end), snapshot(door=start), snapshot(door=half)
    if task in ("open_drawer", "close_drawer"):
        start, end, half = (0.0, 0.2, 0.1) if task == "open_drawer" else (0.22, 0.05, 0.15)
        return (
            snapshot(drawer=start),
            snapshot(drawer=end),
            snapshot(drawer=start),
            snapshot(drawer=half),
        )
    if parts[0] == "lift":
        c, surface = parts[1], {"table": TABLE, "slider": PLANK, "drawer": DRAWER}[parts[3]]
        dz = 0.06
        start = snapshot(**{c: block(contacts=(surface,))})
        pos = snapshot(robot=[(f"block_{c}", "-1")], **{c: block(z=0.46 + dz, contacts=(ROBOT,))})
        touching = snapshot(**{c: block(z=0.46 + dz, contacts=(ROBOT, surface))})
        return start, pos, start, touching
    if task.startswith("place_in"):
        surface = PLANK if task == "place_in_slider" else DRAWER
        start = snapshot(robot=[("block_red", "-1")], red=block(z=0.55, contacts=(ROBOT,)))
        pos = snapshot(red=block(z=0.46, contacts=(surface,)))
        still_held = snapshot(robot=[("block_red", "-1")], red=block(contacts=(surface, ROBOT)))
        return start, pos, start, still_held
    if task == "push_into_drawer":
        start = snapshot(blue=block(contacts=(TABLE,)))
        pos = snapshot(blue=block(z=0.36, contacts=(DRAWER,)))
        pushed_by_hand = snapshot(blue=block(z=0.36, contacts=(DRAWER, ROBOT)))
        return start, pos, start, pushed_by_hand
    if task == "stack_block":
        start = snapshot(robot=[("block_pink", "-1")], pink=block(z=0.55, contacts=(ROBOT,)))
        pos = snapshot(pink=block(z=0.50, contacts=(("block_red", "-1"),)))
        held_on_top = snapshot(pink=block(z=0.50, contacts=(("block_red", "-1"), ROBOT)))
        return start, pos, start, held_on_top
    if task == "unstack_block":
        start = snapshot(pink=block(z=0.50, contacts=(("block_red", "-1"),)))
        pos = snapshot(pink=block(z=0.46, contacts=(TABLE,)))
        moving = snapshot(pink=block(z=0.50, contacts=(("block_red", "-1"),), vel=2.0))
        return start, pos, moving, pos
    if parts[0] == "turn":
        light, on = parts[2], parts[1] == "on"
        before, after = snapshot(**{light: int(not on)}), snapshot(**{light: int(on)})
        return before, after, after, after  # already in the target state: no toggle
    raise AssertionError(task)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_oracle_positive_and_negative(task):
    start, positive, neg_start, negative = cases(task)
    assert check_task(task, start, positive), f"{task} should fire"
    assert not check_task(task, neg_start, negative), f"{task} should not fire"


def test_task_list_is_the_official_order():
    assert len(TASK_NAMES) == 34
    assert TASK_NAMES[:2] == ("rotate_red_block_right", "rotate_red_block_left")
    assert TASK_NAMES[12:16] == (
        "move_slider_left",
        "move_slider_right",
        "open_drawer",
        "close_drawer",
    )
    assert TASK_NAMES[-1] == "push_into_drawer"
    with pytest.raises(ValueError, match="unknown CALVIN task"):
        check_task("fly", snapshot(), snapshot())


def test_nothing_happens_means_no_task():
    assert achieved_tasks(snapshot(), snapshot()) == []


def test_rotation_oracle_limits():
    # Tilted more than 30 degrees: not a rotation on the table.
    tilted = snapshot(red=block(yaw=-75))
    tilted.blocks["red"].orn = np.array(
        [math.sin(math.radians(20)), 0, 0, math.cos(math.radians(20))]
    )
    assert not check_task("rotate_red_block_right", snapshot(), tilted)
    moved_far = snapshot(red=block(x=0.25, yaw=-75))
    assert not check_task("rotate_red_block_right", snapshot(), moved_far)
    lifted = snapshot(red=block(yaw=-75, contacts=(ROBOT,)))
    assert not check_task("rotate_red_block_right", snapshot(), lifted)


def test_relative_rotation_matches_scipy():
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rotation.random(random_state=rng), rotation.random(random_state=rng)
        expected = (b * a.inv()).as_euler("xyz", degrees=True)
        got = relative_rotation_xyz_degrees(a.as_quat(), b.as_quat())
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_graded_progress_is_the_oracle_quantity_over_its_threshold():
    start = snapshot()
    assert task_progress("lift_red_block_table", start, snapshot(red=block(z=0.485))) == (
        pytest.approx(0.5)
    )
    assert task_progress("lift_red_block_slider", start, snapshot(red=block(z=0.50))) == 1.0
    assert task_progress("lift_red_block_table", start, snapshot(red=block(z=0.40))) == 0.0
    assert task_progress("push_blue_block_left", start, snapshot(blue=block(x=0.07))) == (
        pytest.approx(0.3)
    )
    assert task_progress("push_blue_block_right", start, snapshot(blue=block(x=0.07))) == 0.0
    assert task_progress("rotate_pink_block_right", start, snapshot(pink=block(yaw=-30))) == (
        pytest.approx(0.5)
    )
    assert task_progress("rotate_pink_block_left", start, snapshot(pink=block(yaw=-30))) == 0.0
    assert task_progress("open_drawer", start, snapshot(drawer=0.06)) == pytest.approx(0.5)
    assert task_progress("close_drawer", snapshot(drawer=0.2), snapshot(drawer=0.0)) == 1.0
    assert task_progress("move_slider_right", start, snapshot(door=-0.03)) == pytest.approx(0.2)
    # Every positive case of the graded tasks is complete; ungraded tasks stay at 0.
    for task in TASK_NAMES:
        begin, positive, *_ = cases(task)
        graded = task_progress(task, begin, positive)
        is_graded = task_block(task) is not None or task.split("_")[0] in ("move", "open", "close")
        assert graded == (1.0 if is_graded else 0.0), task
    with pytest.raises(ValueError, match="unknown CALVIN task"):
        task_progress("fly", start, start)


def test_task_block_names_the_manipulated_block():
    assert task_block("rotate_red_block_left") == "red"
    assert task_block("lift_pink_block_drawer") == "pink"
    assert task_block("push_into_drawer") is None
    assert task_block("stack_block") is None and task_block("open_drawer") is None
