"""Model factories (LLM, embeddings) and the bundled demo models."""
