"""Running `erp-chatbot`: as a user does (a process of its own) or in the test's process.

A process pays Python's start and imports torch and sentence-transformers again (8-12 s on a
2-core CPU); in this process typer's runner calls the same commands, models already imported. The
tests use a process where the process is what they check (exit codes and one-line errors from
``main``, logging levels, a server) and this process for what the commands compute.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from typer.testing import CliRunner

from erp_chatbot.cli import app


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str, env: dict | None = None, stdin: str | None = None) -> Ran:
    """The command in a process of its own, through ``main`` as the console script runs it."""
    done = subprocess.run(
        [sys.executable, "-c", "from erp_chatbot.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        input=stdin,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def invoke(*args: str, env: dict | None = None, stdin: str | None = None) -> Ran:
    """The command in this process; an unexpected exception fails the test with its traceback."""
    result = CliRunner().invoke(app, list(args), input=stdin, env=env, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)
