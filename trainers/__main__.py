"""``python -m trainers <command> ...``

Commands live in modules exposing ``add_arguments(parser)`` and ``run(args) -> int``; the table
below maps command names to those modules, imported only when their command runs. A command
whose module is not present (e.g. before the SFT work lands) is left out of the help.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from trainers.config import ConfigError, available_configs

COMMANDS = {
    "train": ("trainers.train", "train a policy with PPO or GRPO"),
    "eval": ("trainers.evaluate", "evaluate a checkpoint with its benchmark's protocol"),
    "collect": ("trainers.collect", "collect demonstrations with a scripted expert"),
    "sft": ("trainers.sft", "supervised fine-tuning on demonstrations"),
    "convert-checkpoint": ("trainers.checkpoint", "rewrite a trusted older checkpoint safely"),
    "convert-libero": ("trainers.libero_hdf5", "convert LIBERO's HDF5 demonstrations to demos"),
}


def available_commands() -> dict[str, tuple[str, str]]:
    return {
        name: entry
        for name, entry in COMMANDS.items()
        if importlib.util.find_spec(entry[0]) is not None
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = available_commands()
    parser = argparse.ArgumentParser(
        prog="python -m trainers",
        description="vla_gym trainer: PPO/GRPO training, evaluation, demonstrations, SFT.",
        epilog="configs: " + ", ".join(available_configs()),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in commands.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        parser.parse_args(argv)  # prints help or the unknown-command error
        return 2
    module = importlib.import_module(commands[argv[0]][0])
    from trainers.checkpoint import CheckpointError  # torch: only once a command runs

    command_parser = argparse.ArgumentParser(prog=f"python -m trainers {argv[0]}")
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except ConfigError as exc:
        command_parser.error(f"config error: {exc}")
        return 2
    except CheckpointError as exc:
        command_parser.error(f"checkpoint error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
