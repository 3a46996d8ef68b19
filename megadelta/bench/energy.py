"""GPU energy and the GPU's own description, read through NVML.

Energy comes from the board's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver
loaded) read just before and just after each timed region. Boards without
that counter fall back to sampling ``nvmlDeviceGetPowerUsage`` in a thread
and integrating. Nothing here changes clocks or power limits: the benchmark
only reads them.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import torch

SAMPLE_INTERVAL_S = 0.005


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message says why."""


class EnergyMeter(Protocol):
    method: str

    def start(self) -> None: ...

    def stop(self) -> float:
        """Joules used since ``start()``."""


class EnergyCounter:
    method = "nvml-total-energy-counter"

    def __init__(self, nvml, handle):
        self._nvml, self._handle = nvml, handle
        self._start_mj = 0

    def read_mj(self) -> int:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def start(self) -> None:
        self._start_mj = self.read_mj()

    def stop(self) -> float:
        return (self.read_mj() - self._start_mj) / 1e3


class PowerSampler:
    """Integrates power samples taken every few milliseconds in a thread. The
    board's power reading may itself be averaged over a longer window, so this
    is coarser than the energy counter."""

    method = "nvml-power-sampling"

    def __init__(self, nvml, handle, interval_s: float = SAMPLE_INTERVAL_S):
        self._nvml, self._handle, self._interval = nvml, handle, interval_s
        self._samples: list[tuple[float, float]] = []
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        watts = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3
        self._samples.append((time.perf_counter(), watts))

    def _loop(self) -> None:
        while self._running.is_set():
            self._sample()
            time.sleep(self._interval)

    def start(self) -> None:
        self._samples = []
        self._sample()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._running.clear()
        self._thread.join()
        self._sample()
        pairs = zip(self._samples, self._samples[1:])
        return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in pairs)


class Gpu:
    """One NVML device handle: the GPU's description and its energy meter."""

    READINGS = ("sm_clock_mhz", "gpu_temp_c", "memory_temp_c")   # readings(), in this order

    def __init__(self, nvml, handle):
        self._nvml, self._handle = nvml, handle

    @classmethod
    def open(cls, device: torch.device) -> "Gpu":
        if device.type != "cuda":
            raise NvmlUnavailable("no NVIDIA GPU in use (CPU run)")
        try:
            import pynvml
        except ImportError:
            raise NvmlUnavailable("nvidia-ml-py (pynvml) is not installed") from None
        try:
            pynvml.nvmlInit()
            handle = _handle_for(pynvml, device)
        except pynvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML failed: {e}") from None
        return cls(pynvml, handle)

    def _query(self, fn, *args):
        """An NVML reading, or None where this board does not report it."""
        try:
            return fn(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def energy_meter(self) -> EnergyMeter:
        if self._query(self._nvml.nvmlDeviceGetTotalEnergyConsumption) is not None:
            return EnergyCounter(self._nvml, self._handle)
        if self._query(self._nvml.nvmlDeviceGetPowerUsage) is not None:
            return PowerSampler(self._nvml, self._handle)
        raise NvmlUnavailable("this GPU reports neither total energy nor power through NVML")

    def sm_clock_mhz(self) -> int | None:
        return self._query(self._nvml.nvmlDeviceGetClockInfo, self._nvml.NVML_CLOCK_SM)

    def readings(self) -> dict:
        """What the board says right after a timed run: its SM clock and its
        GPU and memory (HBM) temperatures, None where it does not report one.
        A run that follows a hotter workload can differ in any of them."""
        n = self._nvml
        return dict(zip(self.READINGS, (self.sm_clock_mhz(),
                                        self._query(n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU),
                                        self._field(n.NVML_FI_DEV_MEMORY_TEMP))))

    def _field(self, field_id: int) -> int | float | None:
        """One NVML field value, None where the board does not report it."""
        values = self._query(self._nvml.nvmlDeviceGetFieldValues, [field_id])
        if values is None or values[0].nvmlReturn != self._nvml.NVML_SUCCESS:
            return None
        n = self._nvml   # the value is a union; valueType names its member
        member = {n.NVML_VALUE_TYPE_DOUBLE: "dVal", n.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
                  n.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal", n.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
                  n.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal"}.get(values[0].valueType)
        return None if member is None else getattr(values[0].value, member)

    def description(self) -> dict:
        n = self._nvml
        limit_mw = self._query(n.nvmlDeviceGetEnforcedPowerLimit)
        return {
            "name": _text(n.nvmlDeviceGetName(self._handle)),
            "driver": _text(n.nvmlSystemGetDriverVersion()),
            "power_limit_w": None if limit_mw is None else limit_mw / 1e3,
            "sm_clock_mhz": self.sm_clock_mhz(),
            "mem_clock_mhz": self._query(n.nvmlDeviceGetClockInfo, n.NVML_CLOCK_MEM),
            "sm_clock_max_mhz": self._query(n.nvmlDeviceGetMaxClockInfo, n.NVML_CLOCK_SM),
            "mem_clock_max_mhz": self._query(n.nvmlDeviceGetMaxClockInfo, n.NVML_CLOCK_MEM),
        }


def _handle_for(pynvml, device: torch.device):
    """The NVML handle of the torch device, matched by UUID because NVML
    numbers GPUs ignoring CUDA_VISIBLE_DEVICES."""
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
