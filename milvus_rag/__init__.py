"""milvus-rag: the Milvus + Lepton AI RAG tutorial as LangChain components."""
