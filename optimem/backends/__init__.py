"""OCR decoders behind one protocol, found by name and imported on first use.

`import optimem` never imports onnxruntime, tesseract or torch: each backend's module is
loaded only when `get_backend(name)` asks for it. Besides the built-in backends, any installed
package can offer one under the ``optimem.backends`` entry-point group (``name =
"module:Class"`` in its pyproject.toml), and it is then chosen by name like the rest:
``OpticalMemory(backend="name")``, ``optimem serve --backend name``.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any

from ..errors import BackendUnavailable, UnknownBackend
from .base import Backend, Capabilities, Decoded, PageInput

# name → (module, class, pip extra that brings what it needs)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "cpu": ("optimem.backends.cpu", "CpuBackend", "tesseract"),
    "tesseract": ("optimem.backends.tesseract", "TesseractBackend", "tesseract"),
    "rapidocr": ("optimem.backends.rapidocr", "RapidOCRBackend", ""),
    "deepseek-ocr2": ("optimem.backends.deepseek_ocr2.backend", "DeepseekOcr2Backend", "gpu"),
    "deepseek-ocr": ("optimem.backends.deepseek_ocr", "DeepseekOcrBackend", "gpu"),
    "test-double": ("optimem.backends.testing", "TestDoubleBackend", ""),
}
DEFAULT_BACKEND = "cpu"
ENTRY_POINT_GROUP = "optimem.backends"

_instances: dict[tuple[str, tuple], Backend] = {}
_lock = threading.Lock()


def _installed() -> dict[str, tuple[str, str, str]]:
    """Backends that installed packages offer through the entry-point group."""
    return {ep.name: (ep.module, ep.attr, "") for ep in entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    """Every backend name: built in, registered, or offered by an installed package (whether or
    not its extra is installed)."""
    return sorted({**_installed(), **_REGISTRY})


def backend_class(name: str) -> type[Backend]:
    """Import and return the class registered under `name`."""
    entry = _REGISTRY.get(name) or _installed().get(name)
    if entry is None:
        raise UnknownBackend(f"no backend named {name!r}; choose one of {', '.join(backend_names())}")
    module_name, class_name, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'optimem[{extra}]'" if extra else "pip install optimem"
        raise BackendUnavailable(f"backend {name!r} needs {exc.name or exc}: {hint}") from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise UnknownBackend(
            f"backend {name!r} points at {module_name}:{class_name}, which is no Backend class"
        )
    return cls


def get_backend(name: str | Backend, **options: Any) -> Backend:
    """The backend called `name`, built once per process and set of options."""
    if isinstance(name, Backend):
        return name
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _lock:
        if key not in _instances:
            _instances[key] = backend_class(name)(**options)
        return _instances[key]


def worker_backend(name: str | Backend, processes: int) -> Backend:
    """The backend `name` for one of `processes` worker processes that share this machine's
    cores: built with its share of them as engine threads where it takes `threads` (the CPU
    engines). Each engine's threads spin while they wait for work, so two processes of two
    threads each on two cores spend much of their time waiting on each other."""
    if isinstance(name, Backend):
        return name
    import inspect
    import os

    if "threads" not in inspect.signature(backend_class(name)).parameters:
        return get_backend(name)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return get_backend(name, threads=max(1, (cores or 1) // max(1, processes)))


def register_backend(name: str, module: str, class_name: str, extra: str = "") -> None:
    """Make a backend reachable by name from code (packages use the entry-point group)."""
    _REGISTRY[name] = (module, class_name, extra)


__all__ = [
    "DEFAULT_BACKEND",
    "ENTRY_POINT_GROUP",
    "Backend",
    "Capabilities",
    "Decoded",
    "PageInput",
    "backend_class",
    "backend_names",
    "get_backend",
    "register_backend",
    "worker_backend",
]
