"""The house as the code has it, measured from the source (an AST scan, nothing imported): the import
graph of each package, circles in it, imports against the stage direction, and the longest function and
module per package. ``tests/test_house.py`` holds the rules; ``python tests/house.py`` prints the report.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {  # import name -> folder, from the ground floor up
    "lvunet_runtime": ROOT / "runtime" / "lvunet_runtime",
    "lvunet_edge": ROOT / "lvunet_edge",
    "lvunet_export": ROOT / "export" / "lvunet_export",
}
FLOOR = {name: floor for floor, name in enumerate(PACKAGES)}
# What each stage must never import (besides the stages above it): the runtime is what a laptop installs.
FORBIDDEN = {"lvunet_runtime": {"torch", "onnx", "onnxsim"}}


def modules(package: str) -> dict[str, Path]:
    folder = PACKAGES[package]
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, at any depth (inside functions too, TYPE_CHECKING included)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            found.add(base)
            found |= {
                f"{base}.{alias.name}" for alias in node.names
            }  # a submodule imported by name
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports."""
    every = {m: p for package in PACKAGES for m, p in modules(package).items()}
    return {m: {i for i in imports(p, m) if i in every and i != m} for m, p in every.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                result.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return result


def against_the_flow() -> list[str]:
    """Imports of a stage above (or of what a stage must not import), as ``module -> imported``."""
    wrong = []
    for package in PACKAGES:
        for module, path in modules(package).items():
            for name in imports(path, module):
                top = name.split(".")[0]
                if top in FLOOR and FLOOR[top] > FLOOR[package]:
                    wrong.append(f"{module} -> {name}")
                if top in FORBIDDEN.get(package, set()):
                    wrong.append(f"{module} -> {name}")
    return sorted(set(wrong))


def _is_command(node) -> bool:
    """A typer command (``@app.command``): mostly option declarations, measured apart."""
    return any("command" in ast.unparse(d) for d in node.decorator_list)


def longest(package: str, *, commands: bool = False) -> tuple[tuple[int, str], tuple[int, str]]:
    """((lines, function), (lines, module)) of the longest library function (the typer commands
    instead, with ``commands``) and the longest module."""
    functions, files = [], []
    for module, path in modules(package).items():
        text = path.read_text()
        files.append((len(text.splitlines()), module))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                _is_command(node) == commands
            ):
                functions.append((node.end_lineno - node.lineno + 1, f"{module}.{node.name}"))
    return max(functions), max(files)


def report() -> str:
    edges = graph()
    lines = []
    for package in PACKAGES:
        inside = {
            m: {i for i in e if i.startswith(package)}
            for m, e in edges.items()
            if m.startswith(package)
        }
        (fn_lines, fn), (mod_lines, mod) = longest(package)
        commands = [c for c in modules(package) if c.endswith("cli")]
        command = f"; longest command {longest(package, commands=True)[0]}" if commands else ""
        lines.append(
            f"{package}: {len(inside)} modules, {sum(map(len, inside.values()))} imports between them, "
            f"{sum(len(e) - len(inside[m]) for m, e in edges.items() if m in inside)} to other stages; "
            f"longest function {fn} ({fn_lines} lines){command}; longest module {mod} ({mod_lines} lines)"
        )
    lines.append(f"circles: {circles(edges) or 'none'}")
    lines.append(f"imports against the stage direction: {against_the_flow() or 'none'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
