"""Adapters for retrieval frameworks, each an optional extra of the client.

``aegis_client.integrations.langchain.AegisEmbeddings`` (``pip install aegis-serve[langchain]``)
and ``aegis_client.integrations.llamaindex.AegisEmbedding`` (``aegis-serve[llamaindex]``) route
the frameworks' query calls to the QUERY pool and their document calls to the DOCUMENT pool,
so the asymmetric split is invisible to their users. Importing this package imports neither
framework.
"""
