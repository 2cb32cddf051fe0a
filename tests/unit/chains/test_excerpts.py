"""Which passage a grounding note quotes: the best page's menu path that fits the question."""

from langchain_core.documents import Document

from erp_chatbot.chains.excerpts import best_excerpt, sentences
from erp_chatbot.knowledge.splitting import split_documents

# An invented manual page in the shape of the Odoo pages (title, reStructuredText underlines): the
# introduction comes first, the menu paths further down.
PAYING = """Decide when supplier bills are paid
***********************************

Each purchase can be paid before or after its goods arrive. This page explains the choice and what
the buyer sees on every order.

Default policy
==============

Open the Purchase app and go to Configuration ‣ Settings to choose the default policy for new
products.

Choose *On received quantities* to pay only for the goods that arrived: the draft bill then holds
the received quantities.

Per product
-----------

To change one product's policy, go to Products ‣ Products and open the Purchase tab.
"""


def page_chunks(text: str, title: str, source: str, size: int = 260) -> list[Document]:
    return split_documents([Document(text, metadata={"title": title, "source": source})], size, 0)


def test_the_quote_skips_the_introduction_for_the_page_s_menu_path_that_fits_the_question():
    chunks = page_chunks(PAYING, "Decide when supplier bills are paid", "purchase/bills.txt")
    assert len(chunks) >= 2 and "‣" not in chunks[0].page_content  # the best chunk holds no menu path
    other = Document("Other\nGo to Sales ‣ Orders to pay bills of received goods.", metadata={"source": "sales.txt"})
    excerpt = best_excerpt([chunks[0], other, *chunks[1:]], "How do I pay suppliers only for received goods?")
    assert excerpt.title == "Decide when supplier bills are paid"
    assert "Sales ‣ Orders" not in excerpt.text  # another page, however well it matches
    # the next chunk, without its heading ("Default policy")
    assert excerpt.text.startswith("Open the Purchase app and go to Configuration ‣ Settings")
    assert "*On received quantities*" in excerpt.text
    assert "***" not in excerpt.text and "===" not in excerpt.text


def test_among_menu_paths_the_question_s_terms_decide_and_a_korean_question_uses_its_translation():
    chunks = page_chunks(PAYING, "Decide when supplier bills are paid", "purchase/bills.txt", size=2000)
    assert [c.metadata["section"] for c in chunks] == ["", "Default policy", "Default policy / Per product"]
    product = best_excerpt(chunks, "Where do I change the policy of one product?", chars=120)
    assert product.text == "To change one product's policy, go to Products ‣ Products and open the Purchase tab."
    korean = "제품 하나의 정책은 어디서 바꾸나요? Where do I change one product's policy?"
    assert best_excerpt(chunks, korean, chars=120) == product
    assert "Configuration ‣ Settings" in best_excerpt(chunks, "What is the default policy?", chars=120).text


def test_without_a_menu_path_the_best_matching_sentences_are_quoted_and_a_long_one_is_cut():
    page = Document(
        "Notes\nThe warehouse closes at six. Returns are counted every Friday.", metadata={"title": "Notes"}
    )
    assert sentences(page) == ["The warehouse closes at six.", "Returns are counted every Friday."]  # no title line
    assert best_excerpt([page], "When are returns counted?", chars=40).text == "…Returns are counted every Friday."
    assert best_excerpt([page], "").text == "The warehouse closes at six. Returns are counted every Friday."
    assert best_excerpt([page], "", chars=20).text == "The warehouse closes…"
