"""Instructions for the 34 tasks: the project's own sentences (default) or CALVIN's official
annotation files (``instructions="official"``: the one evaluation sentence per task from
``new_playtable_validation.yaml``; ``"official_train"``: a random training sentence).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from vla_gym.envs.calvin.tasks import TASK_NAMES

INSTRUCTION_MODES = ("builtin", "official", "official_train")


def _builtin_sentences() -> dict[str, str]:
    sentences = {}
    for colour in ("red", "blue", "pink"):
        for side in ("right", "left"):
            sentences[f"rotate_{colour}_block_{side}"] = f"turn the {colour} block to the {side}"
            sentences[f"push_{colour}_block_{side}"] = f"slide the {colour} block to the {side}"
        sentences[f"lift_{colour}_block_table"] = f"pick up the {colour} block from the table"
        sentences[f"lift_{colour}_block_slider"] = f"pick up the {colour} block from the cabinet"
        sentences[f"lift_{colour}_block_drawer"] = f"pick up the {colour} block from the drawer"
    sentences.update(
        {
            "move_slider_left": "slide the cabinet door to the left",
            "move_slider_right": "slide the cabinet door to the right",
            "open_drawer": "open the drawer",
            "close_drawer": "close the drawer",
            "place_in_slider": "put the block you are holding into the cabinet",
            "place_in_drawer": "put the block you are holding into the drawer",
            "push_into_drawer": "push the block off the table into the drawer",
            "stack_block": "put the block you are holding on top of another block",
            "unstack_block": "take the top block off the stack",
            "turn_on_lightbulb": "move the switch up to turn on the light bulb",
            "turn_off_lightbulb": "move the switch down to turn off the light bulb",
            "turn_on_led": "press the button to switch the green light on",
            "turn_off_led": "press the button to switch the green light off",
        }
    )
    return {task: sentences[task] for task in TASK_NAMES}


BUILTIN_SENTENCES = _builtin_sentences()


@lru_cache(maxsize=4)
def load_annotations(path: str) -> dict[str, list[str]]:
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    missing = [t for t in TASK_NAMES if t not in data]
    if missing:
        raise ValueError(f"CALVIN annotation file {path} lacks tasks {missing}")
    return {task: list(data[task]) for task in TASK_NAMES}


def annotation_file(root: Path, validation: bool) -> Path:
    """The annotation YAML inside a CALVIN folder (the shared layout or a ``mees/calvin``
    checkout's ``calvin_models/conf/annotations``)."""
    name = "new_playtable_validation.yaml" if validation else "new_playtable.yaml"
    for folder in ("annotations", "calvin_models/conf/annotations", "conf/annotations"):
        if (root / folder / name).exists():
            return root / folder / name
    raise FileNotFoundError(f"CALVIN: no {name} under {root} (looked in annotations/, conf/...)")


class Instructions:
    """Maps a task name to its sentence in the chosen mode."""

    def __init__(self, mode: str, root: Path | None) -> None:
        if mode not in INSTRUCTION_MODES:
            raise ValueError(
                f"CALVIN: instructions must be one of {INSTRUCTION_MODES}, got {mode!r}"
            )
        if mode != "builtin" and root is None:
            raise ValueError(
                f"CALVIN: instructions={mode!r} needs the official files: pass calvin_root= "
                "or set $VLA_GYM_CALVIN_ROOT"
            )
        self.mode = mode
        self.sentences = (
            load_annotations(str(annotation_file(root, validation=mode == "official")))
            if root is not None and mode != "builtin"
            else {t: [s] for t, s in BUILTIN_SENTENCES.items()}
        )

    def __call__(self, task: str, np_random=None) -> str:
        options = self.sentences[task]
        if self.mode == "official_train" and np_random is not None:
            return options[int(np_random.integers(len(options)))]
        return options[0]
