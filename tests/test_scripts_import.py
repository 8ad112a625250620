"""The benchmarks and scripts name only what exists: every `from optimem… import name` and
`from calibrate import name` resolves. They run outside the suite, so a moved module or a
renamed function would otherwise break them silently (it did once, after the rooms move)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("examples/*.py")])
LOCAL = {"calibrate": ROOT / "scripts" / "calibrate.py"}


def _defined(path: Path) -> set[str]:
    """Names a module file defines or imports at its top level."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _fallbacks(tree: ast.AST) -> set[int]:
    """Imports in `except ImportError:` branches: older trees' names, there on purpose (a
    benchmark that also times an older checkout)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                if "ImportError" in ast.dump(handler.type or ast.Name("")):
                    out |= {id(n) for n in ast.walk(handler) if isinstance(n, ast.ImportFrom)}
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_imported_name_exists(script):
    missing = []
    tree = ast.parse(script.read_text(encoding="utf-8"))
    skip = _fallbacks(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module or id(node) in skip:
            continue
        if node.module in LOCAL:
            have = _defined(LOCAL[node.module])
            missing += [f"{node.module}.{a.name}" for a in node.names if a.name not in have]
        elif node.module.split(".")[0] == "optimem":
            try:
                module = importlib.import_module(node.module)
            except ModuleNotFoundError as exc:
                missing.append(f"{node.module} ({exc})")
                continue
            for a in node.names:
                if not hasattr(module, a.name):
                    try:
                        importlib.import_module(f"{node.module}.{a.name}")
                    except ModuleNotFoundError:
                        missing.append(f"{node.module}.{a.name}")
    assert not missing, f"{script.name} imports what does not exist: {missing}"
