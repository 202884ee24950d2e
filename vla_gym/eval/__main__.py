"""``python -m vla_gym.eval --env-id ID --policy expert|random|zero [--episodes N]
[env.kwargs.KEY=VALUE ...]``: the protocol of ``ID``'s benchmark (or the generic one) with a
built-in policy. Env kwargs: positional ``env.kwargs.KEY=VALUE`` (VALUE parsed as YAML) or one
``--env-kwargs '{KEY: VALUE}'`` mapping. ``--progress auto|on|off``: a progress bar on stderr
(auto: on a terminal outside CI); ``--results-jsonl PATH``: one JSON line per finished task,
appended as the evaluation runs."""

from __future__ import annotations

import argparse
import sys

from vla_gym.eval.policy import POLICY_HELP
from vla_gym.eval.progress import evaluate_kwargs, parse_command_args, report_result
from vla_gym.eval.protocols import protocol_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vla_gym.eval", description=__doc__)
    parser.add_argument("--env-id", required=True, help="e.g. VLA/PandaPickCube-v0")
    parser.add_argument(
        "--policy", default="expert", help=POLICY_HELP.format("expert | random | zero")
    )
    parser.add_argument("--episodes", type=int, default=None, help="default: the full protocol")
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--backend", default="auto", choices=["auto", "sync", "subproc", "ray"])
    parser.add_argument("--seed", type=int, default=0)
    args = parse_command_args(parser, argv)
    # The protocol, and so its evaluate and fixed kwargs, follows from the parsed --env-id.
    protocol = protocol_for(args.env_id)
    kwargs = evaluate_kwargs(args, protocol.evaluate, fixed_kwargs=protocol.fixed_kwargs)
    result = protocol.run(
        args.policy,
        episodes=args.episodes,
        num_envs=args.num_envs,
        backend=args.backend,
        seed=args.seed,
        **kwargs,
    )
    report_result(result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
