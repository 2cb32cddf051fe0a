"""ERP documents -> chunks -> a FAISS index with a manifest, updated incrementally."""
