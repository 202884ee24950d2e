"""The schema layer: dataclasses from mappings, value coercion, presets, errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from trainers.schema import ConfigError, build, coerce


@dataclass
class Inner:
    size: int = 1
    rate: float = 0.5


@dataclass
class Outer:
    name: str = ""
    inner: Inner = field(default_factory=Inner)
    sizes: list[int] = field(default_factory=list)
    channels: tuple[int, ...] = (1,)
    limit: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name == "bad":
            raise ValueError("name must not be 'bad'")


@dataclass
class Sized:
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"width": 2}, "big": {"width": 64}}
    preset: str = "tiny"
    width: int = 8
    depth: int = 1


def test_build_coerces_nested_values():
    config = build(
        Outer,
        {"name": 3, "inner": {"size": 4.0, "rate": "1e-3"}, "channels": [2, 3], "limit": 7},
    )
    assert config == Outer(name="3", inner=Inner(4, 1e-3), channels=(2, 3), limit=7)
    assert isinstance(config.inner.size, int) and isinstance(config.inner.rate, float)
    assert build(Outer, {"limit": None, "sizes": "8"}).sizes == ["8"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"inner": {"size": "ten"}}, "outer.inner.size must be a int, got 'ten'"),
        ({"inner": {"rate": True}}, "outer.inner.rate must be a float, got True"),
        (
            {"inner": {"sise": 1}},
            "unknown key 'outer.inner.sise' (known under outer.inner: rate, size)",
        ),
        ({"inner": 3}, "outer.inner must be a mapping, got 3"),
        ({"limit": "x"}, "outer.limit must be a int"),
        ({"name": "bad"}, "outer: name must not be 'bad'"),
    ],
)
def test_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError) as error:
        build(Outer, raw, prefix="outer.")
    assert message in str(error.value)


def test_coerce_refuses_bools_for_numbers_and_reads_yaml_spellings():
    assert coerce(1e3, int, "k") == 1000
    assert coerce(False, str, "k") == "off"  # YAML 1.1 reads `off` as a boolean
    with pytest.raises(ConfigError, match="k must be a int, got True"):
        coerce(True, int, "k")
    with pytest.raises(ConfigError, match="k must be a int, got 1.5"):
        coerce(1.5, int, "k")


def test_presets_fill_the_keys_a_mapping_leaves_out():
    assert build(Sized, {}) == Sized(preset="tiny", width=2)
    assert build(Sized, {"preset": "big", "depth": 3}) == Sized(preset="big", width=64, depth=3)
    assert build(Sized, {"preset": "big", "width": 5}).width == 5
    with pytest.raises(ConfigError, match=r"p.preset: unknown preset 'huge' \(known: tiny, big\)"):
        build(Sized, {"preset": "huge"}, prefix="p.")


def test_schema_imports_nothing_of_the_trainer():
    import ast
    from pathlib import Path

    import trainers.schema

    tree = ast.parse(Path(trainers.schema.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("trainers")]
