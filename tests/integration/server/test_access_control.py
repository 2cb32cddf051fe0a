"""Document access control and API keys, end to end: real e5, FAISS, Redis and the app over HTTP.

The finance page is the best match for the question asked; callers without the finance role must
never see it: not as a source, not in a prompt, not through the response cache.
"""

import json
import uuid

import httpx
import numpy as np
import pytest

from erp_chatbot import ERPChatbot
from erp_chatbot.knowledge import index as index_store
from erp_chatbot.retrievers.erp import ERPRetriever
from erp_chatbot.server.app import create_app
from erp_chatbot.server.auth import APIKeys
from erp_chatbot.server.background import running_server
from tests.conftest import ingest_folder, tiny_settings

SECRET = "ZX-SALARY-7731"
QUESTION = "How do I approve a vendor bill above 10,000 USD?"
PAGES = {
    "finance/approval-limits.md": (
        "---\nroles: [finance]\n---\n# Vendor bill approval limits\n"
        f"Vendor bills above 10,000 USD need the CFO's approval (policy {SECRET}). To approve a vendor bill, "
        "open Accounting > Vendors > Bills, select the bill and click Approve."
    ),
    "purchasing/vendor-bills.md": (
        "# Vendor bills\nA vendor bill is created from a purchase order with Create Bill, "
        "then validated in Accounting > Vendors > Bills."
    ),
    "inventory/stock-moves.md": (
        "---\nroles: [warehouse]\n---\n# Stock moves\n"
        "Every product movement is listed in Inventory > Reporting > Stock Moves."
    ),
    "hr/leave.md": "# Leave requests\nEmployees request time off in Time Off > My Time Off > New.",
    "sales/quotations.md": (
        "---\nroles: [sales, finance]\n---\n# Quotations\n"
        "A quotation becomes a sales order with Confirm in Sales > Orders."
    ),
}


@pytest.fixture(scope="module")
def access_index_dir(tmp_path_factory, embeddings):
    docs = tmp_path_factory.mktemp("access-docs")
    for name, text in PAGES.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    index_dir = tmp_path_factory.mktemp("access-index")
    ingest_folder(docs, index_dir, embeddings)
    return index_dir


@pytest.fixture(scope="module")
def access_index(access_index_dir, embeddings):
    return index_store.load(access_index_dir, embeddings)


def brute_force_top(index, embeddings, query: str, roles: list[str], k: int) -> list[str]:
    """The k best readable chunks by exact cosine, computed without FAISS."""
    from erp_chatbot.knowledge.access import may_read

    docs = list(index.store.docstore._dict.values())
    readable = [d for d in docs if may_read(roles, d.metadata["roles"])]
    vectors = np.asarray(embeddings.embed_documents([d.page_content for d in readable]))
    scores = vectors @ np.asarray(embeddings.embed_query(query))
    return [readable[i].metadata["chunk_id"] for i in np.argsort(-scores)[:k]]


@pytest.mark.parametrize("roles", [["warehouse"], [], ["sales"], ["finance"], ["*"]])
def test_retrieval_returns_the_best_k_the_caller_may_read(access_index, embeddings, roles):
    dense = ERPRetriever(index=access_index, embeddings=embeddings, k=3, score_threshold=-1.0, mode="dense")
    found = dense.invoke(QUESTION, roles=roles)
    assert [d.metadata["chunk_id"] for d in found] == brute_force_top(access_index, embeddings, QUESTION, roles, 3)
    for mode in ("dense", "sparse", "hybrid"):
        retriever = ERPRetriever(index=access_index, embeddings=embeddings, k=3, score_threshold=-1.0, mode=mode)
        sources = [d.metadata["source"] for d in retriever.invoke(QUESTION, roles=roles)]
        assert ("finance/approval-limits.md" in sources) == bool({"finance", "*"} & set(roles)), (mode, sources)
        if "finance" in roles:
            assert sources[0] == "finance/approval-limits.md"  # it is the best match when it may be seen


def test_unknown_roles_see_public_pages_only(access_index, embeddings):
    retriever = ERPRetriever(index=access_index, embeddings=embeddings, k=10, score_threshold=-1.0)
    found = retriever.invoke(QUESTION, roles=["nobody"])
    assert {d.metadata["source"] for d in found} == {"purchasing/vendor-bills.md", "hr/leave.md"}


def test_library_default_roles_come_from_settings(tmp_path, tiny_lm_dir, e5_dir, access_index_dir):
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, access_index_dir, access={"default_roles": []})
    bot = ERPChatbot.from_settings(settings)
    assert "finance/approval-limits.md" not in [s.source for s in bot.ask(QUESTION).sources]
    assert bot.ask(QUESTION, roles=["finance"]).sources[0].source == "finance/approval-limits.md"
    with pytest.raises(TypeError, match="list of role names"):
        bot.ask(QUESTION, roles="finance")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, tiny_lm_dir, e5_dir, access_index_dir):
    home = tmp_path_factory.mktemp("home")
    keys = APIKeys(home / "keys.yaml")
    users = {"alice": keys.add("alice", ["finance"]), "bob": keys.add("bob", ["warehouse"])}
    settings = tiny_settings(
        home,
        tiny_lm_dir,
        e5_dir,
        access_index_dir,
        access={"api_keys_file": home / "keys.yaml", "default_roles": ["*"]},
        cache={"enabled": True, "redis_prefix": f"test-access-{uuid.uuid4().hex[:8]}:"},
    )
    with running_server(create_app(ERPChatbot.from_settings(settings))) as url:
        yield url, users


def ask(url: str, key: str | None, session_id: str, question: str = QUESTION, endpoint: str = "invoke", **config):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = {"input": {"question": question}, "config": {"configurable": {"session_id": session_id, **config}}}
    return httpx.post(f"{url}/erp/{endpoint}", json=payload, headers=headers, timeout=120)


def test_requests_without_a_valid_key_are_refused(keyed_server):
    url, _ = keyed_server
    assert ask(url, None, "s-1").status_code == 401
    assert ask(url, "erp_not-a-key", "s-1").status_code == 401
    assert "API key" in ask(url, None, "s-1").json()["detail"]
    assert httpx.get(f"{url}/health").status_code == 200  # probes need no key


def test_the_chat_page_loads_without_a_key_but_its_questions_need_one(keyed_server):
    url, users = keyed_server
    assert httpx.get(f"{url}/chat/").status_code == 200  # a browser cannot send a key when it opens a page
    assert httpx.get(f"{url}/chat/chat.js").status_code == 200
    for path in ("/chat/other", "/chat", "/chat/../erp/playground/"):
        assert httpx.get(f"{url}{path}").status_code == 401, path  # those two paths exactly, nothing under them
    session, question = f"chat-{uuid.uuid4().hex}", "Where do I see stock moves?"  # not the cached QUESTION
    assert ask(url, None, session, question, endpoint="stream").status_code == 401
    assert ask(url, users["bob"], session, question, endpoint="stream").status_code == 200


def test_a_user_without_finance_never_receives_finance_text(keyed_server, redis_client):
    url, users = keyed_server
    alice = ask(url, users["alice"], f"a-{uuid.uuid4().hex}")
    assert alice.status_code == 200, alice.text
    assert alice.json()["output"]["sources"][0]["source"] == "finance/approval-limits.md"
    again = ask(url, users["alice"], f"a-{uuid.uuid4().hex}").json()["output"]
    assert again["cached"], "alice's second ask is a cache hit, so the cache holds the finance answer"

    bob_session = f"b-{uuid.uuid4().hex}"
    bob = ask(url, users["bob"], bob_session, roles=["finance", "*"])  # roles sent by the client are ignored
    assert bob.status_code == 200, bob.text
    output = bob.json()["output"]
    assert "finance/approval-limits.md" not in [s["source"] for s in output["sources"]]
    assert not output["cached"] and output["answer"] != again["answer"]
    events = ask(url, users["bob"], bob_session, endpoint="stream_events")
    assert events.status_code == 200 and "on_chat_model_start" in events.text  # the prompt is in the events
    assert SECRET not in events.text and "approval-limits" not in events.text
    assert SECRET not in str(redis_client.lrange(f"context:{bob_session}", 0, -1))


def test_roles_in_a_config_url_are_ignored_too(keyed_server):
    """The playground's /erp/c/{config}/... routes pass through the same binding of the caller."""
    from langserve.lzstring import LZString

    url, users = keyed_server
    config = {"configurable": {"session_id": f"c-{uuid.uuid4().hex}", "roles": ["finance", "*"]}}
    packed = LZString.compressToEncodedURIComponent(json.dumps(config))
    headers = {"Authorization": f"Bearer {users['bob']}"}
    reply = httpx.post(
        f"{url}/erp/c/{packed}/invoke", json={"input": {"question": QUESTION}}, headers=headers, timeout=120
    )
    assert reply.status_code == 200, reply.text
    assert "finance/approval-limits.md" not in [s["source"] for s in reply.json()["output"]["sources"]]
    bad = LZString.compressToEncodedURIComponent(json.dumps({"configurable": {"session_id": "no spaces"}}))
    refused = httpx.post(
        f"{url}/erp/c/{bad}/invoke", json={"input": {"question": QUESTION}}, headers=headers, timeout=30
    )
    assert refused.status_code == 422


def test_the_chat_view_answers_with_the_callers_roles_and_sessions(keyed_server):
    """The chat route needs a key, reads only what the key's roles allow (roles sent are ignored),
    and cannot continue another user's session."""
    url, users = keyed_server
    chat = {"input": {"messages": [{"type": "human", "content": QUESTION}]}}

    def post(key: str | None, **config) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        payload = {**chat, "config": {"configurable": config}} if config else chat
        return httpx.post(f"{url}/erp/chat/invoke", json=payload, headers=headers, timeout=120)

    assert post(None).status_code == 401
    alice = post(users["alice"])
    assert alice.status_code == 200 and "(finance/approval-limits.md)" in alice.json()["output"]
    bob = post(users["bob"], roles=["finance", "*"])
    assert bob.status_code == 200 and "approval-limits" not in bob.json()["output"] and SECRET not in bob.text
    session = f"chat-owned-{uuid.uuid4().hex}"
    assert post(users["alice"], session_id=session).status_code == 200
    assert post(users["bob"], session_id=session).status_code == 403


def test_a_session_belongs_to_the_user_who_started_it(keyed_server, redis_client):
    url, users = keyed_server
    session = f"owned-{uuid.uuid4().hex}"
    assert ask(url, users["alice"], session).status_code == 200
    before = redis_client.lrange(f"context:{session}", 0, -1)
    refused = ask(url, users["bob"], session, question="What did I ask before?")
    assert refused.status_code == 403 and "another user" in refused.json()["detail"]
    assert redis_client.lrange(f"context:{session}", 0, -1) == before
    assert ask(url, users["alice"], session, question="And after that?").status_code == 200
    assert len(redis_client.lrange(f"context:{session}", 0, -1)) == 4
    redis_client.delete(f"context:{session}", f"session-owner:{session}")


def test_listening_beyond_loopback_needs_keys(tmp_path, tiny_lm_dir, e5_dir, access_index_dir):
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, access_index_dir, server={"host": "0.0.0.0"})
    with pytest.raises(ValueError, match="erp-chatbot keys add"):
        create_app(settings=settings)


def test_access_file_labels_files_and_relabelling_reindexes_them(tmp_path, embeddings):
    docs = tmp_path / "docs"
    (docs / "finance").mkdir(parents=True)
    (docs / "finance" / "budget.txt").write_text("Budgets are approved in Accounting > Budgets.", encoding="utf-8")
    (docs / "finance" / "own.md").write_text("---\nroles: hr\n---\n# Own\nFront matter wins.", encoding="utf-8")
    (docs / "public.md").write_text("# Public\nEveryone reads this.", encoding="utf-8")
    (docs / ".access.yaml").write_text("'finance/**': [finance]\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    ingest_folder(docs, index_dir, embeddings)

    def labels() -> dict[str, list[str]]:
        store = index_store.load(index_dir, embeddings).store
        return {d.metadata["source"]: d.metadata["roles"] for d in store.docstore._dict.values()}

    assert labels() == {"finance/budget.txt": ["finance"], "finance/own.md": ["hr"], "public.md": []}
    (docs / ".access.yaml").write_text("'finance/**': [finance, management]\n", encoding="utf-8")
    report = ingest_folder(docs, index_dir, embeddings)
    assert report.updated == ["finance/budget.txt", "finance/own.md"] and report.added == []
    assert labels()["finance/budget.txt"] == ["finance", "management"] and labels()["finance/own.md"] == ["hr"]


def test_an_index_without_access_labels_must_be_rebuilt(tmp_path, access_index_dir, embeddings):
    import json
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(access_index_dir, copy, symlinks=True)
    manifest_path = index_store.current_path(copy).resolve() / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(index_store.KnowledgeIndexError, match="rebuild it with: erp-chatbot ingest"):
        index_store.load(copy, embeddings)


@pytest.mark.parametrize("endpoint", ["invoke", "stream", "stream_log", "batch"])
def test_a_refused_request_writes_nothing_and_claims_no_session(keyed_server, redis_client, endpoint):
    # #31: a 422 still wrote session-owner:<id>, so any key holder could lock others out of chosen
    # session ids, and 403-versus-422 told whether an id was in use.
    url, users = keyed_server
    session = f"refused-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {users['bob']}"}
    config = {"configurable": {"session_id": session}}
    bad = {"question": ""}
    payload = {"inputs": [bad], "config": config} if endpoint == "batch" else {"input": bad, "config": config}
    refused = httpx.post(f"{url}/erp/{endpoint}", json=payload, headers=headers, timeout=30)
    assert refused.status_code == 422, refused.text
    assert not redis_client.exists(f"session-owner:{session}", f"context:{session}")
    assert ask(url, users["alice"], session).status_code == 200  # the id is still free for anyone
    redis_client.delete(f"context:{session}", f"session-owner:{session}")


def test_keys_in_a_query_string_are_refused_and_never_logged(keyed_server, tmp_path, tiny_lm_dir, e5_dir):
    # #31: a key sent as ?api_key=... was refused, but uvicorn's access log wrote it in full.
    import logging

    url, users = keyed_server
    assert httpx.get(f"{url}/erp/input_schema?api_key={users['alice']}").status_code == 401
    access = logging.getLogger("uvicorn.access")
    record = access.makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/erp/input_schema?x=1&api_key={users['alice']}&token=t0k", "1.1", 401),
        None,
    )
    assert all(f.filter(record) for f in access.filters)
    line = record.getMessage()
    assert users["alice"] not in line and "t0k" not in line
    assert "/erp/input_schema?x=1&api_key=***&token=***" in line


def test_health_without_a_key_says_only_whether_the_server_lives(keyed_server):
    # #31: /health without a key showed model and index paths and cache counts.
    url, users = keyed_server
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    detailed = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {users['bob']}"}).json()
    assert detailed["status"] == "ok" and detailed["index"]["chunks"] > 0 and "path" in detailed["index"]


def test_feedback_on_another_users_answer_is_refused(keyed_server):
    url, users = keyed_server
    answered = ask(url, users["alice"], f"f-{uuid.uuid4().hex}")
    run_id = answered.json()["metadata"]["run_id"]
    vote = {"run_id": run_id, "vote": "down"}
    assert (
        httpx.post(f"{url}/feedback", json=vote, headers={"Authorization": f"Bearer {users['bob']}"}).status_code == 404
    )
    assert (
        httpx.post(f"{url}/feedback", json=vote, headers={"Authorization": f"Bearer {users['alice']}"}).status_code
        == 204
    )


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, tiny_lm_dir, e5_dir, access_index_dir):
    home = tmp_path_factory.mktemp("limited")
    keys = APIKeys(home / "keys.yaml")
    run = uuid.uuid4().hex[:8]  # the counts live in Redis for a minute: a rerun must not share them
    users = {"carol": keys.add(f"carol-{run}", ["sales"]), "dave": keys.add(f"dave-{run}", ["sales"])}
    settings = tiny_settings(
        home,
        tiny_lm_dir,
        e5_dir,
        access_index_dir,
        access={"api_keys_file": home / "keys.yaml"},
        server={"rate_limit_per_minute": 3, "max_batch_inputs": 2},
    )
    with running_server(create_app(ERPChatbot.from_settings(settings))) as url:
        yield url, users


def test_a_batch_over_the_limit_is_refused(limited_server):
    # #31: one /erp/batch with 100 inputs was accepted: 2,500 generations fit under the body limit.
    url, users = limited_server
    body = {"inputs": [{"question": "How do I quote?"}] * 3, "config": {"configurable": {"session_id": "b-1"}}}
    refused = httpx.post(f"{url}/erp/batch", json=body, headers={"Authorization": f"Bearer {users['dave']}"})
    assert refused.status_code == 422 and "at most 2" in refused.text


def test_each_key_gets_so_many_requests_a_minute(limited_server):
    url, users = limited_server
    carol = {"Authorization": f"Bearer {users['carol']}"}
    statuses = [httpx.get(f"{url}/erp/input_schema", headers=carol).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = httpx.get(f"{url}/erp/input_schema", headers=carol)
    assert limited.status_code == 429 and 0 < int(limited.headers["retry-after"]) <= 60
    assert httpx.get(f"{url}/health").status_code == 200  # probes are not counted
