"""Metrics: a LangChain callback handler feeding Prometheus collectors, and NVML GPU gauges."""
