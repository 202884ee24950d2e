"""One English instruction per Meta-World task (Meta-World itself has no language)."""

from __future__ import annotations

INSTRUCTIONS: dict[str, str] = {
    "assembly": "Pick up the ring nut and fit it over the peg.",
    "basketball": "Pick up the ball and drop it into the basketball hoop.",
    "bin-picking": "Pick up the cube from the left bin and place it in the right bin.",
    "box-close": "Pick up the lid and put it on the box to close it.",
    "button-press-topdown": "Press the button down from above.",
    "button-press-topdown-wall": "Reach over the wall and press the button down from above.",
    "button-press": "Push the button in from the front.",
    "button-press-wall": "Reach around the wall and push the button in from the front.",
    "coffee-button": "Press the button on the coffee machine.",
    "coffee-pull": "Pull the coffee mug out from under the coffee machine.",
    "coffee-push": "Push the coffee mug under the coffee machine.",
    "dial-turn": "Turn the dial a quarter turn.",
    "disassemble": "Pick the ring nut up off the peg.",
    "door-close": "Push the open door closed.",
    "door-lock": "Turn the door lock knob down to lock the door.",
    "door-open": "Pull the door open by its handle.",
    "door-unlock": "Turn the door lock knob to unlock the door.",
    "hand-insert": "Slide the block into the hole in the table.",
    "drawer-close": "Push the drawer closed.",
    "drawer-open": "Pull the drawer open by its handle.",
    "faucet-open": "Turn the faucet handle to the left to open it.",
    "faucet-close": "Turn the faucet handle to the right to close it.",
    "hammer": "Pick up the hammer and hammer the nail into the wall.",
    "handle-press-side": "Press the handle down from the side.",
    "handle-press": "Press the handle down.",
    "handle-pull-side": "Pull the handle up from the side.",
    "handle-pull": "Pull the handle up.",
    "lever-pull": "Pull the lever up.",
    "pick-place-wall": "Pick up the puck, lift it over the wall and place it at the goal.",
    "pick-out-of-hole": "Pick the peg up out of the hole.",
    "pick-place": "Pick up the puck and place it at the goal.",
    "plate-slide": "Slide the plate forward into the goal.",
    "plate-slide-side": "Slide the plate sideways into the goal.",
    "plate-slide-back": "Slide the plate back out of the goal towards you.",
    "plate-slide-back-side": "Slide the plate sideways back out of the goal.",
    "peg-insert-side": "Pick up the peg and insert it into the hole from the side.",
    "peg-unplug-side": "Pull the peg out of the hole sideways.",
    "soccer": "Push the soccer ball into the goal.",
    "stick-push": "Grab the stick and use it to push the thermos to the goal.",
    "stick-pull": "Grab the stick and use it to pull the thermos to the goal.",
    "push": "Push the puck to the goal.",
    "push-wall": "Push the puck around the wall to the goal.",
    "push-back": "Pull the puck back to the goal.",
    "reach": "Move the gripper to the goal position.",
    "reach-wall": "Move the gripper over the wall to the goal position.",
    "shelf-place": "Pick up the puck and place it on the shelf.",
    "sweep-into": "Sweep the puck into the hole.",
    "sweep": "Sweep the puck off the edge of the table.",
    "window-open": "Slide the window open to the left.",
    "window-close": "Slide the window closed to the right.",
}


def instruction_for(task: str) -> str:
    from vla_gym.envs.metaworld.tasks import canonical_task

    return INSTRUCTIONS[canonical_task(task)]
