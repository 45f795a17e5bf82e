"""Only store/ talks to the londiste_rs schema: any other module of the package that holds
SQL against it (a string naming `londiste_rs.<anything>`, docstrings aside, or a quoted
`sql.Identifier("londiste_rs", ...)`) fails this test. New SQL goes into a store/ function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import londiste_rs

PACKAGE = Path(londiste_rs.__file__).parent
SCHEMA_SQL = re.compile(r"\blondiste_rs\.\w")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of the module and of each class and function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def schema_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in `path` that names the schema."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if SCHEMA_SQL.search(node.value):
                found.append((node.lineno, node.value))
        elif isinstance(node, ast.Call) and _is_identifier(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and first.value == "londiste_rs":
                found.append((node.lineno, "Identifier('londiste_rs', ...)"))
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and node.value.value == "londiste_rs"  # SCHEMA = "londiste_rs", to build SQL with
        ):
            found.append((node.lineno, "londiste_rs"))
    return sorted(found)


def _is_identifier(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "Identifier") or (
        isinstance(func, ast.Name) and func.id == "Identifier"
    )


def test_only_store_holds_sql_against_the_schema() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "store"
        for line, text in schema_strings(path)
    ]
    assert offenders == []


def test_the_guard_sees_sql_and_ignores_docstrings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Mentions londiste_rs.ticker() in prose."""\n'
        'Q = "select * from londiste_rs.tick"\n'
        'S = sql.Identifier("londiste_rs", "event_1")\n'
        'M = ["python", "-m", "londiste_rs"]\n'
        'SCHEMA = "londiste_rs"\n'
        'def f():\n    """londiste_rs.table_info, in a docstring."""\n    return "plain"\n'
    )
    assert [line for line, _ in schema_strings(sample)] == [2, 3, 5]
