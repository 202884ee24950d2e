"""Facts about BEHAVIOR-1K's activities and its R1 Pro robot (no OmniGibson import).

Sources: OmniGibson's ``omnigibson/learning/utils/eval_utils.py`` (the 2025 challenge's 50
activities, camera sensor names, action and proprioception layouts); when OmniGibson is installed
its own tables are preferred (see ``behavior_env``).
"""

from __future__ import annotations

import numpy as np

# The 50 activities of the BEHAVIOR challenge, in OmniGibson's task-index order.
ACTIVITIES = (
    "turning_on_radio",
    "picking_up_trash",
    "putting_away_Halloween_decorations",
    "cleaning_up_plates_and_food",
    "can_meat",
    "setting_mousetraps",
    "hiding_Easter_eggs",
    "picking_up_toys",
    "rearranging_kitchen_furniture",
    "putting_up_Christmas_decorations_inside",
    "set_up_a_coffee_station_in_your_kitchen",
    "putting_dishes_away_after_cleaning",
    "preparing_lunch_box",
    "loading_the_car",
    "carrying_in_groceries",
    "bringing_in_wood",
    "moving_boxes_to_storage",
    "bringing_water",
    "tidying_bedroom",
    "outfit_a_basic_toolbox",
    "sorting_vegetables",
    "collecting_childrens_toys",
    "putting_shoes_on_rack",
    "boxing_books_up_for_storage",
    "storing_food",
    "clearing_food_from_table_into_fridge",
    "assembling_gift_baskets",
    "sorting_household_items",
    "getting_organized_for_work",
    "clean_up_your_desk",
    "setting_the_fire",
    "clean_boxing_gloves",
    "wash_a_baseball_cap",
    "wash_dog_toys",
    "hanging_pictures",
    "attach_a_camera_to_a_tripod",
    "clean_a_patio",
    "clean_a_trumpet",
    "spraying_for_bugs",
    "spraying_fruit_trees",
    "make_microwave_popcorn",
    "cook_cabbage",
    "chop_an_onion",
    "slicing_vegetables",
    "chopping_wood",
    "cook_hot_dogs",
    "cook_bacon",
    "freeze_pies",
    "canning_food",
    "make_pizza",
)


def activity_name(activity: str | int) -> str:
    """An activity by name or by its index (0-49)."""
    if isinstance(activity, (int, np.integer)) and not isinstance(activity, bool):
        if not 0 <= activity < len(ACTIVITIES):
            raise ValueError(
                f"activity index must be in [0, {len(ACTIVITIES) - 1}], got {activity}"
            )
        return ACTIVITIES[int(activity)]
    if isinstance(activity, str) and activity in ACTIVITIES:
        return activity
    raise ValueError(
        f"unknown BEHAVIOR activity {activity!r}; give an index 0-{len(ACTIVITIES) - 1} or one of "
        f"{', '.join(ACTIVITIES[:5])}, ... (vla_gym.envs.behavior.r1pro.ACTIVITIES)"
    )


def instruction_for(activity: str) -> str:
    """The instruction given to the policy: the activity's name as a sentence.

    BEHAVIOR defines activities by BDDL goal conditions, not sentences; the name is the
    natural-language handle the challenge publishes (e.g. "turning on radio").
    """
    return activity.replace("_", " ")


# Our camera name -> the link of the R1 Pro camera sensor (OmniGibson name "...:<link>:Camera:0").
CAMERA_LINKS = {
    "head": "zed_link",
    "left_wrist": "left_realsense_link",
    "right_wrist": "right_realsense_link",
}

# The 23-D R1 Pro action, in OmniGibson's order, with the native range of each part.
# base: (x, y, yaw) velocities; torso: 4 joints; arms: 7 joint positions; grippers: 1 each.
ACTION_PARTS = (
    ("base", (-0.75, -0.75, -1.0), (0.75, 0.75, 1.0)),
    ("torso", (-1.1345, -2.7925, -1.8326, -3.0543), (1.8326, 2.5307, 1.5708, 3.0543)),
    (
        "left_arm",
        (-4.4506, -0.1745, -2.3562, -2.0944, -2.3562, -1.0472, -1.5708),
        (1.3090, 3.1416, 2.3562, 0.3491, 2.3562, 1.0472, 1.5708),
    ),
    ("left_gripper", (-1.0,), (1.0,)),
    (
        "right_arm",
        (-4.4506, -3.1416, -2.3562, -2.0944, -2.3562, -1.0472, -1.5708),
        (1.3090, 0.1745, 2.3562, 0.3491, 2.3562, 1.0472, 1.5708),
    ),
    ("right_gripper", (-1.0,), (1.0,)),
)
ACTION_LOW = np.array([v for _, low, _ in ACTION_PARTS for v in low], dtype=np.float32)
ACTION_HIGH = np.array([v for _, _, high in ACTION_PARTS for v in high], dtype=np.float32)
ACTION_DIM = len(ACTION_LOW)  # 23


def native_action(normalised: np.ndarray) -> np.ndarray:
    """Map [-1, 1] per dimension linearly onto the R1 Pro's native range (order kept)."""
    fraction = (np.asarray(normalised, np.float32) + 1.0) * 0.5
    return ACTION_LOW * (1.0 - fraction) + ACTION_HIGH * fraction  # exact at both ends


# Slices of OmniGibson's R1 Pro proprioception vector (all proprio keys, 256-D), by key.
PROPRIO_SLICES = {
    "joint_qpos": (0, 28),
    "joint_qpos_sin": (28, 56),
    "joint_qpos_cos": (56, 84),
    "joint_qvel": (84, 112),
    "joint_qeffort": (112, 140),
    "robot_pos": (140, 143),
    "robot_ori_cos": (143, 146),
    "robot_ori_sin": (146, 149),
    "robot_2d_ori": (149, 150),
    "robot_2d_ori_cos": (150, 151),
    "robot_2d_ori_sin": (151, 152),
    "robot_lin_vel": (152, 155),
    "robot_ang_vel": (155, 158),
    "arm_left_qpos": (158, 165),
    "arm_left_qpos_sin": (165, 172),
    "arm_left_qpos_cos": (172, 179),
    "arm_left_qvel": (179, 186),
    "eef_left_pos": (186, 189),
    "eef_left_quat": (189, 193),
    "gripper_left_qpos": (193, 195),
    "gripper_left_qvel": (195, 197),
    "arm_right_qpos": (197, 204),
    "arm_right_qpos_sin": (204, 211),
    "arm_right_qpos_cos": (211, 218),
    "arm_right_qvel": (218, 225),
    "eef_right_pos": (225, 228),
    "eef_right_quat": (228, 232),
    "gripper_right_qpos": (232, 234),
    "gripper_right_qvel": (234, 236),
    "trunk_qpos": (236, 240),
    "trunk_qvel": (240, 244),
    "base_qpos": (244, 247),
    "base_qpos_sin": (247, 250),
    "base_qpos_cos": (250, 253),
    "base_qvel": (253, 256),
}
PROPRIO_KEYS = tuple(PROPRIO_SLICES)  # the proprio_obs list the env is configured with
# The default policy state: what the robot can sense of itself, no global pose (39-D).
DEFAULT_STATE_KEYS = (
    "base_qvel",
    "trunk_qpos",
    "arm_left_qpos",
    "arm_right_qpos",
    "gripper_left_qpos",
    "gripper_right_qpos",
    "eef_left_pos",
    "eef_left_quat",
    "eef_right_pos",
    "eef_right_quat",
)


def state_dim(keys: tuple[str, ...]) -> int:
    unknown = [k for k in keys if k not in PROPRIO_SLICES]
    if unknown or not keys:
        choices = list(PROPRIO_SLICES)
        raise ValueError(
            f"state_keys must be a non-empty subset of {choices}, got {unknown or keys}"
        )
    return sum(stop - start for start, stop in (PROPRIO_SLICES[k] for k in keys))


def select_state(proprio: np.ndarray, keys: tuple[str, ...]) -> np.ndarray:
    proprio = np.asarray(proprio, np.float32).reshape(-1)
    if proprio.shape[0] < PROPRIO_SLICES["base_qvel"][1]:
        raise ValueError(
            f"R1 Pro proprioception has {proprio.shape[0]} values, expected 256 (is proprio_obs "
            "configured with all keys?)"
        )
    return np.concatenate([proprio[slice(*PROPRIO_SLICES[k])] for k in keys])
