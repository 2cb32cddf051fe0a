"""Real FAISS with the bundled e5 model: true cosine scores, threshold, manifest, incremental ingest."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from erp_chatbot.knowledge import index as index_store
from erp_chatbot.knowledge.index import KnowledgeIndexError
from erp_chatbot.knowledge.search_index import cosine_from_distance
from erp_chatbot.knowledge.signing import MissingSigningKey
from erp_chatbot.knowledge.splitting import indexed_text
from erp_chatbot.retrievers.erp import ERPRetriever
from tests.conftest import SAMPLE_KNOWLEDGE, ingest_folder


def run_ingest(source: Path, index_dir: Path, embeddings, **kw):
    return ingest_folder(source, index_dir, embeddings, **kw)


def indexed_copy(tmp_path: Path, embeddings, folder: str) -> tuple[Path, Path]:
    """A copy of one sample-knowledge folder (tmp_path/docs) and its index (tmp_path/index)."""
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    shutil.copytree(SAMPLE_KNOWLEDGE / folder, docs)
    run_ingest(docs, index_dir, embeddings)
    return docs, index_dir


def test_scores_are_the_true_cosine(sample_index, embeddings):
    retriever = ERPRetriever(index=sample_index, embeddings=embeddings, k=5, score_threshold=-1.0)
    query = "재고 이동은 어디서 확인하나요?"
    docs = retriever.invoke(query)
    assert len(docs) == 5
    q = np.array(embeddings.embed_query(query))
    d = np.array(embeddings.embed_documents([indexed_text(doc) for doc in docs]))  # path words + text
    cosines = d @ q / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))
    assert np.allclose([doc.metadata["score"] for doc in docs], cosines, atol=1e-5)
    assert docs[0].metadata["source"] == "inventory/stock-moves.ko.md"
    assert [doc.metadata["score"] for doc in docs] == sorted((doc.metadata["score"] for doc in docs), reverse=True)


def test_threshold_filters_and_k_bounds(sample_index, embeddings):
    query = "How do I approve a vendor bill?"
    everything = ERPRetriever(index=sample_index, embeddings=embeddings, k=50, score_threshold=-1.0).invoke(query)
    cosines = sorted((doc.metadata["score"] for doc in everything), reverse=True)  # fused order is not cosine order
    cut = (cosines[2] + cosines[3]) / 2
    kept = ERPRetriever(index=sample_index, embeddings=embeddings, k=50, score_threshold=cut).invoke(query)
    assert len(kept) == 3 and all(doc.metadata["score"] >= cut for doc in kept)
    assert len(ERPRetriever(index=sample_index, embeddings=embeddings, k=2, score_threshold=-1).invoke(query)) == 2
    assert ERPRetriever(index=sample_index, embeddings=embeddings, score_threshold=0.999).invoke(query) == []
    top = ERPRetriever(index=sample_index, embeddings=embeddings).invoke(query)[0]
    assert top.metadata["source"] == "purchasing/vendor-bill-approval.en.md"
    assert top.metadata["title"] == "Approving vendor bills"


async def test_async_retrieval_matches_sync(sample_index, embeddings):
    retriever = ERPRetriever(index=sample_index, embeddings=embeddings)
    query = "휴가 신청은 어떻게 하나요?"
    sync = [d.metadata["chunk_id"] for d in retriever.invoke(query)]
    assert [d.metadata["chunk_id"] for d in await retriever.ainvoke(query)] == sync


def test_euclidean_indexes_are_converted_to_cosine(embeddings):
    import faiss

    vectors = np.array(embeddings.embed_documents(["purchase order", "재고 이동", "leave request"]), "float32")
    query = np.array(embeddings.embed_query("구매 주문"), "float32")
    flat = faiss.IndexFlatL2(vectors.shape[1])
    flat.add(vectors)
    distances, ids = flat.search(query[None], 3)
    cosines = [cosine_from_distance("EUCLIDEAN_DISTANCE", d) for d in distances[0]]
    assert np.allclose(cosines, vectors[ids[0]] @ query, atol=1e-5)
    with pytest.raises(KnowledgeIndexError, match="not supported"):
        cosine_from_distance("JACCARD", 0.1)


def test_manifest_round_trip(sample_index_dir, sample_index):
    manifest = index_store.read_manifest(sample_index_dir)
    raw = json.loads((index_store.current_path(sample_index_dir) / "manifest.json").read_text())
    assert raw["embedding_model"] == "multilingual-e5-small" and raw["dimension"] == 384
    assert raw["distance_strategy"] == "MAX_INNER_PRODUCT"
    assert (raw["chunk_size"], raw["chunk_overlap"]) == (800, 100)
    assert raw["document_count"] == len(list(SAMPLE_KNOWLEDGE.rglob("*.md")))
    assert raw["chunk_count"] == sample_index.store.index.ntotal
    for name in ("index.faiss", "index.pkl"):
        assert raw["checksums"][name] == index_store.sha256_file(index_store.current_path(sample_index_dir) / name)
    assert index_store.read_manifest(sample_index_dir) == manifest
    assert sample_index.store.distance_strategy.name == "MAX_INNER_PRODUCT"


def test_tampered_index_is_refused_before_unpickling(tmp_path, sample_index_dir, embeddings):
    copy = tmp_path / "idx"
    shutil.copytree(sample_index_dir, copy, symlinks=True)
    pkl = index_store.current_path(copy) / "index.pkl"
    pkl.write_bytes(pkl.read_bytes() + b"\x00")
    with pytest.raises(KnowledgeIndexError, match="does not match its manifest"):
        index_store.load(copy, embeddings)


def test_missing_index_says_what_to_run(tmp_path, embeddings):
    with pytest.raises(KnowledgeIndexError, match="erp-chatbot ingest"):
        index_store.load(tmp_path / "none", embeddings)


class CountingEmbeddings(Embeddings):
    """The real e5 embeddings, counting what gets embedded (and able to fail on demand)."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after, self.texts = inner, fail_after, []

    def embed_documents(self, texts):
        if self.fail_after is not None and len(self.texts) >= self.fail_after:
            raise RuntimeError("embedding server went away")
        self.texts.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


def test_incremental_ingest_touches_only_what_changed(tmp_path, embeddings):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_KNOWLEDGE / "inventory", docs / "inventory")
    shutil.copytree(SAMPLE_KNOWLEDGE / "hr", docs / "hr")
    index_dir = tmp_path / "index"
    first = run_ingest(docs, index_dir, embeddings)
    assert len(first.added) == 8 and first.chunks_total > 0

    counting = CountingEmbeddings(embeddings)
    assert not run_ingest(docs, index_dir, counting).changed and counting.texts == []

    edited = docs / "inventory" / "stock-moves.en.md"
    edited.write_text(edited.read_text().replace("Stock Moves", "Stock Movements Report"))
    (docs / "hr" / "expense-claims.en.md").unlink()
    (docs / "hr" / "payroll.en.md").write_text("# Payroll\n\nPayslips are in Payroll > Payslips.\n")
    report = run_ingest(docs, index_dir, counting)
    assert (report.added, report.updated, report.deleted) == (
        ["hr/payroll.en.md"],
        ["inventory/stock-moves.en.md"],
        ["hr/expense-claims.en.md"],
    )
    assert report.unchanged == 6
    assert all("Stock Movements Report" in t or "Payroll" in t or "stock" in t.lower() for t in counting.texts)

    loaded = index_store.load(index_dir, embeddings)
    sources = {d.metadata["source"] for d in loaded.store.docstore._dict.values()}
    assert "hr/expense-claims.en.md" not in sources and "hr/payroll.en.md" in sources
    edited_texts = " ".join(
        d.page_content
        for d in loaded.store.docstore._dict.values()
        if d.metadata["source"] == "inventory/stock-moves.en.md"
    )
    assert "Stock Movements Report" in edited_texts
    assert "Inventory > Reporting > Stock Moves" not in edited_texts
    assert loaded.store.index.ntotal == loaded.manifest.chunk_count == len(loaded.store.docstore._dict)
    assert len(list((index_dir / "generations").iterdir())) <= 2


def test_failed_ingest_leaves_the_previous_index_serving(tmp_path, embeddings):
    docs, index_dir = indexed_copy(tmp_path, embeddings, "invoicing")
    before = index_store.read_manifest(index_dir)
    shutil.copytree(SAMPLE_KNOWLEDGE / "purchasing", docs / "purchasing")
    with pytest.raises(RuntimeError, match="went away"):
        run_ingest(docs, index_dir, CountingEmbeddings(embeddings, fail_after=0))
    after = index_store.load(index_dir, embeddings)
    assert after.manifest == before and after.store.index.ntotal == before.chunk_count


def test_changed_chunking_rebuilds_everything(tmp_path, embeddings):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_KNOWLEDGE / "invoicing", docs)
    run_ingest(docs, tmp_path / "index", embeddings)
    report = run_ingest(docs, tmp_path / "index", embeddings, chunk_size=300)
    assert len(report.added) == 2 and index_store.read_manifest(tmp_path / "index").chunk_size == 300


def test_repeated_queries_skip_the_encoder(sample_index, embeddings):
    counting = CountingQueries(embeddings)
    retriever = ERPRetriever(index=sample_index, embeddings=counting, query_cache_size=2)
    first = retriever.invoke("How do I count stock?")
    assert retriever.invoke("How do I count stock?") == first and counting.queries == 1
    retriever.invoke("a")
    retriever.invoke("b")  # evicts the oldest
    retriever.invoke("How do I count stock?")
    assert counting.queries == 4
    uncached = ERPRetriever(index=sample_index, embeddings=counting, query_cache_size=0)
    uncached.invoke("a")
    uncached.invoke("a")
    assert counting.queries == 6


class CountingQueries(Embeddings):
    def __init__(self, inner):
        self.inner, self.queries = inner, 0

    def embed_documents(self, texts):
        return self.inner.embed_documents(texts)

    def embed_query(self, text):
        self.queries += 1
        return self.inner.embed_query(text)


class _WritesAFile:
    """Unpickling this writes a file: what a hostile index.pkl could do."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "unpickled"))


def _plant_hostile_pickle(index_dir: Path, marker: Path, fix_checksums: bool) -> None:
    import pickle

    folder = index_store.current_path(index_dir).resolve()
    (folder / "index.pkl").write_bytes(pickle.dumps(_WritesAFile(marker)))
    if fix_checksums:  # an attacker can recompute checksums, but not the HMAC
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["checksums"]["index.pkl"] = index_store.sha256_file(folder / "index.pkl")
        (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_hostile_pickle_is_never_unpickled(tmp_path, embeddings):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_KNOWLEDGE / "invoicing", docs)
    marker = tmp_path / "pwned.txt"

    plain = tmp_path / "plain"
    run_ingest(docs, plain, embeddings)
    _plant_hostile_pickle(plain, marker, fix_checksums=False)
    with pytest.raises(KnowledgeIndexError, match="does not match its manifest checksum"):
        index_store.load(plain, embeddings)
    assert not marker.exists()

    signed = tmp_path / "signed"
    run_ingest(docs, signed, embeddings, signing_key="deployment-secret")
    assert index_store.load(signed, embeddings, signing_key="deployment-secret").store.index.ntotal > 0
    with pytest.raises(KnowledgeIndexError, match="not signed with this deployment's key"):
        index_store.load(signed, embeddings, signing_key="another-key")
    _plant_hostile_pickle(signed, marker, fix_checksums=True)
    with pytest.raises(KnowledgeIndexError, match="not signed with this deployment's key"):
        index_store.load(signed, embeddings, signing_key="deployment-secret")
    assert not marker.exists()


def test_an_unsigned_index_is_refused_when_a_key_is_set(tmp_path, embeddings):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_KNOWLEDGE / "hr", docs)
    run_ingest(docs, tmp_path / "index", embeddings)
    with pytest.raises(KnowledgeIndexError, match=r"knowledge\.signing_key"):
        index_store.load(tmp_path / "index", embeddings, signing_key="deployment-secret")


def test_the_bm25_index_is_saved_checked_and_swapped_with_faiss(tmp_path, embeddings):
    _, index_dir = indexed_copy(tmp_path, embeddings, "invoicing")
    manifest = index_store.read_manifest(index_dir)
    assert "bm25/terms.json" in manifest.checksums and "index.faiss" in manifest.checksums
    loaded = index_store.load(index_dir, embeddings)
    assert loaded.lexical.chunk_ids == [loaded.store.index_to_docstore_id[i] for i in range(loaded.store.index.ntotal)]
    hits = loaded.search_lexical("credit note", 3)
    assert hits and all(score > 0 for _, score in hits)

    folder = index_store.current_path(index_dir).resolve()
    (folder / "bm25" / "stray.npy").write_bytes(b"planted")
    with pytest.raises(KnowledgeIndexError, match="does not list"):
        index_store.load(index_dir, embeddings)
    (folder / "bm25" / "stray.npy").unlink()
    terms_file = folder / "bm25" / "terms.json"
    terms_file.write_text(terms_file.read_text().replace('"credit"', '"debit"'))
    with pytest.raises(KnowledgeIndexError, match="does not match its manifest checksum"):
        index_store.load(index_dir, embeddings)


def test_path_words_lead_retrieval_to_the_page_but_stay_out_of_its_text(tmp_path, embeddings):
    docs = tmp_path / "docs"
    (docs / "warehouse").mkdir(parents=True)
    (docs / "warehouse" / "cycle_counting.md").write_text("# Weekly routine\nCheck a few shelves every week.\n")
    (docs / "warehouse" / "returns.md").write_text("# Returns\nTake back damaged goods at the gate.\n")
    index_dir = tmp_path / "index"
    run_ingest(docs, index_dir, embeddings)
    index = index_store.load(index_dir, embeddings)
    best, _ = index.search_lexical("cycle counting", 1)[0]
    assert best.metadata["source"] == "warehouse/cycle_counting.md"
    assert not {"cycle", "count"} & set(best.page_content.lower().replace(".", " ").split())


def test_incremental_ingest_analyses_only_new_text(tmp_path, embeddings, monkeypatch):
    from erp_chatbot.knowledge import lexical

    docs, index_dir = indexed_copy(tmp_path, embeddings, "invoicing")
    before = index_store.read_manifest(index_dir).chunk_count
    analysed = []
    original = lexical.terms
    monkeypatch.setattr(lexical, "terms", lambda text: analysed.append(text) or original(text))
    shutil.copytree(SAMPLE_KNOWLEDGE / "hr", docs / "hr")
    report = run_ingest(docs, index_dir, embeddings)
    assert len(analysed) == report.chunks_embedded == report.chunks_total - before > 0
    best, _ = index_store.load(index_dir, embeddings).search_lexical("연차 신청", 1)[0]
    assert best.metadata["source"].startswith("hr/")


def test_cosine_distribution_matches_the_corpus(sample_index, embeddings):
    vectors = sample_index.store.index.reconstruct_n(0, sample_index.store.index.ntotal)
    query = embeddings.embed_query("재고 이동은 어디서 확인하나요?")
    cosines = vectors @ np.asarray(query)
    mean, spread = sample_index.cosine_distribution(query)
    assert mean == pytest.approx(cosines.mean(), abs=1e-5) and spread == pytest.approx(cosines.std(), abs=1e-5)


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_every_mode_finds_the_page_and_reports_true_cosines(sample_index, embeddings, mode):
    retriever = ERPRetriever(index=sample_index, embeddings=embeddings, k=3, score_threshold=-1.0, mode=mode)
    query = "재고 이동은 어디서 확인하나요?"
    docs = retriever.invoke(query)
    assert docs[0].metadata["source"] == "inventory/stock-moves.ko.md"
    expected = sample_index.cosines(embeddings.embed_query(query), docs)
    assert [d.metadata["score"] for d in docs] == pytest.approx(expected, abs=1e-5)
    assert ("bm25" in docs[0].metadata) == (mode != "dense")


def test_a_translated_variant_finds_the_page_in_the_other_language(sample_index, embeddings):
    # k=8: each page has 4 chunks, and both pages' path words (inventory stock moves) match the variant
    retriever = ERPRetriever(index=sample_index, embeddings=embeddings, k=8, score_threshold=-1.0)
    question = "재고 이동은 어디서 확인하나요?"
    alone = retriever.invoke(question)
    both = retriever.invoke(question, variants=["Where do I check stock moves?"])
    sources = [d.metadata["source"] for d in both]
    assert {"inventory/stock-moves.ko.md", "inventory/stock-moves.en.md"} <= set(sources)
    english = next(d for d in both if d.metadata["source"] == "inventory/stock-moves.en.md")
    assert english.metadata["bm25"] > 0  # found by English words, which the Korean question has none of
    assert max(d.metadata["score"] for d in both) >= max(d.metadata["score"] for d in alone)


def test_a_page_cap_spreads_the_k_slots_over_more_pages(sample_index, embeddings):
    query = "재고 이동은 어디서 확인하나요?"
    free = ERPRetriever(index=sample_index, embeddings=embeddings, k=5, score_threshold=-1.0).invoke(query)
    capped = ERPRetriever(
        index=sample_index, embeddings=embeddings, k=5, score_threshold=-1.0, chunks_per_source=1
    ).invoke(query)
    sources = [d.metadata["source"] for d in capped]
    assert len(capped) == 5 and len(set(sources)) == 5  # one chunk per page
    assert len({d.metadata["source"] for d in free}) < 5  # without the cap a page takes several slots
    assert capped[0].id == free[0].id  # each page keeps its best chunk, in the fused order
    deep = ERPRetriever(index=sample_index, embeddings=embeddings, k=50, score_threshold=-1.0).invoke(query)
    order = [d.id for d in deep]
    assert [order.index(d.id) for d in capped] == sorted(order.index(d.id) for d in capped)  # fused order kept


def test_terms_from_an_older_analyzer_are_refused_then_redone_by_ingest(tmp_path, embeddings, monkeypatch):
    from erp_chatbot.knowledge import ingest as ingest_module
    from erp_chatbot.knowledge import lexical

    docs, index_dir = indexed_copy(tmp_path, embeddings, "hr")
    newer = lexical.ANALYZER + 1
    for module in (lexical, index_store, ingest_module):
        monkeypatch.setattr(module, "ANALYZER", newer)
    with pytest.raises(KnowledgeIndexError, match="older analyzer"):
        index_store.load(index_dir, embeddings)
    report = run_ingest(docs, index_dir, embeddings)  # no file changed, but the terms are redone
    assert report.chunks_embedded == 0 and report.generation is not None
    assert index_store.load(index_dir, embeddings).lexical.analyzer == newer


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory, e5_dir):
    """A random one-layer XLM-R cross-encoder over e5's tokenizer: plumbing only, no model ships."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    path = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=514,
        num_labels=1,
    )
    XLMRobertaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_reranker_reorders_the_fused_candidates(sample_index, embeddings, tiny_cross_encoder):
    from erp_chatbot.retrievers.reranker import CrossEncoderReranker

    # k = candidates: the same search depth, so the same fused pool (fusion depends on the candidates)
    plain = ERPRetriever(index=sample_index, embeddings=embeddings, k=6, score_threshold=-1.0, candidates=6)
    pool = plain.invoke("How do I approve a vendor bill?")
    reranker = CrossEncoderReranker(tiny_cross_encoder)
    reranked = plain.model_copy(update={"reranker": reranker, "k": 3}).invoke("How do I approve a vendor bill?")
    expected = reranker.scores("How do I approve a vendor bill?", [d.page_content for d in pool])
    best = sorted(zip(expected, [d.id for d in pool], strict=True), reverse=True)[:3]
    assert [d.id for d in reranked] == [doc_id for _, doc_id in best]
    assert [d.metadata["rerank"] for d in reranked] == pytest.approx([score for score, _ in best])
    with pytest.raises(FileNotFoundError, match="reranker_path"):
        CrossEncoderReranker(sample_index.path)


def test_index_files_are_readable_by_their_owner_only(tmp_path, embeddings):
    # #31: index files hold restricted text (finance-only pages) but were written 0644.
    from tests.conftest import SAMPLE_KNOWLEDGE, ingest_folder

    ingest_folder(SAMPLE_KNOWLEDGE / "hr", tmp_path / "index", embeddings)
    written = [p for p in (tmp_path / "index").rglob("*") if not p.is_symlink()]
    assert any(p.name == "index.pkl" for p in written)
    assert {oct(p.stat().st_mode & 0o077) for p in written} == {"0o0"}


class _Payload:
    """Unpickling this creates a marker file: what a rewritten index.pkl could do instead."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow  # builds several indexes and chatbots: ~20 s
def test_by_default_an_index_rewritten_with_fresh_checksums_is_refused_unread(tmp_path, tiny_lm_dir, e5_dir):
    # #31: without knowledge.signing_key, a rewritten index.pkl with its checksum recomputed in
    # manifest.json ran code when loaded.
    import json
    import pickle

    from erp_chatbot import ERPChatbot
    from erp_chatbot.knowledge.ingest import ingest_with_settings
    from tests.conftest import tiny_settings

    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, tmp_path / "index", knowledge={"signing_key": None})
    ingest_with_settings(settings, SAMPLE_KNOWLEDGE / "hr")
    key_file = tmp_path / "index-signing.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600" and len(key_file.read_text().strip()) == 64
    assert ERPChatbot.from_settings(settings).index.manifest.chunk_count > 0  # signed and loaded
    assert ingest_with_settings(settings, SAMPLE_KNOWLEDGE / "hr").chunks_embedded == 0  # the same key again

    folder = index_store.current_path(tmp_path / "index").resolve()
    marker = tmp_path / "code-ran"
    (folder / "index.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["checksums"]["index.pkl"] = index_store.sha256_file(folder / "index.pkl")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KnowledgeIndexError, match="not signed with this deployment's key"):
        ERPChatbot.from_settings(settings)
    assert not marker.exists()


@pytest.mark.slow  # builds several indexes and chatbots: ~20 s
def test_an_unsigned_index_is_refused_by_settings_and_rebuilt_by_ingest(tmp_path, tiny_lm_dir, e5_dir, embeddings):
    from erp_chatbot import ERPChatbot
    from erp_chatbot.knowledge.ingest import ingest_with_settings
    from tests.conftest import tiny_settings

    ingest_folder(SAMPLE_KNOWLEDGE / "hr", tmp_path / "index", embeddings, signing_key="")  # unsigned
    settings = tiny_settings(tmp_path, tiny_lm_dir, e5_dir, tmp_path / "index", knowledge={"signing_key": None})
    with pytest.raises(MissingSigningKey, match="erp-chatbot ingest"):
        ERPChatbot.from_settings(settings)
    report = ingest_with_settings(settings, SAMPLE_KNOWLEDGE / "hr")
    assert report.chunks_embedded == report.chunks_total > 0  # not trusted: rebuilt from the documents
    assert ERPChatbot.from_settings(settings).index.manifest.signature
