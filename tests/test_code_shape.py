"""The code stays readable: no function longer than a screen in the service's packages.

`python -m tests.test_code_shape` prints the longest functions (file:line, lines, name).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("tools", "agents", "api", "orchestration", "cli")
MAX_LINES = 60


def function_lengths(packages: tuple[str, ...] = PACKAGES) -> list[tuple[int, str]]:
    """(lines, "path:line name") of every function and method, longest first."""
    found = []
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1  # decorators not counted
                    where = f"{path.relative_to(REPO)}:{node.lineno} {node.name}"
                    found.append((lines, where))
    return sorted(found, reverse=True)


def test_no_function_is_longer_than_60_lines():
    too_long = [f"{where} ({n} lines)" for n, where in function_lengths() if n > MAX_LINES]
    assert too_long == []


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for lines, where in function_lengths()[:count]:
        print(f"{lines:4d}  {where}")
