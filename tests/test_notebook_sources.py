"""Static checks of the notebooks' code (fast; the chain test executes them): every name a notebook reads is
imported, assigned or a parameter, so a cell that lost its import fails here rather than halfway through a run."""

from __future__ import annotations

import ast
import builtins
import json

import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _code(notebook) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    lines = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))  # IPython magics


def undefined_names(source: str) -> set[str]:
    tree = ast.parse(source)
    defined = set(dir(builtins)) | {"display", "get_ipython"}  # IPython's namespace
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - defined


def test_the_check_finds_a_missing_import():
    assert undefined_names("x = pd.DataFrame()") == {"pd"}
    assert undefined_names("import pandas as pd\nx = pd.DataFrame()") == set()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_name_a_notebook_reads_is_defined(notebook):
    assert undefined_names(_code(notebook)) == set(), notebook.name
