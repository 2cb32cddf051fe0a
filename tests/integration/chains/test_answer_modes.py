"""Answer modes against the real parts: e5, FAISS over the sample knowledge, Redis; the tiny GPT-2
where only plumbing matters, the bundled Qwen (demo profile) where the answer's content does."""

from __future__ import annotations

import json
import shutil

import pytest

from erp_chatbot import ERPChatbot
from erp_chatbot.chains.grounding import check_grounding
from erp_chatbot.chains.passages import LEAD
from erp_chatbot.evaluation import answer_language
from erp_chatbot.settings import Settings
from tests.conftest import REDIS_URL, REPO, SIGNING_KEY, tiny_settings
from tests.integration.chains.test_chain import LLMCalls, config

pytestmark = pytest.mark.slow  # models in subprocesses or the bundled Qwen: minutes (pytest -m "not slow" skips it)

SAMPLE_HOWTO = [json.loads(line) for line in (REPO / "bench" / "datasets" / "sample-howto.jsonl").open()]


@pytest.fixture(scope="module")
def extracting(tmp_path_factory, tiny_lm_dir, e5_dir, sample_index_dir):
    settings = tiny_settings(
        tmp_path_factory.mktemp("home"), tiny_lm_dir, e5_dir, sample_index_dir, answer={"mode": "extract"}
    )
    return ERPChatbot.from_settings(settings)


def test_extract_answers_from_the_right_section_in_its_own_words_without_the_llm(extracting, session_id):
    calls = LLMCalls()
    out = extracting.as_runnable().invoke({"question": "구매 주문 승인은 누가 하나요?"}, config(session_id, calls))
    assert calls.prompts == []
    assert out["answer"].startswith(LEAD["ko"].format(heading="*구매 주문서 작성과 확정* — *주문 승인*"))
    assert "**구매 본부장**" in out["answer"] and "2,000만 원" in out["answer"]  # the section, as written
    assert out["sources"][0]["source"] == "purchasing/purchase-orders.ko.md"  # then the next section's page
    assert len(out["sources"]) == len(set(s["source"] for s in out["sources"])) <= 2
    assert out["grounding"]["supported"] and out["support"] is None  # no coverage check configured


def test_a_whole_section_split_into_chunks_is_shown_whole(tmp_path, tiny_lm_dir, e5_dir, embeddings, session_id):
    from tests.conftest import SAMPLE_KNOWLEDGE, ingest_folder

    index_dir = tmp_path / "small-chunks"
    ingest_folder(SAMPLE_KNOWLEDGE, index_dir, embeddings, chunk_size=120)
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, index_dir, answer={"mode": "extract"})
    answer = ERPChatbot.from_settings(settings).ask("How do I approve a vendor bill?", session_id=session_id)
    steps = ["1. Open the bill", "2. Check that the bill", "3. Click **Approve**"]
    assert all(step in answer.text for step in steps), answer.text  # one list, never cut


def test_a_generated_answer_never_shows_a_name_no_section_holds(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir):
    # The random GPT-2 writes sample-knowledge words at random: whatever it writes, what is shown
    # before the documents' own words names nothing that the sections do not hold.
    bot = ERPChatbot.from_settings(tiny_settings(tmp_path, tiny_lm_dir, e5_dir, sample_index_dir))
    for question in ["How do I approve a vendor bill?", "재고 실사는 어떻게 하나요?", "How do I count stock?"]:
        answer = bot.ask(question)
        assert answer.unsupported == [] and answer.text, answer
        if answer.removed:
            assert LEAD[answer.language].split("{")[0] in answer.text  # the faithful answer instead


@pytest.fixture(scope="module")
def demo_bot(models_dir, sample_index_dir):
    """The demo profile as shipped, over the bundled sample knowledge."""
    profile = REPO / "erp_chatbot" / "profiles" / "demo.yaml"
    settings = Settings.from_yaml(
        profile,
        home=models_dir.parent,
        knowledge={"index_dir": sample_index_dir, "signing_key": SIGNING_KEY},
        memory={"redis_url": REDIS_URL},
        cache={"enabled": False},
    )
    return ERPChatbot.from_settings(settings)


@pytest.mark.demo_llm
def test_the_approval_follow_up_becomes_one_korean_question_answered_from_its_section(demo_bot, session_id):
    first = demo_bot.ask("구매 주문 승인은 어떻게 하나요?", session_id=session_id)
    assert "구매 본부장" in first.text, first.text
    follow_up = demo_bot.ask("그럼 승인은 누가 해?", session_id=session_id)
    standalone = follow_up.standalone_question
    assert standalone.count("?") == 1 and "그럼" not in standalone, standalone  # one question, not two glued
    assert "구매" in standalone and "승인" in standalone and follow_up.language == "ko", standalone
    assert "구매 본부장" in follow_up.text, follow_up.text


@pytest.mark.demo_llm
@pytest.mark.parametrize("case", SAMPLE_HOWTO, ids=[case["id"] for case in SAMPLE_HOWTO])
def test_sample_how_to_questions_are_answered_from_the_right_section(demo_bot, case):
    answer = demo_bot.ask(case["question"])
    assert any(path.split(" > ")[-1] in answer.text for path in case["menu_paths"]), answer.text
    assert answer.covered and not check_grounding(answer.text, []).declined


@pytest.mark.demo_llm
def test_a_korean_question_over_english_pages_gets_the_section_in_korean_with_its_names_kept(
    tmp_path, models_dir, embeddings, session_id
):
    from tests.conftest import SAMPLE_KNOWLEDGE, ingest_folder

    english = tmp_path / "english"
    for page in SAMPLE_KNOWLEDGE.rglob("*.en.md"):
        (english / page.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(page, english / page.parent.name / page.name)
    ingest_folder(english, tmp_path / "index", embeddings)
    settings = Settings.from_yaml(
        REPO / "erp_chatbot" / "profiles" / "demo.yaml",
        home=models_dir.parent,
        knowledge={"index_dir": tmp_path / "index", "signing_key": SIGNING_KEY},
        memory={"redis_url": REDIS_URL},
        cache={"enabled": False},
        answer={"mode": "extract", "passage_language": "question"},
        llm={"temperature": 0.0},  # greedy: the same translation on every run
    )
    answer = ERPChatbot.from_settings(settings).ask("공급업체 청구서는 어떻게 승인하나요?", session_id=session_id)
    lead = LEAD["ko"].format(heading="*Approving vendor bills* — *How to approve a vendor bill*")
    assert answer.text.startswith(lead + "\n\n") and answer.text.count(lead) == 1, answer.text
    assert answer.unsupported == [] and "**Approve**" in answer.text, answer.text  # names only as the page writes them
    translated = answer.text.split("\n\n")[1]
    if answer.removed:  # the 1.5B may translate a menu path: the section as written follows
        assert translated.startswith("1. Open the bill from **Accounting > Vendors > Bills**"), answer.text
    else:
        assert answer_language(translated) == "ko", answer.text
