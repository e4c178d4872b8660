"""The house by stage (docs/ARCHITECTURE.md): no import circle, the core never imports the apps,
and each stage of ``pipeline/`` imports only the stages below it.

The import graph is read with :mod:`ast` from the source files, lazy imports inside functions
included (a circle through a lazy import is still a circle a reader has to untangle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "db", "dashboard", "gradio_app")

# The floor of each stage: a module may import its own stage and the stages on lower floors.
# The root modules of pipeline/ (config, model, paths, ...) are the shared contract, floor 0.
FLOORS = {
    "root": 0,
    "imaging": 1,
    "explain": 1,
    "data": 2,
    "lungs": 3,
    "preprocessing": 4,
    "evaluation": 4,
    "serving": 5,
    "experiments": 5,
    "training": 6,
    "runs": 7,
    "pretraining": 7,
    "cli": 8,
}
# The root modules that are entry points rather than contract: they sit on the top floor.
ENTRY_POINTS = {"pipeline.__main__": "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in p.parts
    }


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                # ``from pipeline.data import scan`` imports the module pipeline.data.scan.
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_no_import_circle(graph):
    # Tarjan's strongly connected components: any component of two or more is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_pipeline_and_db_never_import_the_apps(graph):
    upward = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m.split(".")[0] in ("pipeline", "db")
        for t in targets
        if t.split(".")[0] in ("dashboard", "gradio_app")
    )
    assert not upward, f"imports from the core into an app: {upward}"


def test_db_never_imports_pipeline(graph):
    found = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m.startswith("db")
        for t in targets
        if t.startswith("pipeline")
    )
    assert not found, found


def stage(module: str) -> str:
    """The stage folder of a pipeline module (``root`` for pipeline/*.py)."""
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or module in {f"pipeline.{s}" for s in FLOORS} else "root"


def test_every_stage_folder_has_a_floor():
    folders = {p.name for p in (ROOT / "pipeline").iterdir() if (p / "__init__.py").is_file()}
    assert folders <= set(FLOORS), f"stage folders without a floor: {sorted(folders - set(FLOORS))}"


def test_stages_import_only_lower_floors(graph):
    upward = sorted(
        f"{m} ({stage(m)}) -> {t} ({stage(t)})"
        for m, targets in graph.items()
        if m.startswith("pipeline")
        for t in targets
        if t.startswith("pipeline")
        and stage(t) != stage(m)
        and FLOORS[stage(t)] >= FLOORS[stage(m)]
    )
    assert not upward, "a stage imports one on its own floor or above:\n" + "\n".join(upward)


def test_the_walk_sees_module_level_and_lazy_imports(tmp_path):
    """The graph the checks read: an import at the top of a file, and one inside a function."""
    (tmp_path / "a.py").write_text("from pipeline.imaging import decode\n")
    modules = {"pipeline.imaging.decode": Path(), "pipeline.serving.ood": Path()}
    lazy = "def f():\n    from pipeline.serving import ood\n"
    (tmp_path / "b.py").write_text(lazy)
    assert imports_of("x", tmp_path / "a.py", modules) == {"pipeline.imaging.decode"}
    assert imports_of("x", tmp_path / "b.py", modules) == {"pipeline.serving.ood"}
