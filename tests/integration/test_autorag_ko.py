"""Retrieval evaluation on a public benchmark: the demo embedding model over AutoRAG-ko (BEIR format,
``../shared/data/autorag-ko``) against MTEB's published figure, and BM25 and fusion beside it."""

import pytest

from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow  # embeds the benchmark's 720 documents: minutes on a 2-core CPU (once)


@pytest.mark.skipif(not (SHARED_DATA / "autorag-ko").is_dir(), reason="../shared/data/autorag-ko is not present")
def test_retrieval_on_autorag_ko_dense_reproduces_mteb_and_hybrid_beats_both(embeddings, models_dir):
    """The corpus's vectors are kept beside the test models (as ``erp-chatbot eval retrieval`` keeps
    them in its home): a later run with the same corpus, model and embedding code embeds nothing."""
    from erp_chatbot.evaluation import evaluate_retrieval, index_corpus, load_beir
    from erp_chatbot.settings import RetrievalSettings

    data = load_beir(SHARED_DATA / "autorag-ko")
    index = index_corpus(embeddings, data, vectors_dir=models_dir.parent / "evaluation-vectors")
    reports = evaluate_retrieval(index, embeddings, data, RetrievalSettings())
    ndcg = {r.mode: r.scores["ndcg@10"] for r in reports}
    published = 0.80068  # MTEB, intfloat/multilingual-e5-small, AutoRAGRetrieval
    assert abs(ndcg["dense"] - published) <= 0.02, ndcg
    assert ndcg["sparse"] >= 0.9, ndcg  # BM25 over Kiwi morphemes
    assert ndcg["hybrid"] >= 0.93 and ndcg["hybrid"] > max(ndcg["dense"], ndcg["sparse"]), ndcg
