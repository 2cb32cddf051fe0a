"""Read ERP documents (Markdown, text, HTML, PDF) into LangChain ``Document`` objects.

Metadata on every document: ``source`` (path relative to the ingested folder), ``title``, and any
front-matter fields of Markdown files, and ``roles`` (the access labels, see ``access``).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from langchain_core.documents import Document

from erp_chatbot.knowledge.access import normalise_roles

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
_HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)
# reStructuredText-style title of a plain-text page: a line underlined with * = - ~ or #
_UNDERLINED = re.compile(r"\A\s*([^\n]{2,200})\n([*=\-~#])\2{2,}\s*$", re.MULTILINE)


class DocumentLoadError(ValueError):
    """A file could not be read; the message names the file and the reason."""


def iter_files(root: Path) -> list[Path]:
    """Supported files under ``root``, sorted, skipping hidden files and folders."""
    if not root.is_dir():
        raise DocumentLoadError(f"{root} is not a folder; pass the folder that holds the documents")
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def load_file(path: Path, root: Path, roles: list[str] | None = None) -> list[Document]:
    """Load one file; PDFs give one document per page.

    ``roles`` (from the folder's access mapping) apply unless the front matter names its own.
    """
    source = path.relative_to(root).as_posix()
    documents = _load(path, source)
    for doc in documents:
        own = doc.metadata.get("roles")
        doc.metadata["roles"] = normalise_roles(own, source) if own is not None else list(roles or [])
    return documents


def _load(path: Path, source: str) -> list[Document]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            return _load_pdf(path, source)
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DocumentLoadError(f"{source}: not UTF-8 text ({error.reason}); convert it to UTF-8") from error
    except OSError as error:
        raise DocumentLoadError(f"{source}: cannot be read ({error.strerror})") from error
    if suffix in (".html", ".htm"):
        return [_from_html(text, source)]
    return [_from_text(text, source, markdown=suffix != ".txt")]


def _from_text(text: str, source: str, markdown: bool) -> Document:
    metadata: dict = {"source": source}
    if markdown and (match := _FRONT_MATTER.match(text)):
        try:
            front = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as error:
            raise DocumentLoadError(f"{source}: front matter is not valid YAML ({error})") from error
        if not isinstance(front, dict):
            raise DocumentLoadError(f"{source}: front matter must be a mapping of fields")
        metadata.update(front)
        text = text[match.end() :]
    if "title" not in metadata:
        heading = _HEADING.search(text) if markdown else _UNDERLINED.match(text)
        metadata["title"] = heading.group(1).strip() if heading else _title_from_path(source)
    return Document(page_content=text.strip(), metadata=metadata)


def _from_html(html: str, source: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "footer"]):
        tag.decompose()
    title_tag = soup.find("title") or soup.find("h1")
    title = title_tag.get_text(" ", strip=True) if title_tag else _title_from_path(source)
    text = soup.get_text("\n", strip=True)
    return Document(page_content=text, metadata={"source": source, "title": title})


def _load_pdf(path: Path, source: str) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or _title_from_path(source)
    except PdfReadError as error:
        raise DocumentLoadError(f"{source}: not a readable PDF ({error})") from error
    return [
        Document(page_content=text.strip(), metadata={"source": source, "title": title, "page": number})
        for number, text in enumerate(pages, start=1)
        if text.strip()
    ]


def _title_from_path(source: str) -> str:
    return Path(source).stem.replace("-", " ").replace("_", " ").strip().capitalize()
