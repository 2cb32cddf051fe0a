"""GPU utilisation, memory and temperature per GPU from NVML (``nvidia-ml-py``, extra ``gpu``).

Without the package, a driver or a GPU the collector yields nothing: the metrics are absent, and
nothing fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


def _load_nvml() -> Any | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception as error:
        logger.info("no GPU metrics: NVML is not available (%s)", error)
        return None


class GPUCollector(Collector):
    def __init__(self, nvml: Any | None = None) -> None:
        self.nvml = nvml if nvml is not None else _load_nvml()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.nvml is None:
            return
        utilisation = GaugeMetricFamily("erp_gpu_utilization_percent", "GPU utilisation", labels=["gpu"])
        used = GaugeMetricFamily("erp_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu"])
        total = GaugeMetricFamily("erp_gpu_memory_total_bytes", "GPU memory in all", labels=["gpu"])
        temperature = GaugeMetricFamily("erp_gpu_temperature_celsius", "GPU temperature", labels=["gpu"])
        nvml = self.nvml
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            label = [str(index)]
            utilisation.add_metric(label, nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            used.add_metric(label, memory.used)
            total.add_metric(label, memory.total)
            temperature.add_metric(label, nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        yield from (utilisation, used, total, temperature)
