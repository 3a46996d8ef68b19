"""The few CUDA driver calls the megakernel needs, through ctypes on libcuda.

PyTorch owns the context, the memory and the streams; this module loads the
cubin into PyTorch's (primary) context, sizes the grid from the occupancy the
driver reports, launches cooperatively, and allocates the host-mapped buffers
the kernel publishes tokens through. Every call's status is checked.
"""

from __future__ import annotations

import ctypes

import torch

CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH = 95
CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97
CU_FUNC_ATTRIBUTE_NUM_REGS = 4
CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3
CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1
CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
CU_MEMHOSTALLOC_PORTABLE = 0x01
CU_MEMHOSTALLOC_DEVICEMAP = 0x02
CUDA_ERROR_NOT_READY = 600


class CudaError(RuntimeError):
    pass


_lib: ctypes.CDLL | None = None


def _cuda() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise CudaError(f"the CUDA driver (libcuda.so.1) is not available: {e}") from None
    return _lib


def check(status: int, what: str) -> None:
    if status != 0:
        msg = ctypes.c_char_p()
        _cuda().cuGetErrorString(status, ctypes.byref(msg))
        raise CudaError(f"{what} failed with CUDA error {status}: "
                        f"{msg.value.decode() if msg.value else 'unknown'}")


def ensure_context(device: torch.device) -> None:
    """Make PyTorch's primary context current on this thread (torch creates it lazily)."""
    torch.cuda.init()
    torch.zeros(1, device=device)   # forces the context of `device` into existence
    ctx = ctypes.c_void_p()
    check(_cuda().cuCtxGetCurrent(ctypes.byref(ctx)), "cuCtxGetCurrent")
    if not ctx.value:
        dev = ctypes.c_int()
        check(_cuda().cuDeviceGet(ctypes.byref(dev), device.index or 0), "cuDeviceGet")
        check(_cuda().cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
        check(_cuda().cuCtxSetCurrent(ctx), "cuCtxSetCurrent")


def device_attribute(device: torch.device, attribute: int) -> int:
    dev, value = ctypes.c_int(), ctypes.c_int()
    check(_cuda().cuDeviceGet(ctypes.byref(dev), device.index or 0), "cuDeviceGet")
    check(_cuda().cuDeviceGetAttribute(ctypes.byref(value), attribute, dev), "cuDeviceGetAttribute")
    return value.value


def arch_of(device: torch.device) -> str:
    major = device_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
    minor = device_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
    return f"sm_{major}{minor}" + ("a" if major == 9 else "")


class Kernel:
    """One function of a loaded module: a cubin, or PTX that the driver compiles for the device."""

    def __init__(self, image: bytes, name: str):
        lib = _cuda()
        self._image = ctypes.create_string_buffer(image, len(image))
        self.module, self.function = ctypes.c_void_p(), ctypes.c_void_p()
        check(lib.cuModuleLoadData(ctypes.byref(self.module), self._image), "cuModuleLoadData")
        check(lib.cuModuleGetFunction(ctypes.byref(self.function), self.module, name.encode()),
              f"cuModuleGetFunction({name})")

    def attribute(self, attribute: int) -> int:
        value = ctypes.c_int()
        check(_cuda().cuFuncGetAttribute(ctypes.byref(value), attribute, self.function), "cuFuncGetAttribute")
        return value.value

    def allow_dynamic_shared(self, n_bytes: int) -> None:
        """Let launches ask for ``n_bytes`` of dynamic shared memory (above 48 KB needs this)."""
        check(_cuda().cuFuncSetAttribute(self.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, n_bytes),
              "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)")

    def max_active_blocks_per_sm(self, threads: int, dynamic_shared: int) -> int:
        n = ctypes.c_int()
        check(_cuda().cuOccupancyMaxActiveBlocksPerMultiprocessor(ctypes.byref(n), self.function, threads,
                                                                  ctypes.c_size_t(dynamic_shared)),
              "cuOccupancyMaxActiveBlocksPerMultiprocessor")
        return n.value

    def launch_cooperative(self, grid: int, threads: int, dynamic_shared: int, stream: int,
                           args: ctypes.Structure) -> None:
        params = (ctypes.c_void_p * 1)(ctypes.cast(ctypes.pointer(args), ctypes.c_void_p))
        check(_cuda().cuLaunchCooperativeKernel(self.function, grid, 1, 1, threads, 1, 1, dynamic_shared,
                                                ctypes.c_void_p(stream), params),
              "cuLaunchCooperativeKernel")


def stream_done(stream: int) -> bool:
    status = _cuda().cuStreamQuery(ctypes.c_void_p(stream))
    if status == CUDA_ERROR_NOT_READY:
        return False
    check(status, "cuStreamQuery")
    return True


class MappedInts:
    """int32 host memory the device writes through a mapped pointer; host reads go
    straight to memory (ctypes reads are not cached), so a running kernel's
    progress is visible."""

    def __init__(self, n: int):
        self.n = n
        self.host = ctypes.c_void_p()
        check(_cuda().cuMemHostAlloc(ctypes.byref(self.host), 4 * n,
                                     CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP), "cuMemHostAlloc")
        self.values = (ctypes.c_int32 * n).from_address(self.host.value)
        dptr = ctypes.c_uint64()
        check(_cuda().cuMemHostGetDevicePointer_v2(ctypes.byref(dptr), self.host, 0), "cuMemHostGetDevicePointer")
        self.device_ptr = dptr.value

    def __del__(self):
        if getattr(self, "host", None) and self.host.value and _lib is not None:
            _lib.cuMemFreeHost(self.host)
            self.host = None
