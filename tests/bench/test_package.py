"""The package's entry points, and imports inside it that point only down the layers."""

from __future__ import annotations

from pathlib import Path

from import_graph import imports_of

import gdaload.bench

# Lower modules first: a module may import only modules above it in this list.
LAYERS = [
    "stats",
    "assets",
    "classifier",
    "memo",
    "adapters",
    "tasks",
    "arms",
    "report",
    "novel_views",
    "views",
    "evaluate",
    "quickstart",
]


def bench_imports(path: Path) -> set[str]:
    """Modules of gdaload.bench that ``path`` imports, at any depth of the file
    (``__init__`` for the package itself, which imports every module)."""
    return {
        "__init__" if imp.target == "gdaload.bench" else imp.target.split(".")[2]
        for imp in imports_of(path)
        if imp.target == "gdaload.bench" or imp.target.startswith("gdaload.bench.")
    }


def test_the_entry_points_of_the_cli_import() -> None:
    from gdaload.bench.evaluate import evaluate
    from gdaload.bench.quickstart import run_quickstart

    assert callable(evaluate) and callable(run_quickstart)


def test_modules_import_only_lower_layers() -> None:
    folder = Path(gdaload.bench.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)
    for module in LAYERS:
        lower = set(LAYERS[: LAYERS.index(module)])
        imported = bench_imports(folder / f"{module}.py")
        assert imported <= lower, f"{module} imports {sorted(imported - lower)} from above it"
