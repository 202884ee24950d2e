"""Offline set-up of ``hf-libero``: its config file, its asset folder, a non-blocking import.

``import libero.libero`` asks questions with ``input()`` when ``$LIBERO_CONFIG_PATH/config.yaml``
(default ``~/.libero``) is missing, and hf-libero downloads the scene assets from a model hub on
first use. Here the config file is written under a vla_gym cache folder before LIBERO is
imported, and the assets come from a folder the user names (``libero_assets=`` or
``$VLA_GYM_LIBERO_ASSETS``) or one hf-libero already holds; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

from vla_gym.core.deps import MissingDependencyError, require

ASSETS_ENV_VAR = "VLA_GYM_LIBERO_ASSETS"
CONFIG_ENV_VAR = "LIBERO_CONFIG_PATH"
# What robosuite reads from the asset folder while building any LIBERO scene.
ASSET_SUBDIRS = (
    "scenes",
    "textures",
    "articulated_objects",
    "stable_scanned_objects",
    "stable_hope_objects",
    "turbosquid_objects",
)
HOW_TO_PROVIDE_ASSETS = (
    "Provide the LIBERO asset folder (the one holding scenes/, textures/, articulated_objects/, "
    "...) with gym.make(..., libero_assets='/path/to/assets') or the environment variable "
    f"{ASSETS_ENV_VAR}=/path/to/assets. On a machine with internet access hf-libero can fetch "
    'them once: python -c "from libero.libero.utils.download_utils import '
    'download_assets_from_huggingface as d; print(d())"  (into ~/.cache/libero/assets, which '
    "vla_gym then finds by itself)."
)


class LiberoAssetsError(FileNotFoundError):
    """The LIBERO scene assets are missing or incomplete."""


def libero_package_dir() -> Path:
    """``.../site-packages/libero/libero`` of hf-libero, found without importing it."""
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "LIBERO needs the Python package 'hf-libero' (module 'libero'), which is not "
            'installed. Install it with: pip install -e ".[libero]"'
        )
    return Path(next(iter(spec.submodule_search_locations))) / "libero"


def missing_asset_subdirs(folder: Path) -> list[str]:
    return [name for name in ASSET_SUBDIRS if not (folder / name).is_dir()]


def resolve_assets(libero_assets: str | os.PathLike | None = None) -> Path:
    """The asset folder to use, checked; raises :class:`LiberoAssetsError` saying how to fix it.

    Order: the ``libero_assets`` argument, ``$VLA_GYM_LIBERO_ASSETS``, then the places hf-libero
    itself looks (``libero/libero/assets`` in the package, ``~/.cache/libero/assets``).
    """
    if libero_assets is not None or os.environ.get(ASSETS_ENV_VAR):
        source = "libero_assets=" if libero_assets is not None else f"${ASSETS_ENV_VAR}"
        folder = Path(libero_assets if libero_assets is not None else os.environ[ASSETS_ENV_VAR])
        folder = folder.expanduser().resolve()
        if not folder.is_dir():
            raise LiberoAssetsError(
                f"LIBERO assets: {source} points to {folder}, which is not a folder. "
                + HOW_TO_PROVIDE_ASSETS
            )
        missing = missing_asset_subdirs(folder)
        if missing:
            raise LiberoAssetsError(
                f"LIBERO assets: {source} points to {folder}, which lacks {missing}. "
                + HOW_TO_PROVIDE_ASSETS
            )
        return folder
    candidates = [
        libero_package_dir() / "assets",
        Path.home() / ".cache" / "libero" / "assets",
    ]
    for folder in candidates:
        if folder.is_dir() and not missing_asset_subdirs(folder):
            return folder
    raise LiberoAssetsError(
        "LIBERO assets not found (no libero_assets=, no $"
        f"{ASSETS_ENV_VAR}, nothing complete in {[str(c) for c in candidates]}); vla_gym does "
        "not download them at run time. " + HOW_TO_PROVIDE_ASSETS
    )


def _cache_dir() -> Path:
    root = os.environ.get("VLA_GYM_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "vla_gym"
    )
    return Path(root) / "libero"


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as file:
        file.write(text)
    os.replace(file.name, path)


def ensure_libero_config(assets: Path) -> Path:
    """Make sure LIBERO finds a ``config.yaml`` (so its import never prompts); return its folder.

    A ``$LIBERO_CONFIG_PATH`` the user set is respected (a config missing there is written);
    otherwise the config lives in ``~/.cache/vla_gym/libero`` (``$VLA_GYM_CACHE`` moves it).
    """
    folder = Path(os.environ.get(CONFIG_ENV_VAR) or _cache_dir()).expanduser()
    config = folder / "config.yaml"
    package = libero_package_dir()
    entries = {
        "benchmark_root": package,
        "bddl_files": package / "bddl_files",
        "init_states": package / "init_files",
        "datasets": package.parent / "datasets",
        "assets": assets,
    }
    text = "".join(f"{key}: {value}\n" for key, value in entries.items())
    user_owned = os.environ.get(CONFIG_ENV_VAR) and config.exists()
    if not user_owned and (not config.exists() or config.read_text() != text):
        try:
            _write_atomically(config, text)
        except OSError:  # read-only home: a per-user temporary folder still works
            folder = Path(tempfile.gettempdir()) / f"vla_gym-libero-{os.getuid()}"
            config = folder / "config.yaml"
            _write_atomically(config, text)
    os.environ[CONFIG_ENV_VAR] = str(folder)
    return folder


def import_libero(assets: Path) -> SimpleNamespace:
    """Import LIBERO without prompts, pointed at ``assets``; returns its ``benchmark`` module and
    ``ControlEnv`` class."""
    libero_package_dir()  # clear error when hf-libero is missing
    ensure_libero_config(assets)
    with (
        contextlib.redirect_stdout(io.StringIO()),  # LIBERO and robosuite print at import
        _quiet_robosuite_import(),
        _without_robosuite_device_check(),
    ):
        require("robosuite", extra="libero", what="LIBERO")
        import libero.libero as libero_root
        from libero.libero import benchmark
        from libero.libero.envs.env_wrapper import ControlEnv
    use_assets(libero_root, assets)
    return SimpleNamespace(root=libero_root, benchmark=benchmark, ControlEnv=ControlEnv)


@contextlib.contextmanager
def _quiet_robosuite_import():
    """robosuite warns at import that it has no private macro file; irrelevant here."""
    logger = logging.getLogger("robosuite_logs")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def _without_robosuite_device_check():
    """Hide ``MUJOCO_EGL_DEVICE_ID`` while robosuite is imported.

    robosuite 1.4 asserts at import that the EGL device id appears in ``CUDA_VISIBLE_DEVICES``,
    but EGL and CUDA number GPUs differently (the vector layer sets both correctly for a pinned
    worker). robosuite does not render for us, so its check does not apply; MuJoCo's own EGL
    backend still reads the variable, which is restored right after.
    """
    saved = os.environ.pop("MUJOCO_EGL_DEVICE_ID", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MUJOCO_EGL_DEVICE_ID"] = saved


def use_assets(libero_root, assets: Path) -> None:
    """Point hf-libero's asset lookup at ``assets`` (read when a scene is built).

    hf-libero resolves assets with ``get_assets_path()``, which returns its module-level cache
    first; setting the cache is the only way to choose the folder without a download.
    """
    libero_root._assets_path_cache = str(assets)
