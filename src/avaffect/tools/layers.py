"""The library's layers, and the check that its imports follow them.

Data flows down the layers: a module may import from its own package and from the packages of lower layers,
never from a higher layer, nor from a sibling in its own layer (the visual and the audio front-ends know
nothing of each other). Imports inside functions count like the others: a lazy import is still a dependency.
Within a package the modules' imports form no cycle.

    python -m avaffect.tools.layers          # exits 1, naming each offending import, when the rules are broken
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "avaffect"
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("corpus",),
    ("media",),
    ("face", "audio"),
    ("models",),
    ("fusion",),
    ("report",),
    ("app",),
    ("tools",),
)
"""Bottom first. A package's modules import only from their own package and from lower layers."""
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module at `path` in the package folder `root`."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(node: ast.AST, modules: set[str]) -> list[tuple[str, int]]:
    """The library modules an import statement reads: `from a.b import c` reads a.b.c when that is a module."""
    if isinstance(node, ast.Import):
        return [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == PACKAGE:
        submodules = [f"{node.module}.{alias.name}" for alias in node.names]
        found = [name for name in submodules if name in modules]
        return [(name, node.lineno) for name in found] or [(node.module, node.lineno)]
    return []


def library_imports(root: Path) -> list[Import]:
    """Every import of a library module by a library module under the package folder `root`."""
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in paths}
    found = []
    for path in paths:
        name = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            found += [Import(name, target, line) for target, line in imported_modules(node, modules)]
    return found


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_problems(imports: list[Import]) -> list[str]:
    """Imports that go up a layer, across to a sibling, or touch a package no layer names."""
    problems = []
    for imp in imports:
        source, target = package_of(imp.module), package_of(imp.target)
        where = f"{imp.module} (line {imp.line}) imports {imp.target}"
        if target is None:
            continue  # the top-level package holds the version alone, below every layer
        if source is None:
            problems.append(f"{where}: the top-level package holds the version alone and imports nothing")
        elif source not in LAYER_OF or target not in LAYER_OF:
            unknown = source if source not in LAYER_OF else target
            problems.append(f"{where}: package '{unknown}' is in no layer (add it to LAYERS)")
        elif source != target and LAYER_OF[target] >= LAYER_OF[source]:
            relation = "a sibling of" if LAYER_OF[target] == LAYER_OF[source] else "a higher layer than"
            problems.append(f"{where}: '{target}' is {relation} '{source}'")
    return problems


def cycles(imports: list[Import]) -> list[list[str]]:
    """Import cycles among the library's modules, each as the modules around it (first repeated last)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target != imp.module:
            graph.setdefault(imp.module, set()).add(imp.target)
    found, done, path = [], set(), []

    def visit(module: str) -> None:
        if module in path:
            found.append([*path[path.index(module):], module])
            return
        if module in done:
            return
        path.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    return found


def check(root: Path) -> list[str]:
    """Every broken rule in the package folder `root`, in words; empty when the layers hold."""
    imports = library_imports(root)
    return layer_problems(imports) + [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(imports)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the package folder (default: this avaffect)")
    args = parser.parse_args(argv)
    problems = check(args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.root}: layers hold ({' < '.join('/'.join(layer) for layer in LAYERS)}), no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
