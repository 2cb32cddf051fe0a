"""HTTP serving: LangServe routes, health."""
