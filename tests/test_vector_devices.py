"""GPU/EGL and CPU-core pinning of workers, asserted on what each worker actually saw."""

from __future__ import annotations

import functools
import os

import gymnasium as gym
import pytest
from test_vector_helpers import ImageEnv

from vla_gym.vector import make_vec, make_vec_entry_point
from vla_gym.vector.devices import (
    assign_workers,
    cpu_core_sets,
    egl_index_for,
    parse_index_list,
    query_cuda_to_egl,
)


class EnvironmentProbeEnv(ImageEnv):
    """Records, when built, the variables and cores it was built under."""

    def __init__(self):
        super().__init__(size=4)
        self.seen_env = {
            k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "MUJOCO_EGL_DEVICE_ID")
        }
        self.seen_cores = sorted(os.sched_getaffinity(0))


def test_parse_index_lists():
    assert parse_index_list("0-3", "devices") == [0, 1, 2, 3]
    assert parse_index_list("0,2", "devices") == [0, 2]
    assert parse_index_list("cuda:1", "devices") == [1]
    assert parse_index_list([3, 1], "devices") == [3, 1]
    assert parse_index_list(2, "devices") == [2]
    for bad in ("0-", "a", "3-1", "", [-1]):
        with pytest.raises(ValueError, match="devices"):
            parse_index_list(bad, "devices")


def test_cpu_core_sets_round_robin():
    available = sorted(os.sched_getaffinity(0))
    assert cpu_core_sets("auto", 3) == [(available[w % len(available)],) for w in range(3)]
    assert cpu_core_sets("0-1", 3) == [(0,), (1,), (0,)]
    assert cpu_core_sets([[0, 1], [1]], 3) == [(0, 1), (1,), (0, 1)]


def test_assignments_translate_cuda_to_egl_through_the_map(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    egl_map = {0: 2, 1: 0, 2: 1}
    assignments = assign_workers(4, "0-2", None, egl_map)
    assert [a.cuda_device for a in assignments] == [0, 1, 2, 0]
    assert [a.egl_device for a in assignments] == [2, 0, 1, 2]
    assert assignments[1].env == {
        "CUDA_VISIBLE_DEVICES": "1",
        "MUJOCO_EGL_DEVICE_ID": "0",
        "EGL_DEVICE_ID": "0",
        "EGL_VISIBLE_DEVICES": "0",
    }
    assert all(a.cpu_cores is None for a in assignments)
    assert assign_workers(2) == assign_workers(2, None, None)  # no pinning asked, none given
    assert assign_workers(2)[0].env == {}


def test_devices_are_relative_to_the_parents_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assignments = assign_workers(2, "0-1", None, {0: 1, 1: 0})
    assert [a.env["CUDA_VISIBLE_DEVICES"] for a in assignments] == ["5", "7"]
    with pytest.raises(ValueError, match="shows only 2 device"):
        assign_workers(1, "3", None, {3: 0})


def test_unknown_egl_mapping_falls_back_to_the_cuda_index_with_a_warning():
    with pytest.warns(RuntimeWarning, match="EGL_CUDA_DEVICE_NV.*CUDA device 3"):
        assert egl_index_for(3, {0: 1}) == 3
    # this machine has no NVIDIA EGL device: the real query yields no CUDA device at all
    assert isinstance(query_cuda_to_egl(), dict)


def test_workers_run_with_the_assigned_gpu_variables_and_cores(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cores = sorted(os.sched_getaffinity(0))
    envs = make_vec(
        EnvironmentProbeEnv,
        4,
        envs_per_worker=1,
        devices="0-1",
        cpu_affinity="auto",
        egl_device_map={0: 1, 1: 0},
    )
    try:
        info = envs.worker_info()
        assert [w["cuda_device"] for w in info] == [0, 1, 0, 1]
        assert [w["egl_device"] for w in info] == [1, 0, 1, 0]
        assert [w["env"]["CUDA_VISIBLE_DEVICES"] for w in info] == ["0", "1", "0", "1"]
        assert [w["env"]["MUJOCO_EGL_DEVICE_ID"] for w in info] == ["1", "0", "1", "0"]
        assert [w["env"]["EGL_VISIBLE_DEVICES"] for w in info] == ["1", "0", "1", "0"]
        expected_cores = [[cores[w % len(cores)]] for w in range(4)]
        assert [w["cpu_affinity"] for w in info] == expected_cores
        assert len({w["pid"] for w in info}) == 4
        # the envs were built under those settings (set before any env code ran)
        seen = envs.get_attr("seen_env")
        assert [s["MUJOCO_EGL_DEVICE_ID"] for s in seen] == ["1", "0", "1", "0"]
        assert [list(c) for c in envs.get_attr("seen_cores")] == expected_cores
    finally:
        envs.close()
    # the parent itself is untouched
    assert os.environ.get("MUJOCO_EGL_DEVICE_ID") in (None, os.environ.get("MUJOCO_EGL_DEVICE_ID"))
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_gym_make_vec_passes_pinning_options_through():
    env_id = "VLATest/ProbeEnv-v0"
    if env_id not in gym.registry:
        gym.register(
            env_id,
            entry_point="test_vector_devices:EnvironmentProbeEnv",
            vector_entry_point=functools.partial(make_vec_entry_point, env_id),
        )
    envs = gym.make_vec(env_id, 2, cpu_affinity=[[0]], envs_per_worker=2)
    try:
        assert [w["cpu_affinity"] for w in envs.worker_info()] == [[0]]
        assert [list(c) for c in envs.get_attr("seen_cores")] == [[0], [0]]
    finally:
        envs.close()
