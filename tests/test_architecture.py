"""The package's rooms stand on each other in one order: no import runs back up.

A room is a top-level module or subpackage of `optimem`. Each may import itself and the rooms on
lower floors, never a room on its own floor or above — lazy imports inside functions included,
so a stage cannot quietly reach back up. `docs/architecture.md` draws the same floors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import optimem

PACKAGE = Path(optimem.__file__).parent

FLOORS: list[set[str]] = [
    {"errors", "cache"},
    {"tokens", "modes", "layout", "fonts"},
    {"aids"},
    {"backends", "store"},
    {"aging"},
    {"records"},
    {"pages"},
    {"reading"},
    {"workers", "context", "turns"},
    {"memory"},
    {"__init__"},
    {"server"},
    {"integrations", "bench"},
    {"cli"},
]
FLOOR = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}


def _room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of each optimem module that `source`, the text of `module`, imports."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import fonts` imports the module optimem.fonts, not the package
            subs = [f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")]
            found += [(node.lineno, t) for t in subs or [target]]
    return [(line, t) for line, t in found if t == "optimem" or t.startswith("optimem.")]


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_every_room_has_a_floor():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    rooms -= {"__pycache__", "data"}
    assert rooms == set(FLOOR), "a new room needs a floor in FLOORS (and in docs/architecture.md)"


def test_no_import_runs_back_up():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        here = _room(module)
        for line, target in _imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"):
            there = _room(target)
            if there != here and FLOOR[there] >= FLOOR[here]:
                upward.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} ({here}) imports {target} ({there})"
                )
    assert not upward, "\n".join(upward)


def test_the_rule_sees_relative_lazy_and_module_imports():
    # the check itself can fail: what an aging module would import, however it is spelled
    source = "from ..reading import recall\nfrom ..store import Store\n\ndef f():\n    from ..pages.typeset import paginate\n"
    found = _imports(source, "optimem.aging.probe")
    assert found == [(1, "optimem.reading.recall"), (2, "optimem.store"), (5, "optimem.pages.typeset")]
    assert [FLOOR[_room(t)] > FLOOR["aging"] for _, t in found] == [True, False, True]


def test_modules_skipped_by_the_fast_subset_are_wholly_slow():
    # tests/conftest.py skips importing them under -m "not slow": a fast test there would be lost
    from .conftest import ALL_SLOW

    for path in ALL_SLOW:
        assert "\npytestmark = pytest.mark.slow" in path.read_text(encoding="utf-8"), path
