"""The largest modules and the longest functions of erp_chatbot/ (limits: 350 lines a file, 60 a
function; tests/unit/test_code_size.py holds the package to them).   python scripts/sizes.py [N]"""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "erp_chatbot"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 350, 60


def sizes() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, file) and (lines, file:line function), largest first."""
    files, functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE.parent)
        files.append((len(text.splitlines()), str(name)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}:{node.lineno} {node.name}"))
    return sorted(files, reverse=True), sorted(functions, reverse=True)


def main(count: int) -> None:
    files, functions = sizes()
    for title, rows in (("lines per file", files), ("lines per function", functions)):
        print(title)
        for size, where in rows[:count]:
            print(f"  {size:5d}  {where}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
