"""Project bans as code: exact money in the domain, and the wall clock read only at the edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "accrual"
ENTRY_POINTS = ("api", "cli", "console", "worker")
# Reading the wall clock is allowed here, each for a reason stated in the module.
CLOCK_ALLOWED = {
    SRC / "integrations" / "system_clock.py",  # the system clock itself
    SRC / "store" / "ids.py",  # timestamp bits of UUIDv7 ids, not business time
}
WALL_CLOCK_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("dt", "now"),
}


def _python_files(*parts: str) -> list[Path]:
    return sorted((SRC.joinpath(*parts)).rglob("*.py"))


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _dotted(func: ast.expr) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return tuple(reversed(parts))


def money_violations(source: str) -> list[str]:
    """`float(...)`, bare `round(...)` and float literals: none belong where money is computed."""
    tree = ast.parse(source)
    found = [
        f"line {call.lineno}: {call.func.id}("
        for call in _calls(tree)
        if isinstance(call.func, ast.Name) and call.func.id in {"float", "round"}
    ]
    found.extend(
        f"line {node.lineno}: float literal {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, float)
    )
    return found


def clock_violations(source: str) -> list[str]:
    found = []
    for call in _calls(ast.parse(source)):
        dotted = _dotted(call.func)
        if len(dotted) >= 2 and dotted[-2:] in WALL_CLOCK_CALLS:
            found.append(f"line {call.lineno}: {'.'.join(dotted)}()")
    return found


@pytest.mark.parametrize("path", _python_files("domain"), ids=lambda p: str(p.relative_to(SRC)))
def test_domain_has_no_float_or_bare_round(path: Path) -> None:
    assert money_violations(path.read_text()) == []


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in _python_files()
        if p.relative_to(SRC).parts[0] not in ENTRY_POINTS and p not in CLOCK_ALLOWED
    ],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_only_entry_points_read_the_wall_clock(path: Path) -> None:
    assert clock_violations(path.read_text()) == []


def test_the_checks_catch_what_they_ban() -> None:
    assert money_violations("x = float('1.5')\ny = round(x, 2)\nz = 0.1\n") == [
        "line 1: float(",
        "line 2: round(",
        "line 3: float literal 0.1",
    ]
    assert clock_violations(
        "import datetime as dt\nn = dt.datetime.now(dt.UTC)\nimport time\nt = time.time()\n"
    ) == [
        "line 2: dt.datetime.now()",
        "line 4: time.time()",
    ]
    assert money_violations("from decimal import Decimal\nx = Decimal('0.1')\n") == []


def test_import_layers_hold() -> None:
    """import-linter's contracts (pyproject.toml): layers point down, the domain stays pure."""
    import subprocess
    import sys

    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=SRC.parents[1], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
