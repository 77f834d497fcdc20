"""Architecture rules that keep the data flow visible: train -> model <- dicomnode, docstrings on every module."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"model": {"dicomnode", "train"}, "dicomnode": {"train"}}


def modules(package: str):
    return sorted((REPO / package).rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependency_direction(package):
    offenders = {str(p.relative_to(REPO)): sorted(imported_roots(p) & FORBIDDEN[package])
                 for p in modules(package) if imported_roots(p) & FORBIDDEN[package]}
    assert not offenders, f"{package} must not import {FORBIDDEN[package]}: {offenders}"


@pytest.mark.parametrize("package", ["model", "dicomnode", "train"])
def test_every_module_has_a_docstring(package):
    missing = [str(p.relative_to(REPO)) for p in modules(package)
               if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, f"modules without a top docstring: {missing}"
