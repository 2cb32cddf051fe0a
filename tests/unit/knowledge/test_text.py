"""Language detection, splitting and loading of documents."""

from pathlib import Path

import pytest

from erp_chatbot.chains.language import detect_language
from erp_chatbot.knowledge.loaders import DocumentLoadError, iter_files, load_file
from erp_chatbot.knowledge.splitting import chunk_id, path_words, split_documents
from tests.conftest import SAMPLE_KNOWLEDGE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("재고 이동은 어디서 확인하나요?", "ko"),
        ("How do I approve a vendor bill?", "en"),
        ("PO 승인은 누가 하나요?", "ko"),
        ("Vendor Bill 승인 메뉴", "ko"),
        ("Where is Inventory > Reporting > Stock Moves in the 재고 app?", "en"),
    ],
)
def test_detect_language(text, expected):
    assert detect_language(text) == expected


def test_detect_language_without_letters_uses_default():
    assert detect_language("12345 ???", default="ko") == "ko"


def test_sample_knowledge_loads_with_titles_and_roles():
    files = iter_files(SAMPLE_KNOWLEDGE)
    assert len(files) >= 12
    docs = [d for f in files for d in load_file(f, SAMPLE_KNOWLEDGE)]
    by_source = {d.metadata["source"]: d for d in docs}
    vendor = by_source["purchasing/vendor-bill-approval.ko.md"]
    assert vendor.metadata["title"] == "공급업체 청구서 승인"
    assert vendor.metadata["roles"] == ["finance", "purchasing"]
    assert not vendor.page_content.startswith("---")
    assert {d.metadata["source"].split(".")[-2] for d in docs} == {"ko", "en"}


def test_chunks_carry_title_and_section_and_respect_size():
    files = iter_files(SAMPLE_KNOWLEDGE)
    docs = [d for f in files for d in load_file(f, SAMPLE_KNOWLEDGE)]
    chunks = split_documents(docs, chunk_size=300, chunk_overlap=50)
    vendor = [c for c in chunks if c.metadata["source"] == "purchasing/vendor-bill-approval.ko.md"]
    who = next(c for c in vendor if c.metadata["section"] == "승인 권한자")
    assert who.page_content.startswith("공급업체 청구서 승인 > 승인 권한자\n")
    assert "재무 관리자" in who.page_content
    heading_len = len("공급업체 청구서 승인 > ") + 40
    longer = [c for c in chunks if len(c.page_content) > 300 + heading_len]
    assert all(c.page_content.split("\n")[1].startswith("1. ") for c in longer)  # a numbered list stays whole
    assert len(longer) < len(chunks) / 4
    assert len({c.metadata["chunk_id"] for c in chunks}) == len(chunks)


def test_long_korean_text_splits_at_sentence_ends(tmp_path: Path):
    sentence = "구매 주문서는 구매 본부장이 승인합니다. "
    (tmp_path / "long.md").write_text("# 긴 문서\n\n" + sentence * 40, encoding="utf-8")
    docs = load_file(tmp_path / "long.md", tmp_path)
    chunks = split_documents(docs, chunk_size=200, chunk_overlap=0)
    assert len(chunks) > 3
    assert all(c.page_content.rstrip().endswith("승인합니다.") for c in chunks)


def test_chunk_ids_are_stable_and_content_dependent():
    assert chunk_id("a.md", 0, "x") == chunk_id("a.md", 0, "x")
    assert chunk_id("a.md", 0, "x") != chunk_id("a.md", 0, "y")
    assert chunk_id("a.md", 0, "x") != chunk_id("b.md", 0, "x")


def test_html_text_and_pdf_are_read(tmp_path: Path):
    (tmp_path / "page.html").write_text(
        "<html><head><title>Stock</title><script>var x=1;</script></head>"
        "<body><h1>Stock</h1><p>Open Inventory &gt; Reporting.</p></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "note.txt").write_text("Plain note about invoices.", encoding="utf-8")
    (tmp_path / "manual.pdf").write_bytes(_one_page_pdf("Approve bills in Accounting"))
    (tmp_path / ".hidden.md").write_text("# hidden", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    files = iter_files(tmp_path)
    assert [f.name for f in files] == ["manual.pdf", "note.txt", "page.html"]
    html = load_file(tmp_path / "page.html", tmp_path)[0]
    assert html.metadata["title"] == "Stock" and "Inventory > Reporting." in html.page_content
    assert "var x" not in html.page_content
    pdf = load_file(tmp_path / "manual.pdf", tmp_path)
    assert pdf[0].metadata["page"] == 1 and "Approve bills in Accounting" in pdf[0].page_content
    assert load_file(tmp_path / "note.txt", tmp_path)[0].metadata["title"] == "Note"


def test_unreadable_files_fail_with_the_file_name(tmp_path: Path):
    (tmp_path / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DocumentLoadError, match=r"latin1\.md: not UTF-8"):
        load_file(tmp_path / "latin1.md", tmp_path)
    (tmp_path / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody", encoding="utf-8")
    with pytest.raises(DocumentLoadError, match="front matter"):
        load_file(tmp_path / "broken.md", tmp_path)
    with pytest.raises(DocumentLoadError, match="not a folder"):
        iter_files(tmp_path / "missing")


def _one_page_pdf(text: str) -> bytes:
    """A minimal valid PDF with one line of text (built by hand: no PDF writer is a dependency)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_plain_text_pages_take_their_underlined_heading_as_title(tmp_path: Path):
    (tmp_path / "finance__credit_notes.txt").write_text(
        "Credit Notes and Refunds\n************************\n\nA credit note is a document...\n"
    )
    (tmp_path / "misc__notes.txt").write_text("just a line\nand another\n")
    titles = {d.metadata["source"]: d.metadata["title"] for f in iter_files(tmp_path) for d in load_file(f, tmp_path)}
    assert titles == {"finance__credit_notes.txt": "Credit Notes and Refunds", "misc__notes.txt": "Misc  notes"}


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("applications__finance__accounting__credit_notes.txt", "applications finance accounting credit notes"),
        ("purchasing/vendor-bill-approval.ko.md", "purchasing vendor bill approval"),
        ("hr/leave.en.md", "hr leave"),
        ("", ""),
    ],
)
def test_path_words_say_where_a_page_sits(source, words):
    assert path_words(source) == words
