"""Sections as the unit: splitting by headings, whole sections from chunks, the extracted answer."""

from langchain_core.documents import Document

from erp_chatbot.chains.passages import body_of, faithful_answer, whole_sections
from erp_chatbot.knowledge.splitting import sections, split_documents

MANUAL = """Purchase Receipts
*****************

Receipts are not invoices.

Register a receipt
==================

To record a new receipt, go to Accounting ‣ Vendors ‣ Receipts.

Steps
-----

1. Click on *Create*.

2. Fill out the form.

   Note: the amount is required.

3. Click on *Post*.

Edit the entry
==============

Open the **Journal Items** tab.
"""


def test_underlined_and_markdown_headings_give_each_section_its_path():
    assert sections(MANUAL, "Purchase Receipts") == [
        ((), "Receipts are not invoices."),
        (("Register a receipt",), "To record a new receipt, go to Accounting ‣ Vendors ‣ Receipts."),
        (("Register a receipt", "Steps"), MANUAL.split("-----\n\n")[1].split("\n\nEdit")[0]),
        (("Edit the entry",), "Open the **Journal Items** tab."),
    ]
    markdown = "# Page\n\nIntro.\n\n## Approval\nOver 2,000만 원.\n\n### Who\nThe director."
    assert sections(markdown, "Page") == [
        ((), "Intro."),
        (("Approval",), "Over 2,000만 원."),
        (("Approval", "Who"), "The director."),
    ]


def test_a_long_section_splits_between_paragraphs_never_inside_a_numbered_list():
    page = Document(MANUAL, metadata={"source": "r.txt", "title": "Purchase Receipts"})
    chunks = split_documents([page], chunk_size=60, chunk_overlap=0)
    steps = [c for c in chunks if c.metadata["section"] == "Register a receipt / Steps"]
    assert len(steps) == 1 and "1. Click" in steps[0].page_content and "3. Click on *Post*." in steps[0].page_content
    assert steps[0].page_content.startswith("Purchase Receipts > Register a receipt / Steps\n")


def test_whole_sections_rejoin_a_sections_chunks_in_rank_order():
    text = "# P\n\n## A\n" + "\n\n".join(f"Paragraph {i} of section A is here." for i in range(6)) + "\n\n## B\nOnly B."
    chunks = split_documents([Document(text, metadata={"source": "p.md", "title": "P"})], 80, 0)
    by_section = {}
    for chunk in chunks:
        by_section.setdefault(chunk.metadata["section"], []).append(chunk)
    ranked = [by_section["B"][0], by_section["A"][2], by_section["A"][0]]
    joined = whole_sections(ranked, lambda c: by_section[c.metadata["section"]])
    assert [d.metadata["section"] for d in joined] == ["B", "A"]
    assert all(f"Paragraph {i} of" in joined[1].page_content for i in range(6))
    assert whole_sections(ranked, None) == ranked


def test_the_extracted_answer_is_a_lead_then_the_section_in_whole_blocks():
    page = Document(MANUAL, metadata={"source": "r.txt", "title": "Purchase Receipts"})
    sections = split_documents([page], 800, 0)
    steps = next(c for c in sections if c.metadata["section"].endswith("Steps"))
    answer = faithful_answer([steps], "ko", 1200)
    assert answer.text.startswith(
        "문서의 *Purchase Receipts* — *Register a receipt / Steps* 부분에 나와 있습니다:\n\n1. Click"
    )
    assert answer.text.endswith("3. Click on *Post*.") and answer.sections == [steps]
    assert body_of(steps, 30).endswith("1. Click on *Create*.\n\n…")  # whole blocks, then a mark


def test_a_second_section_follows_under_its_own_lead_while_there_is_room():
    page = Document(MANUAL, metadata={"source": "r.txt", "title": "Purchase Receipts"})
    register, steps, edit = split_documents([page], 800, 0)[1:]
    both = faithful_answer([register, edit, steps], "en", 1200)
    assert both.sections == [register, edit]  # two at most
    assert "\n\nSee also *Purchase Receipts* — *Edit the entry*:\n\nOpen the **Journal Items** tab." in both.text
    assert faithful_answer([steps, edit], "en", 150).sections == [steps]  # no room left for another
    assert faithful_answer([register, edit], "en", 1200, count=1).sections == [register]
