"""Architecture rules that keep the data flow visible: train -> model <- dicomnode, the rooms inside dicomnode
(receive, pipeline, outputs, dispatch, runtime, db) each importing only what is below it, output builders reading
one prepared description, docstrings on every module, every results page in the results index."""

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


# Inside dicomnode: which of its packages each one must not import. receive stores and records (it never sends);
# the pipeline turns one image into result files (it knows no network, no processes); outputs only build DICOM
# objects; db is the bottom (it imports no other room); dispatch sends what is recorded.
INNER_FORBIDDEN = {
    "receive": {"dispatch", "pipeline", "runtime", "outputs", "service", "cli"},
    "pipeline": {"receive", "dispatch", "runtime", "web", "service", "cli"},
    "outputs": {"db", "receive", "dispatch", "pipeline", "runtime", "web", "service", "cli"},
    "db": {"receive", "dispatch", "pipeline", "runtime", "outputs", "web", "audit", "service", "cli"},
    "dispatch": {"receive", "pipeline", "runtime", "outputs", "service", "cli"},
}


def imported_rooms(path: Path) -> set[str]:
    """The dicomnode packages (or top-level modules) ``path`` imports, by their first name below dicomnode."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        rooms |= {name.split(".")[1] for name in names if name.startswith("dicomnode.")}
    return rooms


@pytest.mark.parametrize("room", sorted(INNER_FORBIDDEN))
def test_rooms_inside_dicomnode(room):
    offenders = {str(p.relative_to(REPO)): sorted(imported_rooms(p) & INNER_FORBIDDEN[room])
                 for p in modules(f"dicomnode/{room}") if imported_rooms(p) & INNER_FORBIDDEN[room]}
    assert not offenders, f"dicomnode/{room} must not import {sorted(INNER_FORBIDDEN[room])}: {offenders}"


# The output builders read one prepared description of the result (dicomnode/outputs/description.py): from the
# modules that compose it they may take constants and types (colours, the disclaimer, TextLine), never a function.
BUILDERS = ("sr.py", "sr_landmarks.py", "sc.py", "gsps.py")
DESCRIBED_BY = {"dicomnode.outputs.overlay", "model.alignment", "model.measurements", "model.scheme"}


@pytest.mark.parametrize("builder", BUILDERS)
def test_output_builders_read_the_description(builder):
    path = REPO / "dicomnode" / "outputs" / builder
    taken = [(node.module, alias.name) for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ImportFrom) and node.module in DESCRIBED_BY for alias in node.names]
    functions = [f"{module}.{name}" for module, name in taken if not (name.isupper() or name[:1].isupper())]
    assert not functions, f"{builder} calls back into what the description composes: {functions}"


def test_every_results_page_is_indexed_with_its_title():
    """docs/results/README.md lists every results page once, under the title the page gives itself, and nothing else:
    a new page, a renamed one or a changed title shows up here rather than as a stale index."""
    results = REPO / "docs" / "results"
    index = (results / "README.md").read_text().splitlines()
    listed = {}
    for line in index:
        if line.startswith("- ["):
            name = line[3:line.index("]")]
            assert line.startswith(f"- [{name}]({name}): "), line
            assert name not in listed, f"{name} listed twice"
            listed[name] = line.split("): ", 1)[1]
    pages = {p.name: p.read_text().splitlines()[0].removeprefix("# ")
             for p in results.glob("*.md") if p.name not in ("README.md", "history.md")}
    assert listed == pages
    assert "[history.md](history.md)" in "\n".join(index)  # the README's former account, linked in the preface
