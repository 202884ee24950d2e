"""Batching per-env info dicts the way Gymnasium's vector envs do (``key`` + ``_key`` masks)."""

from __future__ import annotations

from typing import Any

import numpy as np


def add_info(
    vector_infos: dict[str, Any], env_info: dict[str, Any], index: int, batch_size: int
) -> dict[str, Any]:
    """Put env ``index``'s info into ``vector_infos`` (arrays of ``batch_size``), in place.

    Same layout as :meth:`gymnasium.vector.VectorEnv._add_info`, for any batch size (an async
    ``recv`` returns fewer envs than the vector env has).
    """
    for key, value in env_info.items():
        if key == "final_obs":  # kept unbatched, as Gymnasium does
            array = vector_infos.get(key)
            if array is None:
                array = np.full(batch_size, fill_value=None, dtype=object)
            array[index] = value
        elif isinstance(value, dict):
            array = add_info(vector_infos.get(key, {}), value, index, batch_size)
        else:
            array = vector_infos.get(key)
            if array is None:
                if type(value) in (int, float, bool) or issubclass(type(value), np.number):
                    array = np.zeros(batch_size, dtype=type(value))
                elif isinstance(value, np.ndarray):
                    array = np.zeros((batch_size, *value.shape), dtype=value.dtype)
                else:
                    array = np.full(batch_size, fill_value=None, dtype=object)
            array[index] = value
        mask = vector_infos.get(f"_{key}")
        if mask is None:
            mask = np.zeros(batch_size, dtype=np.bool_)
        mask[index] = True
        vector_infos[key], vector_infos[f"_{key}"] = array, mask
    return vector_infos
