"""LangChain's own standard tests (``langchain-tests``) over our components, with real parts:
the hybrid retriever on the sample index, the windowed e5 embeddings, and both response caches
(in-process and real Redis). The suites' ``test_no_overrides_DO_NOT_OVERRIDE`` checks we changed none of them.

The suites read their parameters from properties; the session fixtures (index, model folder, Redis)
reach them through an autouse fixture that runs first.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import pytest
from langchain_tests.integration_tests import (
    AsyncCacheTestSuite,
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
    SyncCacheTestSuite,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests

from erp_chatbot.models.embeddings import WindowedHuggingFaceEmbeddings
from erp_chatbot.retrievers.erp import ERPRetriever
from erp_chatbot.runtime.cache import LRUResponseCache, RedisResponseCache


class TestERPRetriever(RetrieversIntegrationTests):
    parts: ClassVar[dict] = {}

    @pytest.fixture(autouse=True)
    def _parts(self, sample_index, embeddings):
        type(self).parts = {"index": sample_index, "embeddings": embeddings}

    @property
    def retriever_constructor(self) -> type[ERPRetriever]:
        return ERPRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        # Threshold off: the suite asks for exactly k chunks of a small sample index.
        return {**self.parts, "score_threshold": -1.0}

    @property
    def retriever_query_example(self) -> str:
        return "How do I approve a vendor bill?"


class _E5Params:
    model_dir: str = ""

    @pytest.fixture(autouse=True)
    def _model_dir(self, e5_dir):
        type(self).model_dir = str(e5_dir)

    @property
    def embeddings_class(self) -> type[WindowedHuggingFaceEmbeddings]:
        return WindowedHuggingFaceEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {
            "model_name": self.model_dir,
            "model_kwargs": {"device": "cpu", "local_files_only": True},
            "encode_kwargs": {"normalize_embeddings": True, "prompt": "passage: "},
            "query_encode_kwargs": {"normalize_embeddings": True, "prompt": "query: "},
        }


class TestWindowedEmbeddingsUnit(_E5Params, EmbeddingsUnitTests):
    pass


class TestWindowedEmbeddingsIntegration(_E5Params, EmbeddingsIntegrationTests):
    pass


def lru() -> LRUResponseCache:
    return LRUResponseCache(max_entries=100, ttl_seconds=60, max_bytes=1 << 20)


@pytest.fixture
def redis_cache(redis_client):
    cache = RedisResponseCache(redis_client, max_entries=100, ttl_seconds=60, prefix=f"test-suite-{uuid.uuid4().hex}:")
    yield cache
    cache.clear()


class TestLRUCacheSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self) -> LRUResponseCache:
        return lru()


class TestLRUCacheAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self) -> LRUResponseCache:
        return lru()


class TestRedisCacheSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, redis_cache) -> RedisResponseCache:
        return redis_cache


class TestRedisCacheAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, redis_cache) -> RedisResponseCache:
        return redis_cache
