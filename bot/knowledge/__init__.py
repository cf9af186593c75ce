"""The knowledge base: the account's published articles and the operator's documents, cut into
passages, ranked for each question (BM25 over jieba tokens; with EMBEDDING_MODEL, fused with dense
vectors), and put in the prompt with their sources. Stored in Redis by bot/store/knowledge.py."""
