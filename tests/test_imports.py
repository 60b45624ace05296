"""The package's import graph: no circle, and the light modules stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ganstudy

PACKAGE = Path(ganstudy.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the ganstudy modules it imports anywhere (top level or inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                # `from pkg import mod` imports the module pkg.mod where one exists.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "ganstudy.errors" in graph
    assert graph["ganstudy.errors"] == set(), "errors.py must import nothing of the package"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def room(module: str) -> str:
    """A module's room: its subpackage (ganstudy.analysis), or itself for a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {room(m): set() for m in graph}
    for module, targets in graph.items():
        rooms[room(module)] |= {room(t) for t in targets if room(t) != room(module)}
    return rooms


def test_the_rooms_have_no_arrow_running_back_up():
    """Rooms (subpackages and top-level modules) stack on floors by their imports: an import
    from a lower room to a higher one is a circle between rooms (e.g. metrics importing a
    constant of analysis while analysis imports metrics)."""
    rooms = room_graph(import_graph())
    assert {"ganstudy.metrics", "ganstudy.analysis", "ganstudy.store"} <= set(rooms)
    assert find_cycle(rooms) is None, f"arrow back up: {' -> '.join(find_cycle(rooms))}"
    # The check can fail: an arrow from metrics back up to analysis closes a circle.
    planted = {r: set(t) for r, t in rooms.items()}
    planted["ganstudy.metrics"].add("ganstudy.analysis")
    assert find_cycle(planted) is not None


MAX_LINES = 400


def test_no_module_is_longer_than_400_lines():
    """A module past MAX_LINES lines does more than one job: split it by job."""
    lengths = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    assert len(lengths) > 40
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_registries_and_the_study_grid_import_no_heavy_library():
    """What the Snakefile imports when it is parsed, and what validates run configs."""
    code = (
        "import sys\n"
        "import ganstudy.config, ganstudy.store, ganstudy.losses, ganstudy.nets\n"
        "import ganstudy.optimizers, ganstudy.analysis.comparisons, ganstudy.study.plan\n"
        "import ganstudy.data.registry, ganstudy.metrics.fid_protocol\n"
        "import ganstudy.study.grid, ganstudy.study.cost, ganstudy.study.gpu_slots\n"
        "import ganstudy.study.memory, ganstudy.study.workflow\n"
        "heavy = [m for m in ('torch', 'pandas', 'scipy', 'seaborn', 'matplotlib', 'mlflow',\n"
        "                     'pytorch_fid', 'torchvision') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
