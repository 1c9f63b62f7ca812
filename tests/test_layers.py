"""The package's layers (docs/ARCHITECTURE.md, "Layers"), read from the source with `ast`: every import inside
`mprnet_hf/` points down or sideways, never up; no two modules import each other, directly or round a circle; and an
import made inside a function says why (a comment, an ImportError it falls back from, or the same library explained
once in the file), since such imports used to hide circles."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGE = "mprnet_hf"
PACKAGE_DIR = REPO_ROOT / PACKAGE

# Lowest first. A module belongs to the layer of the longest prefix that names it; it may import its own layer and
# those below. The model folder is what a Hub repo carries, so it imports nothing else of the package (checked apart).
LAYERS = (
    ("model", ("mprnet_hf.models",)),
    ("data", ("mprnet_hf.data", "mprnet_hf.stopping")),
    ("hub", ("mprnet_hf.hub",)),
    ("detection", ("mprnet_hf.detection",)),
    ("auto", ("mprnet_hf.auto",)),
    ("speed and serving", ("mprnet_hf.speed", "mprnet_hf.serving")),
    (
        "evaluation and training",
        (
            "mprnet_hf.evaluation",
            "mprnet_hf.training",
            # The detector's own training, calibration and evaluation measure auto mode end to end.
            "mprnet_hf.detection.train",
            "mprnet_hf.detection.calibrate",
            "mprnet_hf.detection.evaluate",
        ),
    ),
    ("front ends", ("mprnet_hf.cli", "mprnet_hf.collection", "mprnet_hf.restore", "mprnet_hf")),
)
MODEL_FOLDER = "mprnet_hf.models.mprnet"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def layer_of(module: str) -> int:
    matches = [
        (len(prefix), index)
        for index, (_name, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS and to docs/ARCHITECTURE.md"
    return max(matches)[1]


def function_body_lines(tree: ast.AST) -> set[int]:
    """Line numbers of import statements made inside a function."""
    inside = set()
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(node.lineno for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom)))
    return inside


def package_imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module of the package, line) for every import `module` makes: a name imported from a package is
    the submodule when one has that name."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
            found += [(name, node.lineno) for name in submodules] or [(target, node.lineno)]
    return found


GRAPH = {module: package_imports(module, path) for module, path in MODULES.items()}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_down_or_sideways():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]}), line {line}"
        for module, targets in GRAPH.items()
        for target, line in targets
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_model_folder_imports_only_itself():
    """A Hub repo carries these files flat, so they import each other relatively and nothing else of the package."""
    outside = [
        f"{module} imports {target}, line {line}"
        for module, targets in GRAPH.items()
        if module.startswith(MODEL_FOLDER + ".")
        for target, line in targets
        if not target.startswith(MODEL_FOLDER)
    ]
    assert not outside, "\n".join(outside)
    text = "\n".join(MODULES[module].read_text() for module in MODULES if module.startswith(MODEL_FOLDER + "."))
    assert "importlib" not in text, "a module imported by name would hide an import from this test"


def test_no_import_circles():
    edges = defaultdict(set)
    for module, targets in GRAPH.items():
        for target, _line in targets:
            # Every module imports the package's __init__ on its way in; that edge is Python's, not the module's.
            if target != module and target != PACKAGE:
                edges[module].add(target)
    circles, state = [], {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def explained(lines: list[str], line: int) -> bool:
    """Whether the import on `line` (1-based) has a comment on it or just above the block of imports it is in."""
    index = line - 1
    if "#" in lines[index]:
        return True
    while index > 0 and lines[index - 1].strip().startswith(("import ", "from ")):
        index -= 1
    return index > 0 and lines[index - 1].strip().startswith("#")


def falls_back(tree: ast.AST, line: int) -> bool:
    """Whether the import on `line` sits in a `try` that handles ImportError (an optional dependency)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            getattr(child, "lineno", None) == line for item in node.body for child in ast.walk(item)
        ):
            names = {ast.unparse(handler.type) for handler in node.handlers if handler.type is not None}
            if any("ImportError" in name or "ModuleNotFoundError" in name for name in names):
                return True
    return False


def imported_root(node: ast.AST) -> str:
    if isinstance(node, ast.Import):
        return node.names[0].name.split(".")[0]
    return "." if node.level else (node.module or "").split(".")[0]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_inside_functions_say_why(module):
    lines = MODULES[module].read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    inside = function_body_lines(tree)
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    at_top = {imported_root(node) for node in imports if node.lineno not in inside and imported_root(node) != "."}
    reasons = {imported_root(node) for node in imports if node.lineno in inside and explained(lines, node.lineno)}
    unexplained = [
        f"line {node.lineno}: {lines[node.lineno - 1].strip()}"
        + (" (imported at the top already)" if imported_root(node) in at_top else "")
        for node in imports
        if node.lineno in inside
        and not explained(lines, node.lineno)
        and not falls_back(tree, node.lineno)
        and (imported_root(node) not in reasons or imported_root(node) == ".")
    ]
    assert not unexplained, "\n".join(unexplained)
