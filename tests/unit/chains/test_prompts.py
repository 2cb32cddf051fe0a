"""Prompt assembly: how much retrieved text a prompt holds, and the few-shot shape per language."""

from langchain_core.documents import Document

from erp_chatbot.chains.prompts import COVERAGE, NOT_COVERED, answer_prompt, fit_context, format_context
from erp_chatbot.knowledge.splitting import split_documents


def words(text: str) -> int:
    return len(text.split())


def chunk(n: int, sentences: int) -> Document:
    body = " ".join(f"Sentence {i} of chunk {n} has eight words here." for i in range(sentences))
    return Document(body, id=f"c{n}", metadata={"source": f"p{n}.md"})


def test_best_chunks_are_kept_whole_and_the_next_is_cut_at_a_sentence_end():
    docs = [chunk(1, 10), chunk(2, 10), chunk(3, 10)]  # 90 words each
    kept = fit_context(docs, budget=240, count_tokens=words)
    assert [d.id for d in kept] == ["c1", "c2", "c3"]
    assert kept[:2] == docs[:2]
    assert kept[2].page_content.endswith("here. …") and 30 <= words(kept[2].page_content) <= 61
    assert sum(words(d.page_content) for d in kept) <= 241


def test_a_remainder_too_small_to_say_anything_is_dropped_and_none_keeps_all():
    docs = [chunk(1, 10), chunk(2, 10)]
    assert fit_context(docs, budget=100, count_tokens=words) == docs[:1]
    assert fit_context(docs, budget=None, count_tokens=words) == docs
    assert fit_context([], budget=100, count_tokens=words) == []


def test_an_oversized_first_chunk_is_still_given_in_part():
    kept = fit_context([chunk(1, 50)], budget=60, count_tokens=words)
    assert len(kept) == 1 and 0 < words(kept[0].page_content) <= 61


def test_korean_prompts_show_a_worked_answer_and_both_name_the_exact_decline():
    english = answer_prompt("en").format_messages(context="CTX", question="Q?")
    korean = answer_prompt("ko").format_messages(context="CTX", question="Q?")
    assert [m.type for m in english] == ["system", "human"]
    assert [m.type for m in korean] == ["system", "human", "ai", "human"]
    assert "**Starport ‣ Cargo Pods ‣ Ready**" in korean[2].content  # English names kept
    assert NOT_COVERED["ko"] in korean[-1].content  # the question's turn names the decline too
    assert NOT_COVERED["ko"] in korean[-1].content  # the question's turn names the decline too
    for language, messages in (("en", english), ("ko", korean)):
        assert NOT_COVERED[language] in messages[0].content
        assert "CTX" in messages[-1].content and "Q?" in messages[-1].content


def test_the_translation_prompt_shows_worked_translations_and_asks_for_the_target():
    from erp_chatbot.chains.prompts import TRANSLATE

    messages = TRANSLATE.format_messages(question="재고 이동은 어디서 확인하나요?", target="English")
    assert [m.type for m in messages] == ["system", "human", "ai", "human", "ai", "human"]
    assert "user manual" in messages[0].content  # the manual's words, which retrieval searches
    assert messages[-1].content.startswith("Translate this question into English.")
    assert messages[-1].content.endswith("Question: 재고 이동은 어디서 확인하나요?")


def test_every_coverage_question_shares_the_answer_prompt_up_to_the_question():
    """llama.cpp then reuses the check's evaluated prefix (system, example, chunks) for the answer."""
    for language in ("en", "ko"):
        answer = answer_prompt(language).format_messages(context="CTX", question="Q?")
        for kind, prompt in COVERAGE.items():
            check = prompt[language].format_messages(context="CTX", question="Q?", translation="")
            assert [m.content for m in check[:-1]] == [m.content for m in answer[:-1]], kind
            asked = check[-1].content
            assert asked.startswith(answer[-1].content.split("Q?")[0] + "Q?") and asked.endswith("yes or no only.")
    assert "software manual" in COVERAGE["manual"]["ko"].messages[-1].prompt.template


def test_chunk_headings_read_as_title_and_section_not_as_a_menu_path():
    page = Document(
        "# 재고 이동 확인\n\n개요입니다.\n\n## 확인하는 메뉴\n**재고 > 보고 > 재고 이동** 메뉴를 엽니다.",
        metadata={"source": "inventory/stock-moves.ko.md", "title": "재고 이동 확인"},
    )
    chunks = split_documents([page], chunk_size=800, chunk_overlap=0)
    assert chunks[1].page_content.startswith("재고 이동 확인 > 확인하는 메뉴\n")  # what retrieval reads
    context = format_context(chunks)
    assert '<document index="2" title="재고 이동 확인">\n재고 이동 확인: 확인하는 메뉴\n**재고 > 보고' in context
    assert "재고 이동 확인 > 확인하는 메뉴" not in context  # headings never look like a menu path
    plain = Document("Open Sales > Orders.", metadata={"title": "Orders", "section": "Menus"})
    assert "\nOpen Sales > Orders.\n" in format_context([plain])  # no heading line: the text stays whole
    no_section = Document("Orders\nOpen Sales > Orders.", metadata={"title": "Orders", "section": ""})
    assert '<document index="1" title="Orders">\nOrders\nOpen' in format_context([no_section])  # a bare title


def test_the_translation_prompt_ends_with_the_glossary_hint_only_when_given_one():
    from erp_chatbot.chains.prompts import TRANSLATE

    plain = TRANSLATE.format_messages(question="Q?", target="English")
    hinted = TRANSLATE.format_messages(question="Q?", target="English", terms="\nGlossary: 발주 = purchase order")
    assert plain[-1].content.endswith("Question: Q?")
    assert hinted[-1].content.endswith("Question: Q?\nGlossary: 발주 = purchase order")
