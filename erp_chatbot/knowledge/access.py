"""Access labels: which roles may read a document, and whether a caller holds one of them.

Labels come from a Markdown file's front matter (``roles: [finance, hr]``) or, for any file, from
``.access.yaml`` in the root of the ingested folder, which maps glob patterns to roles::

    "finance/**": [finance]
    "hr/*.pdf": [hr, management]

Front matter wins over the mapping; the first matching pattern wins within it. A document with no
roles is public. A caller reads a document when they share one of its roles; ``*`` reads all.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

ACCESS_FILE = ".access.yaml"
EVERYONE = "*"


class AccessLabelError(ValueError):
    """Roles are not a role name or a list of role names; the message names the file."""


def normalise_roles(value: object, where: str) -> list[str]:
    """``"finance"`` or ``["finance", "hr"]`` as a sorted list of distinct, non-empty names."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n.strip() for n in names):
        raise AccessLabelError(f"{where}: roles must be a role name or a list of role names, got {value!r}")
    return sorted({name.strip() for name in names})


class AccessRules:
    """The folder's ``.access.yaml`` mapping (empty when the folder has none)."""

    def __init__(self, rules: list[tuple[str, list[str]]]) -> None:
        self.rules = rules

    @classmethod
    def read(cls, root: Path) -> AccessRules:
        path = root / ACCESS_FILE
        if not path.is_file():
            return cls([])
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise AccessLabelError(f"{path}: not valid YAML ({error})") from error
        if not isinstance(data, dict):
            raise AccessLabelError(f"{path}: must map glob patterns to roles, e.g. 'finance/**: [finance]'")
        return cls([(str(pattern), normalise_roles(roles, f"{path} [{pattern}]")) for pattern, roles in data.items()])

    def roles_for(self, source: str) -> list[str]:
        """Roles of the first pattern matching ``source`` (a path relative to the folder)."""
        for pattern, roles in self.rules:
            if fnmatchcase(source, pattern) or (pattern.endswith("/**") and source.startswith(pattern[:-2])):
                return roles
        return []


def may_read(caller_roles: Iterable[str], document_roles: Iterable[str]) -> bool:
    caller = set(caller_roles)
    required = set(document_roles)
    return not required or EVERYONE in caller or bool(caller & required)
