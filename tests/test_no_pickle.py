"""No pickle is loaded anywhere in gdaload: a crafted file must never run code.

Tensors are stored with safetensors and metadata as JSON; where torch files are
unavoidable (accelerate's optimizer state), they are read with ``weights_only=True``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

PACKAGE = Path(__file__).resolve().parents[1] / "gdaload"


def call_name(node: ast.Call) -> str:
    return ast.unparse(node.func)


def keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def pickle_loads(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module in ("pickle", "dill", "cloudpickle") or {"pickle", "dill"} & set(names):
                bad.append(f"{path.name}:{node.lineno}: imports {module or names}")
        if not isinstance(node, ast.Call):
            continue
        name = call_name(node)
        where = f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:80]}"
        if name.endswith("torch.load") or name == "load":
            flag = keyword(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                bad.append(f"{where} (needs weights_only=True)")
        elif name.endswith("np.load") or name.endswith("numpy.load"):
            flag = keyword(node, "allow_pickle")
            if isinstance(flag, ast.Constant) and flag.value is True:
                bad.append(f"{where} (allow_pickle=True)")
        elif name.endswith(("register_for_checkpointing", "load_custom_state")):
            bad.append(f"{where} (accelerate unpickles registered objects)")
    return bad


def test_the_package_never_unpickles() -> None:
    bad = [line for path in sorted(PACKAGE.rglob("*.py")) for line in pickle_loads(path)]
    assert not bad, "pickle loading in gdaload:\n" + "\n".join(bad)


def test_the_checker_catches_an_unsafe_torch_load(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import torch\nstate = torch.load('x.pt')\nok = torch.load('y.pt', weights_only=True)\n"
    )
    found = pickle_loads(sample, tmp_path)
    assert len(found) == 1 and "torch.load('x.pt')" in found[0]
