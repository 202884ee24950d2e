"""vla_gym: manipulation benchmarks for VLA policies behind one Gymnasium API.

``import vla_gym`` registers every ID (``gym.make("VLA/PandaPickCube-v0")``).
"""

from vla_gym.core.rendering import configure_headless_gl

configure_headless_gl()  # before any simulator import picks a GL backend

from vla_gym.registration import register_all, registered_ids  # noqa: E402

register_all()

__version__ = "0.1.0"


def make_vec(*args, **kwargs):
    """Vector env over any vla_gym ID; see :func:`vla_gym.vector.make_vec`."""
    from vla_gym.vector import make_vec as _make_vec

    return _make_vec(*args, **kwargs)


def make_expert(*args, **kwargs):
    """Scripted expert for an ID; see :func:`vla_gym.experts.make_expert`."""
    from vla_gym.experts import make_expert as _make_expert

    return _make_expert(*args, **kwargs)


__all__ = ["__version__", "make_expert", "make_vec", "registered_ids"]
