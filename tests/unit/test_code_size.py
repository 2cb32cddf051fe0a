"""The package stays readable: no module over 350 lines, no function over 60 (scripts/sizes.py)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sizes.py"


def _sizes_module():
    spec = importlib.util.spec_from_file_location("sizes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_or_function_over_the_limits():
    sizes = _sizes_module()
    files, functions = sizes.sizes()
    assert files and functions  # it read the package
    assert [f for f in files if f[0] > sizes.MAX_FILE_LINES] == []
    assert [f for f in functions if f[0] > sizes.MAX_FUNCTION_LINES] == []
