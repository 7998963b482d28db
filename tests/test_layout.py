"""The package's shape: every module imports alone, imports go only
downward, there is no import cycle, and supervision stands on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "statsyard"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))


def _imports(module: str) -> set[str]:
    """Every statsyard module ``module`` imports, at any depth of its code."""
    path = PACKAGE.parent / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES)
    return found - {module}


def test_the_supervision_part_imports_nothing_else_of_statsyard() -> None:
    """statsyard.supervision is reusable by any Pykka application as it is."""
    for module in MODULES:
        if module.startswith("statsyard.supervision"):
            outside = {
                name
                for name in _imports(module)
                if not name.startswith("statsyard.supervision")
            }
            assert not outside, f"{module} imports {sorted(outside)}"


def test_there_is_no_import_cycle_lazy_or_not() -> None:
    """Imports inside functions count too: a cycle broken by a lazy import is
    still a cycle."""
    graph = {m: _imports(m) for m in MODULES}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join(
            [*visiting[visiting.index(module) :], module]
        )
        visiting.append(module)
        for target in sorted(graph[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in MODULES:
        visit(module)


_ISOLATED = """
import sys
failed = []
for module in sys.argv[1:]:
    for name in [n for n in sys.modules if n.split(".")[0] == "statsyard"]:
        del sys.modules[name]
    try:
        __import__(module)
    except Exception as error:
        failed.append(f"{module}: {error!r}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own() -> None:
    """No module relies on another having been imported first: each is
    imported into an interpreter holding no statsyard module."""
    result = subprocess.run(
        [sys.executable, "-c", _ISOLATED, *MODULES],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


LAYERS = (
    ("supervision",),
    ("exceptions",),
    ("_ratelimit", "_ticker", "_child_process"),
    ("datapoint", "timeparse"),
    ("storage",),
    ("pipeline",),
    ("graphite",),
    ("metrics",),
    ("forward",),
    ("config",),
    ("render",),
    ("http",),
    ("tree",),
    ("app", "testing"),
    ("cli",),
    ("__main__", "statsyard"),
)
"""The parts from the bottom up, as docs/architecture.md draws them."""


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_part_imports_only_the_parts_below_it() -> None:
    """Imports go downward: a part never imports one above or beside it."""
    rank = {part: index for index, layer in enumerate(LAYERS) for part in layer}
    assert set(map(_part, MODULES)) <= set(rank), "a part missing from LAYERS"
    upward = sorted(
        f"{module} -> {target}"
        for module in MODULES
        for target in _imports(module)
        if _part(target) != _part(module) and rank[_part(target)] >= rank[_part(module)]
    )
    assert not upward, upward
