"""Package boundaries, checked from the source: what the pure layers may import, and no cycles between parts.

Every import counts, also the ones inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segzero_ros"
HEAVY = ("torch", "transformers", "sam2", "onnxruntime", "onnx", "tensorrt", "rclpy", "cv2", "PIL", "trl",
         "datasets", "scipy", "matplotlib")


def _part(module: str) -> str:
    """segzero_ros.core.answer → core; segzero_ros.pipeline → pipeline (top-level modules are parts too)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path) -> set[str]:
    module = "segzero_ros." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = module.split(".")[: -node.level if path.name != "__init__.py" else len(module.split("."))]
                found.add(".".join([*base, node.module or ""]).rstrip("."))
            elif node.module:
                found.add(node.module)
    return found


def dependency_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name in {"msg", "srv"}:
            continue
        source = _part("segzero_ros." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        targets = {_part(name) for name in _imports(path) if name.startswith("segzero_ros.")}
        graph.setdefault(source, set()).update(targets - {source, "msg", "srv"})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node):], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_the_parts_of_the_package():
    assert find_cycle(dependency_graph()) is None


@pytest.mark.parametrize(("part", "allowed"), [
    ("core", {"core"}),
    ("options", set()),
    ("config", {"core", "options"}),
    ("registry", {"config", "options"}),
    ("scheduler", {"core", "options"}),
    ("segmentation", {"core", "config", "options", "errors", "devices", "files", "shared_backbone"}),
    ("export", {"core", "config", "options", "errors", "files", "segmentation"}),
    ("data", {"core", "errors", "files", "images"}),
    ("reasoning", {"core", "config", "options", "errors", "devices", "files", "shared_backbone", "quiet"}),
    ("quiet", set()),
    ("shared_backbone", set()),
    ("image_messages", set()),
    ("pipeline", {"core", "errors", "reasoning", "segmentation"}),
    ("tracking", {"core", "config", "options", "errors", "devices", "files", "segmentation", "export", "registry"}),
])
def test_layers_import_only_what_is_below_them(part, allowed):
    assert dependency_graph().get(part, set()) <= allowed


def test_the_pure_modules_import_nothing_heavier_than_numpy():
    code = ("import sys, pkgutil, importlib, segzero_ros.core as core\n"
            "for info in pkgutil.iter_modules(core.__path__): importlib.import_module('segzero_ros.core.' + info.name)\n"
            "import segzero_ros.options, segzero_ros.config, segzero_ros.scheduler, segzero_ros.ros.params\n"
            f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert completed.stdout.strip() == "[]"


def _calls_and_assignments(path: Path) -> tuple[list[str], list[str]]:
    """Dotted names of the calls and the module-level names assigned in one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assigned = [target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(target, ast.Name)]
    return calls, assigned


def test_one_backend_registry_and_one_loader():
    """Backends are registered in segzero_ros.registry only, and only its `load` turns "module:attribute" into
    an object: no second registry dict, no second import_module loader (the CLI's own subcommand list aside)."""
    registry, cli = PACKAGE / "registry.py", PACKAGE / "cli" / "__init__.py"
    loaders, registries = [], []
    for path in PACKAGE.rglob("*.py"):
        calls, assigned = _calls_and_assignments(path)
        if path not in (registry, cli) and any(call.endswith("import_module") for call in calls):
            loaders.append(str(path.relative_to(PACKAGE)))
        if path != registry and any(name.endswith(("BACKENDS", "_REGISTRY")) for name in assigned):
            registries.append(str(path.relative_to(PACKAGE)))
    assert loaders == []
    assert registries == []
