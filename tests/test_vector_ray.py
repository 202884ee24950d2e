"""`backend="ray"` on a small local Ray instance (few tests: Ray's start-up is slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_vector_helpers import FaultyEnv, ImageEnv

from vla_gym.vector import EnvError, WorkerDiedError, make_vec
from vla_gym.vector.ray_backend import gpus_per_actor

ray = pytest.importorskip("ray", reason="backend='ray' needs ray (pip install -e '.[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    import cloudpickle
    import test_vector_helpers

    # Ray's workers cannot import this tests/ folder: ship the helper envs by value
    cloudpickle.register_pickle_by_value(test_vector_helpers)
    # no memory monitor: on a busy shared machine it kills these small actors (OutOfMemoryError)
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(test_vector_helpers)


def test_ray_matches_sync_and_supports_send_recv(local_ray):
    sync = make_vec(ImageEnv, 3, backend="sync", autoreset_mode="same_step")
    envs = make_vec(ImageEnv, 3, backend="ray", envs_per_worker=2, autoreset_mode="same_step")
    rng = np.random.default_rng(0)
    try:
        ours, theirs = envs.reset(seed=4), sync.reset(seed=4)
        np.testing.assert_array_equal(ours[0]["images"]["front"], theirs[0]["images"]["front"])
        assert ours[0]["instruction"] == theirs[0]["instruction"]
        for _ in range(7):
            actions = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
            ours, theirs = envs.step(actions), sync.step(actions)
            for a, b in zip(ours[1:4], theirs[1:4], strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ours[0]["state"], theirs[0]["state"])
            assert ours[0]["instruction"] == theirs[0]["instruction"]
            assert sorted(ours[4]) == sorted(theirs[4])
        envs.send(np.zeros((1, 2), np.float32), env_ids=[2])
        obs, rewards, *_, infos = envs.recv()
        assert infos["env_id"].tolist() == [2] and obs["state"].shape == (1, 3)
        assert len({w["pid"] for w in envs.worker_info()}) == 2
        assert envs.get_attr("max_steps") == (5, 5, 5)
    finally:
        envs.close()
        sync.close()


def kill_and_wait(actor, timeout: float = 60.0) -> None:
    """`ray.kill` is asynchronous: a call sent right after it may still run. Wait for the death."""
    ray.kill(actor)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    raise AssertionError("the killed Ray actor still answers")


def test_ray_env_error_and_dead_actor_are_reported(local_ray):
    envs = make_vec(FaultyEnv, 2, backend="ray", fault="raise", faulty_seed=1)
    try:
        envs.reset(seed=0)
        envs.step(np.zeros((2, 2), np.float32))
        with pytest.raises(EnvError, match="env 1 raised ValueError: boom"):
            envs.step(np.zeros((2, 2), np.float32))
        kill_and_wait(envs.workers[0].actor)
        with pytest.raises(WorkerDiedError, match=r"worker 0 \(envs \[0\]\) \(Ray actor\) died"):
            envs.step(np.zeros((2, 2), np.float32))
        with pytest.raises(WorkerDiedError, match=r"worker 0 .* is dead \(an earlier failure\)"):
            envs.step(np.zeros((2, 2), np.float32))  # stays reported, the actor is not asked
    finally:
        envs.close()


def test_gpu_share_per_actor():
    assert gpus_per_actor(4, 4) == 1.0
    assert gpus_per_actor(4, 2) == 1.0
    assert gpus_per_actor(2, 8) == 0.25


CLUSTER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    import cloudpickle, ray, test_vector_helpers
    from ray.cluster_utils import Cluster
    from test_vector_helpers import ImageEnv
    from vla_gym.vector import make_vec

    if __name__ == "__main__":
        cloudpickle.register_pickle_by_value(test_vector_helpers)
        head = {{"num_cpus": 1, "resources": {{"render": 1}}, "include_dashboard": False}}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        sim_node = cluster.add_node(num_cpus=2, resources={{"sim": 2}})
        cluster.wait_for_nodes()
        render = make_vec(
            ImageEnv, 1, backend="ray", ray_address=cluster.address,
            resources_per_worker={{"render": 1}},
        )
        sim = make_vec(ImageEnv, 2, backend="ray", resources_per_worker={{"sim": 1}})
        sim.reset(seed=0)
        print("RESULT", json.dumps({{
            "head": cluster.head_node.node_id,
            "sim": sim_node.node_id,
            "render_workers": [w["node_id"] for w in render.worker_info()],
            "sim_workers": [w["node_id"] for w in sim.worker_info()],
            "resources": sim.worker_info()[0]["resources"],
        }}))
        sim.close()
        render.close()
        ray.shutdown()
        cluster.shutdown()
    """
)


def run_cluster_script(tmp_path: Path, source: str) -> dict:
    """Run ``source`` (a script building its own ``Cluster``) in a fresh interpreter, so that
    the cluster's processes end with it; what it printed after ``RESULT``, as JSON (Ray also
    prints its nodes' logs)."""
    script = tmp_path / "cluster.py"
    script.write_text(source.format(tests=str(Path(__file__).parent)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # a busy machine starts Ray's agents slowly: give the raylets time to see them
    env.update(
        RAY_memory_monitor_refresh_ms="0",
        RAY_raylet_start_wait_time_s="180",
        RAY_agent_register_timeout_ms="180000",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(result.removeprefix("RESULT "))


def test_workers_are_placed_by_custom_resources_on_a_two_node_cluster(tmp_path):
    placed = run_cluster_script(tmp_path, CLUSTER_SCRIPT)
    assert placed["head"] != placed["sim"]
    assert placed["render_workers"] == [placed["head"]]
    assert placed["sim_workers"] == [placed["sim"], placed["sim"]]
    assert placed["resources"] == {"sim": 1.0}


NODE_DEATH_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time, warnings
    sys.path.insert(0, {tests!r})
    import cloudpickle, numpy as np, ray, test_vector_helpers
    from ray.cluster_utils import Cluster
    from test_vector_helpers import FaultyEnv
    from vla_gym.vector import make_vec

    HANG = 99  # the env reset with this seed hangs at its second step: a step in flight
    TIMEOUT = 40.0

    if __name__ == "__main__":
        cloudpickle.register_pickle_by_value(test_vector_helpers)
        head = {{"num_cpus": 1, "resources": {{"sim": 1}}, "include_dashboard": False}}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        doomed = cluster.add_node(num_cpus=2, resources={{"sim": 1, "edge": 1}})
        cluster.wait_for_nodes()
        options = dict(
            backend="ray", ray_address=cluster.address, step_timeout=TIMEOUT, fault="hang"
        )
        # one worker on each sim node; the edge worker only fits the doomed node
        sim = make_vec(
            FaultyEnv, 2, resources_per_worker={{"sim": 1}}, restart_on_failure=True,
            faulty_seed=HANG, **options,
        )
        edge = make_vec(
            FaultyEnv, 1, resources_per_worker={{"edge": 1}}, faulty_seed=HANG, **options
        )
        placed = [w["node_id"] for w in sim.worker_info()]
        lost = placed.index(doomed.node_id)
        spare = cluster.add_node(num_cpus=1, resources={{"sim": 1}})  # where `lost` can go
        cluster.wait_for_nodes()
        sim.reset(seed=[HANG if w == lost else w for w in range(2)])
        edge.reset(seed=HANG)
        action = np.zeros((2, 2), np.float32)
        sim.step(action)
        edge.step(action[:1])
        edge.send(action[:1])  # both envs on the doomed node now hang in their second step

        def kill_node():
            time.sleep(1.0)
            cluster.remove_node(doomed, allow_graceful=False)  # SIGKILL its raylet

        killer = threading.Thread(target=kill_node)
        start = time.monotonic()
        killer.start()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, _, _, truncations, infos = sim.step(action)
        sim_seconds = time.monotonic() - start
        killer.join()
        errors = []
        for call in (edge.recv, lambda: edge.step(action[:1])):
            try:
                call()
                errors.append(None)
            except Exception as error:
                errors.append([type(error).__name__, str(error)])
        edge_seconds = time.monotonic() - start
        after = [sim.step(action)[4]["t"].tolist() for _ in range(2)]
        print("RESULT", json.dumps({{
            "timeout": TIMEOUT,
            "lost": lost,
            "placed": placed,
            "head": cluster.head_node.node_id,
            "doomed": doomed.node_id,
            "spare": spare.node_id,
            "replaced": [w["node_id"] for w in sim.worker_info()],
            "edge_node": edge.worker_info()[0]["node_id"],
            "warnings": [str(w.message) for w in caught],
            "restarted": infos["worker_restarted"].tolist(),
            "truncations": truncations.tolist(),
            "sim_seconds": sim_seconds,
            "edge_errors": errors,
            "edge_seconds": edge_seconds,
            "after": after,
        }}))
        edge.close()
        sim.close()
        ray.shutdown()
        cluster.shutdown()
    """
)


def test_node_death_is_reported_and_its_workers_are_replaced_elsewhere(tmp_path):
    """A node dies with steps in flight on it: an env without restart_on_failure reports its
    worker dead (not timed out), one with it gets the worker re-placed on a node that still
    has the resource, and its other worker steps on."""
    r = run_cluster_script(tmp_path, NODE_DEATH_SCRIPT)
    lost, kept = r["lost"], 1 - r["lost"]
    assert sorted(r["placed"]) == sorted([r["head"], r["doomed"]])
    assert r["edge_node"] == r["doomed"]
    # the restarted worker: reported like a dead subprocess worker, re-placed on the spare node
    assert r["sim_seconds"] < r["timeout"]
    [message] = r["warnings"]
    assert f"worker {lost} (envs [{lost}]) (Ray actor) died" in message
    assert f"restarting worker {lost}; envs [{lost}] are reset" in message
    assert r["replaced"][lost] == r["spare"] and r["replaced"][kept] == r["head"]
    assert r["restarted"] == [w == lost for w in range(2)]
    assert r["truncations"] == [w == lost for w in range(2)]
    # the surviving env went on counting; the re-placed one is reset by the next step (NEXT_STEP)
    assert [t[kept] for t in r["after"]] == [3, 4]
    assert [t[lost] for t in r["after"]] == [0, 1]
    # no restart: the dead worker is reported, now and at every later step
    assert r["edge_seconds"] < r["timeout"]
    [(name, first), (again, later)] = r["edge_errors"]
    assert name == again == "WorkerDiedError"
    assert first.startswith("worker 0 (envs [0]) (Ray actor) died")
    assert later == "worker 0 (envs [0]) is dead (an earlier failure)"


def test_bad_resources_per_worker_are_refused_before_ray_starts():
    for resources in ({"CPU": 1}, {"sim": 0}, {"sim": True}, ["sim"]):
        with pytest.raises(ValueError, match="resources_per_worker"):
            make_vec(ImageEnv, 1, backend="ray", resources_per_worker=resources)
    with pytest.raises(ValueError, match="resources_per_worker= is for backend='ray'"):
        make_vec(ImageEnv, 1, backend="sync", resources_per_worker={"sim": 1})
