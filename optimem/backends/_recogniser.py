"""LineRecogniser: PP-OCRv6's text-line recogniser run directly on onnxruntime.

A page with a layout needs no detection, only recognition of known line crops. Going through
rapidocr's full pipeline for that costs a fresh process ~0.6 s of imports and configuration
(its model resolver and engine registry load at import), and rapidocr runs onnxruntime with its
memory arena off, which makes each batch of new widths allocate afresh: with the arena on a
page's lines read 1.5x faster. This runs the same ONNX model from the rapidocr wheel with the
same preprocessing (height 48, linear resize, [-1, 1] scaling, crops sorted by width and padded
per batch) and the same greedy CTC decoding, so it returns rapidocr's text and scores exactly
(tests/backends/test_recogniser.py compares the two), in less time.
"""

from __future__ import annotations

import math
import threading
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable

HEIGHT = 48
#: the narrowest batch the recogniser is given, as width ÷ height (PaddleOCR's 320 × 48)
MIN_RATIO = 320 / 48
MODEL = "PP-OCRv6_rec_small.onnx"


def model_path(path: Path | str | None = None) -> Path:
    """`path`, or the recogniser's ONNX file inside the installed rapidocr wheel (no download),
    checked to exist."""
    if path is None:
        try:
            path = Path(str(resources.files("rapidocr") / "models" / MODEL))
        except ModuleNotFoundError as exc:
            raise BackendUnavailable("the rapidocr backend needs the rapidocr wheel for its models") from exc
    path = Path(path)
    if not path.is_file():
        raise BackendUnavailable(f"no recognition model at {path}")
    return path


class LineRecogniser:
    """Reads grey line crops (uint8, any width) to (text, score) with one onnxruntime session."""

    def __init__(self, threads: int = 2, batch: int = 8, path: Path | None = None) -> None:
        import cv2  # rapidocr's own dependency: the same linear resize it uses
        import onnxruntime as ort

        self._resize = cv2.resize

        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.enable_cpu_mem_arena = True
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        self.batch = max(1, int(batch))
        path = model_path(path)
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        meta = self._session.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise BackendUnavailable(f"{path} carries no character table: not a PP-OCR recogniser")
        # CTC class 0 is the blank; the space is the last class
        self._chars = np.array(["", *meta["character"].splitlines(), " "], dtype=object)
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    def read(self, crops: list[np.ndarray]) -> tuple[list[str], list[float]]:
        """Text and mean character confidence of each crop, in the order given."""
        texts, scores = [""] * len(crops), [0.0] * len(crops)
        ratios = np.array([c.shape[1] / float(c.shape[0]) for c in crops])
        order = np.argsort(ratios)  # similar widths share a batch, so little is padding
        for start in range(0, len(crops), self.batch):
            idx = order[start : start + self.batch]
            widest = max(MIN_RATIO, float(ratios[idx].max()))
            tensor = np.zeros((len(idx), 3, HEIGHT, int(HEIGHT * widest)), dtype=np.float32)
            for k, i in enumerate(idx):
                self._normalise_into(tensor[k], crops[i])
            with self._lock:
                (probs,) = self._session.run(None, {self._input: tensor})
            for i, row in zip(idx, probs, strict=True):
                texts[i], scores[i] = self._decoded(row)
        return texts, scores

    def _normalise_into(self, out: np.ndarray, crop: np.ndarray) -> None:
        """The crop scaled to 48 px high and to [-1, 1], written into the left of `out` (one
        batch row of zeros, as wide as the batch's widest crop)."""
        width = out.shape[-1]
        resized_w = min(width, math.ceil(HEIGHT * crop.shape[1] / float(crop.shape[0])))
        scaled = self._resize(crop, (resized_w, HEIGHT)).astype("float32") / 255
        scaled -= 0.5
        scaled /= 0.5
        out[:, :, :resized_w] = scaled  # grey: the three channels are the same

    def _decoded(self, probs: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: the best class per column, repeats collapsed, blanks dropped."""
        best = probs.argmax(axis=1)
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        confs = [round(c, 5) for c in probs.max(axis=1)[keep].tolist()] or [0]
        return "".join(self._chars[best[keep]]), float(np.mean(confs).round(5))
