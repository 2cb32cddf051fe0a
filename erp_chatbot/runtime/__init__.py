"""What makes many users fast: the response cache (and request batching)."""
