"""OCR decoders behind one protocol, found by name and imported on first use.

`import optimem` never imports onnxruntime, tesseract or torch: each backend's module is
loaded only when `get_backend(name)` asks for it.
"""

from __future__ import annotations

import importlib
import threading
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

_instances: dict[tuple[str, tuple], Backend] = {}
_lock = threading.Lock()


def backend_names() -> list[str]:
    """Every registered backend name (whether or not its extra is installed)."""
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """Import and return the class registered under `name`."""
    try:
        module_name, class_name, extra = _REGISTRY[name]
    except KeyError:
        raise UnknownBackend(
            f"no backend named {name!r}; choose one of {', '.join(backend_names())}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'optimem[{extra}]'" if extra else "pip install optimem"
        raise BackendUnavailable(f"backend {name!r} needs {exc.name or exc}: {hint}") from exc
    return getattr(module, class_name)


def get_backend(name: str | Backend, **options: Any) -> Backend:
    """The backend called `name`, built once per process and set of options."""
    if isinstance(name, Backend):
        return name
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _lock:
        if key not in _instances:
            _instances[key] = backend_class(name)(**options)
        return _instances[key]


def register_backend(name: str, module: str, class_name: str, extra: str = "") -> None:
    """Make a third-party backend reachable by name."""
    _REGISTRY[name] = (module, class_name, extra)


__all__ = [
    "DEFAULT_BACKEND",
    "Backend",
    "Capabilities",
    "Decoded",
    "PageInput",
    "backend_class",
    "backend_names",
    "get_backend",
    "register_backend",
]
