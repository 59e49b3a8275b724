"""LangChain and LlamaIndex adapters against a live gateway (default student + teacher):
the frameworks' own vector stores, no mocks."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pairs import DOCS, QUERIES
from pairs import NINE as PAIRS

from aegis_client import EmbedClient, InvalidInputError

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from aegis_client.integrations.langchain import AegisEmbeddings
from aegis_client.integrations.llamaindex import AegisEmbedding

pytestmark = pytest.mark.teacher


@pytest.fixture(scope="module")
def gateway(asymmetric_pools):
    """A gateway that takes at most 4 inputs per request: long lists must be batched."""
    stack, query, document = asymmetric_pools
    runtime = stack.gateway(query, document, max_inputs=4)
    yield f"127.0.0.1:{runtime.port}"
    stack.lt.run(runtime.handle.server.stop(0))
    stack.lt.run(runtime.close())
    stack.gateways.remove(runtime)


@pytest.fixture(scope="module")
def reference(gateway):
    """What the plain client gets, per pool."""
    with EmbedClient(gateway) as client:
        docs = np.concatenate([client.embed_documents(DOCS[i : i + 4]) for i in range(0, 9, 4)])
        return client.embed_queries(QUERIES[:4]), docs


def test_langchain_routes_queries_and_documents_to_their_pools(gateway, reference):
    queries, docs = reference
    emb = AegisEmbeddings(gateway, batch_size=4)
    try:
        got_docs = np.array(emb.embed_documents(DOCS))  # 9 texts: 3 requests of <= 4
        np.testing.assert_allclose(got_docs, docs, atol=1e-6)
        got_query = np.array(emb.embed_query(QUERIES[0]))
        np.testing.assert_allclose(got_query, queries[0], atol=1e-6)
        # The same text as a document is another model's vector: the routing is real.
        as_doc = np.array(emb.embed_documents([QUERIES[0]])[0])
        assert float(got_query @ as_doc) < 0.99
        assert emb.embed_documents([]) == []
    finally:
        emb.close()


def test_langchain_in_memory_store_round_trip_sync_and_async(gateway):
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(AegisEmbeddings(gateway, batch_size=4, dimensions=256))
    store.add_texts(DOCS)
    for query, doc in PAIRS:
        assert store.similarity_search(query, k=1)[0].page_content == doc

    async def run() -> list[str]:
        emb = AegisEmbeddings(gateway, batch_size=2, dimensions=256)
        astore = InMemoryVectorStore(emb)
        await astore.aadd_texts(DOCS)  # 5 requests, up to 4 in flight
        hits = [(await astore.asimilarity_search(q, k=1))[0].page_content for q in QUERIES]
        sync_rows = np.array(emb.embed_documents(DOCS))
        async_rows = np.array(await emb.aembed_documents(DOCS))
        np.testing.assert_allclose(async_rows, sync_rows, atol=1e-6)
        assert async_rows.shape == (len(DOCS), 256)
        emb.close()
        return hits

    assert asyncio.run(run()) == DOCS


@pytest.mark.parametrize("encoding", ["float16", "int8", "uint8", "binary"])
def test_langchain_shapes_vectors_as_asked(gateway, encoding):
    emb = AegisEmbeddings(gateway, dimensions=128, encoding=encoding)
    try:
        rows = np.array(emb.embed_documents(DOCS[:3]))
        query = np.array(emb.embed_query(QUERIES[0]))
        assert rows.shape == (3, 128) and query.shape == (128,)
        if encoding == "binary":
            assert set(np.unique(rows)) <= {-1.0, 1.0}
        elif encoding in ("int8", "uint8"):
            assert np.array_equal(rows, np.round(rows))
        with EmbedClient(gateway) as client:
            want = client.embed_documents(DOCS[:3], dimensions=128, encoding=encoding,
                                          unpack_bits=encoding == "binary")  # fmt: skip
        expected = want.astype(np.float32) * 2 - 1 if encoding == "binary" else want
        np.testing.assert_allclose(rows, expected.astype(np.float32), atol=1e-6)
        # The query's best document is still its own pair.
        assert int(np.argmax(rows @ query)) == 0
    finally:
        emb.close()


def test_adapters_raise_the_typed_errors(gateway):
    with pytest.raises(InvalidInputError, match="cannot be handed to a framework"):
        AegisEmbeddings(gateway, encoding="ubinary")
    with pytest.raises(InvalidInputError, match="batch_size"):
        AegisEmbedding(gateway, embed_batch_size=0)
    emb = AegisEmbeddings(gateway, dimensions=100)
    with pytest.raises(InvalidInputError, match="dimensions=100"):
        emb.embed_query("x")
    emb.close()
    emb = AegisEmbeddings(gateway, batch_size=8)  # over the gateway's 4 inputs per request
    with pytest.raises(InvalidInputError, match="4"):
        emb.embed_documents(DOCS)
    with pytest.raises(InvalidInputError, match=r"inputs\[0\] is empty"):
        asyncio.run(emb.aembed_query(""))
    emb.close()


def test_llamaindex_vector_store_index_round_trip_sync_and_async(gateway, reference):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    queries, docs = reference
    model = AegisEmbedding(gateway, embed_batch_size=4)
    np.testing.assert_allclose(model.get_query_embedding(QUERIES[0]), queries[0], atol=1e-6)
    np.testing.assert_allclose(
        model.get_text_embedding_batch(DOCS), docs, atol=1e-6
    )  # batches of 4 texts, document pool
    index = VectorStoreIndex([TextNode(text=d) for d in DOCS], embed_model=model)
    retriever = index.as_retriever(similarity_top_k=1)
    for query, doc in PAIRS:
        assert retriever.retrieve(query)[0].node.get_content() == doc

    async def run() -> list[str]:
        amodel = AegisEmbedding(gateway, embed_batch_size=3, dimensions=256)
        aindex = VectorStoreIndex(
            [TextNode(text=d) for d in DOCS], embed_model=amodel, use_async=True
        )
        aretriever = aindex.as_retriever(similarity_top_k=1)
        hits = [(await aretriever.aretrieve(q))[0].node.get_content() for q in QUERIES]
        vec = await amodel.aget_query_embedding(QUERIES[0])
        assert len(vec) == 256
        amodel.close()
        return hits

    assert asyncio.run(run()) == DOCS
    model.close()
