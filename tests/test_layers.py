"""The layer rule of docs/architecture.md, read from the import graph of ``gdaload/``.

Every import counts, also those inside functions (a lazy import is still a dependency)
and those under ``TYPE_CHECKING``: each layer imports only from itself and the layers
before it. No module reaches itself through imports that run (annotations-only imports
under ``TYPE_CHECKING`` may point back, as they never execute).
"""

from __future__ import annotations

import pytest
from import_graph import PACKAGE, Import, all_imports, module_name

# In order: a module may import from its own top-level unit and from earlier layers.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"seeding", "fingerprint", "lazy", "provenance"}),
    frozenset({"cache", "metrics", "datasets"}),
    frozenset({"generators"}),
    frozenset({"select", "engine"}),
    frozenset({"data", "transforms", "tta"}),
    frozenset({"train", "bench"}),
    frozenset({"cli"}),
)


def unit(module: str) -> str | None:
    """The top-level unit (``cache``, ``cli``...) of a module; None for the root package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_of(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    raise AssertionError(
        f"gdaload.{name} belongs to no layer; add it to LAYERS here and to docs/architecture.md"
    )


def layer_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        source, target = unit(imp.importer), unit(imp.target)
        if source is None:
            continue  # gdaload/__init__.py re-exports the public names of every layer
        if target is None:
            bad.append(f"{imp.where()}: {imp.importer} imports gdaload (the root package)")
        elif target != source and layer_of(target) >= layer_of(source):
            bad.append(
                f"{imp.where()}: {imp.importer} imports {imp.target} "
                f"({target} is not in a layer before {source})"
            )
    return bad


def cycles(imports: list[Import]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.type_only:
            graph.setdefault(imp.importer, set()).add(imp.target)
    found, state = [], {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_unit_has_a_layer() -> None:
    units = {module_name(p).split(".")[1] for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE}
    units |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    for name in sorted(units):
        layer_of(name)


def test_layers_import_only_earlier_layers() -> None:
    bad = layer_violations(all_imports())
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    found = cycles(all_imports())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("importer", "target", "ok"),
    [
        ("gdaload.cache.store", "gdaload.seeding.plan", True),
        ("gdaload.cache.store", "gdaload.generators.base", False),
        ("gdaload.select.stage", "gdaload.engine.base", False),
        ("gdaload.data.loader", "gdaload.data.plan", True),
        ("gdaload.cli", "gdaload.bench.quickstart", True),
        ("gdaload.tta", "gdaload", False),
    ],
)
def test_the_checker_names_a_bad_import(importer: str, target: str, ok: bool) -> None:
    imp = Import(importer, target, PACKAGE / "x.py", 7)
    bad = layer_violations([imp])
    assert not bad if ok else (len(bad) == 1 and f"imports {target}" in bad[0])


def test_the_checker_finds_a_cycle() -> None:
    here = PACKAGE / "x.py"
    found = cycles(
        [
            Import("gdaload.a.x", "gdaload.a.y", here, 1),
            Import("gdaload.a.y", "gdaload.a.x", here, 1),
        ]
    )
    assert found == [["gdaload.a.x", "gdaload.a.y", "gdaload.a.x"]]
