"""Training rollout throughput: env workers as Ray actors on 2 nodes vs worker processes.

Two runs of the PandaPickCube MLP PPO recipe with the same envs, ``--workers`` env workers and
``env.num_envs / --workers`` envs each, measured as in ``distributed_rollout.py`` (one rank,
TensorBoard scalars, first iteration excluded, medians over the others):

* ``subproc``: worker processes of the trainer, observations through shared memory;
* ``ray``: Ray actors on a ``ray.cluster_utils.Cluster`` of a head node without CPUs for
  actors and ``--workers`` nodes with one CPU and one ``sim`` resource each
  (``env.ray_resources={sim: 1}``: one env worker per node), each answer a Ray call.

All nodes run on this machine, so the ratio is the cost of Ray's calls and object transfer
over the shared-memory protocol, not of a network. ``--rounds`` pairs of runs, in alternating
order (a shared machine's load changes over minutes); the result is the median ratio.

    nice -n 10 python benchmarks/ray_rollout.py                 # writes the result
    python benchmarks/ray_rollout.py --iterations 2 --num-envs 4 --num-steps 8 --no-result
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_result  # noqa: E402
from distributed_rollout import run  # noqa: E402


def start_cluster(nodes: int):
    """A head node (the trainer's driver joins it; no CPUs, so no actor lands there) and
    ``nodes`` nodes with one CPU and one ``sim`` each."""
    from ray.cluster_utils import Cluster

    # a busy machine starts Ray's agents slowly; its memory monitor would kill actors
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    os.environ.setdefault("RAY_agent_register_timeout_ms", "180000")
    # the nodes' worker processes import vla_gym and trainers from this checkout, as the trainer
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    head = {"num_cpus": 0, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(nodes):
        cluster.add_node(num_cpus=1, resources={"sim": 1})
    cluster.wait_for_nodes()
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=128, help="policy steps per rollout")
    parser.add_argument("--workers", type=int, default=2, help="env workers (and Ray nodes)")
    parser.add_argument("--no-result", action="store_true", help="print only (smoke check)")
    args = parser.parse_args()
    if args.num_envs % args.workers:
        parser.error("--num-envs must be divisible by --workers")
    rows: list[dict] = []
    ratios: list[float] = []
    cluster = start_cluster(args.workers)
    try:
        ray = (
            "env.ray_resources={sim: 1}",
            f"env.ray_address={cluster.address}",
            "env.step_timeout=600",  # the first actors wait for Ray to start their processes
        )
        pair = [("subproc", ()), ("ray", ray)]
        with tempfile.TemporaryDirectory(prefix="ray_rollout_") as tmp:
            for round_ in range(args.rounds):
                rates = {}
                for backend, overrides in pair if round_ % 2 == 0 else pair[::-1]:
                    name = f"{backend}_{round_}"
                    row = run(1, backend, args, Path(tmp), overrides, name)
                    del row["ranks"], row["envs per rank"]
                    rows.append({"round": round_ + 1, **row, "env workers": args.workers})
                    rates[backend] = row["rollout env steps/s"]
                    print(rows[-1], flush=True)
                ratios.append(rates["ray"] / rates["subproc"])
    finally:
        cluster.shutdown()
    ratio = statistics.median(ratios)
    if args.no_result:
        return
    write_result(
        "ray_rollout",
        title="Env workers on 2 Ray nodes vs worker processes: training rollout (PandaPickCube)",
        claim=(
            f"With {args.num_envs} envs in {args.workers} env workers, a training rollout "
            f"with the workers as Ray actors on {args.workers} simulated nodes "
            f"(ray.cluster_utils.Cluster, all on this machine) steps {ratio:.2f}x the env "
            f"steps/s of worker processes (subproc) on {os.cpu_count()} cores: the median over "
            f"{args.rounds} pairs of runs (ratios {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"each run's median over iterations 2..{args.iterations})."
        ),
        metric="ray vs subproc",
        unit="x",
        per_seed={"run": ratio},
        rows=rows,
    )


if __name__ == "__main__":
    main()
