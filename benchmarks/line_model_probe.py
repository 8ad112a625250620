"""A probe: can a small line recogniser trained on optimem's own type read Tiny lines cheaper?

Pages aged to Tiny cost what rapidocr's PP-OCRv6 recogniser costs (36 ms a line on two cores;
`tiny_floor.py`), a general model for any font and script. optimem's own lines are narrower:
one type family, a few sizes, aging by a known downscale. This trains a small CTC line
recogniser (convolutions only, ~0.75 M weights) on lines optimem's typesetter draws from
synthetic text (words of the spelling dictionary, with names, numbers, contractions and
punctuation; no LoCoMo text), aged from Small to Tiny and cut as `RapidOCRBackend.cut_line`
cuts them, and reads held-out LoCoMo Tiny lines with it beside PP-OCRv6 in one run.

It is a probe, not a reader: nothing in optimem uses the model.

    python benchmarks/line_model_probe.py data --turns 10500 --out .spike/train.npz
    python benchmarks/line_model_probe.py train .spike/train.npz --minutes 6 --out .spike/  # a GPU
    python benchmarks/line_model_probe.py eval .spike/crnn.pt --out benchmarks/results/line_model_probe.json

Needs torch (the `gpu` extra; the CPU build reads, a GPU trains in minutes).
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

HEIGHT = 12  # a Tiny line's crop: 6.4 px type cut 1.8 em tall, rounded out
ASCII = "".join(chr(c) for c in range(32, 127))


# -- synthetic lines -------------------------------------------------------------------------


class SyntheticText:
    """Chat-like text from the spelling dictionary's words, weighted by frequency."""

    def __init__(self, seed: int = 7) -> None:
        from optimem.aids.speller import dictionary_path

        self.rng = random.Random(seed)
        words, weights = [], []
        with open(dictionary_path(), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].isalpha():
                    words.append(parts[0])
                    weights.append(int(parts[1]) ** 0.4)  # flatter than Zipf: rarer words too
        self.words, self.cum = words, list(itertools.accumulate(weights))
        self.names = [w.capitalize() for w in self.rng.sample(words[:20000], 400)]

    def token(self) -> str:
        rng, r = self.rng, self.rng.random()
        if r < 0.04:
            return rng.choice(self.names)
        if r < 0.06:
            return str(rng.choice([rng.randint(0, 99), rng.randint(1900, 2030), rng.randint(100, 99999)]))
        if r < 0.07:
            return f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d}"
        if r < 0.10:
            return rng.choice(
                ["I'm", "don't", "it's", "I've", "that's", "can't", "you're", "didn't", "I'll", "Let's"]
            )
        if r < 0.11:
            return rng.choice(
                ["-", "&", "(ok)", '"yes"', "e.g.", "#1", "$20", "50%", "@home", "x/y", "[1]", "v2.0"]
            )
        word = rng.choices(self.words, cum_weights=self.cum)[0]
        if rng.random() < 0.03:
            word = word.upper() if len(word) < 5 else word.capitalize()
        return word

    def turn(self) -> str:
        sentences = []
        for _ in range(self.rng.randint(1, 5)):
            ws = [self.token() for _ in range(self.rng.randint(3, 18))]
            ws[0] = ws[0][:1].upper() + ws[0][1:]
            for i in range(1, len(ws) - 1):
                if self.rng.random() < 0.08:
                    ws[i] += self.rng.choice([",", ",", ";", ":", "..."])
            sentences.append(" ".join(ws) + self.rng.choice([".", ".", ".", "!", "?", "!!", "?!", "", ":)"]))
        return " ".join(sentences)


def tiny_lines(turns) -> list[tuple[np.ndarray, str]]:
    """Each prose line of `turns` typeset at Small, aged to Tiny and cut as rapidocr cuts it."""
    from optimem.backends import _lines
    from optimem.backends.rapidocr import RapidOCRBackend
    from optimem.modes import Mode
    from optimem.pages import calibration
    from optimem.pages.typeset import paginate, resize_to

    options = calibration.render_options("cpu", Mode.SMALL)
    factor = Mode.TINY.canvas / options.canvas
    rapid = RapidOCRBackend()
    out = []
    for page in paginate(turns, options):
        gray = _lines.as_gray(resize_to(page.image, Mode.TINY.canvas))
        for box in page.lines:
            if box.kind == "text":
                out.append((rapid.cut_line(gray, box.scaled(factor), options.font_px * factor), box.text))
    return out


def packed(crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Crops as one white-padded (N, 12, widest) array, and each crop's width."""
    widths = np.array([c.shape[1] for c in crops])
    x = np.full((len(crops), HEIGHT, widths.max()), 255, np.uint8)
    for i, crop in enumerate(crops):
        x[i, :, : crop.shape[1]] = crop[:HEIGHT]
    return x, widths


def save_lines(lines: list[tuple[np.ndarray, str]], path: Path) -> None:
    x, widths = packed([c for c, _ in lines])
    np.savez_compressed(path, x=x, w=widths, y=np.array([t for _, t in lines], dtype=object))


# -- the model -------------------------------------------------------------------------------


def make_model(classes: int):
    """Convolutions down to one row at full width, then dilated 1-D convolutions, then CTC
    classes at every pixel column (a Tiny character is 3–5 columns)."""
    import torch.nn as nn

    def block(i: int, o: int):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

    def temporal(i: int, o: int, dilation: int):
        return nn.Sequential(
            nn.Conv1d(i, o, 5, padding=2 * dilation, dilation=dilation), nn.BatchNorm1d(o), nn.ReLU()
        )

    class LineModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cnn = nn.Sequential(
                block(1, 32), nn.MaxPool2d((2, 1)), block(32, 64), nn.MaxPool2d((2, 1)),
                block(64, 128), block(128, 128), nn.MaxPool2d((3, 1)),
            )  # fmt: skip
            self.seq = nn.Sequential(temporal(128, 192, 1), temporal(192, 192, 2), temporal(192, 192, 4))
            self.fc = nn.Conv1d(192, classes, 1)

        def forward(self, x):  # (B, 1, 12, W) → (B, classes, W)
            return self.fc(self.seq(self.cnn(x).squeeze(2)))

    return LineModel()


def as_input(x: np.ndarray, widths: np.ndarray, ids):
    import torch

    width = min(x.shape[2], int(math.ceil(widths[ids].max() / 32) * 32))  # few shapes for cuDNN
    return torch.from_numpy((255 - x[ids, :, :width]).astype(np.float32) / 255).unsqueeze(1)


def greedy(logits, chars: list[str]) -> list[str]:
    out = []
    for row in logits.argmax(1).cpu().numpy():
        keep = np.r_[True, row[1:] != row[:-1]] & (row != 0)
        out.append("".join(chars[k - 1] for k in row[keep]))
    return out


def train(data: Path, minutes: float, out: Path) -> None:
    import torch
    import torch.nn as nn

    device = "cuda" if torch.cuda.is_available() else "cpu"
    d = np.load(data, allow_pickle=True)
    x, widths, texts = d["x"], d["w"], list(d["y"])
    chars = sorted({c for t in texts for c in t} | set(ASCII))
    index = {c: i + 1 for i, c in enumerate(chars)}  # 0 is CTC's blank
    model = make_model(len(chars) + 1).to(device)
    held = set(range(0, len(texts), 50))
    order = np.argsort(widths)
    batches = [b for b in (order[i : i + 64] for i in range(0, len(order), 64))]
    batches = [b[[i not in held for i in b]] for b in batches]
    batches = [b for b in batches if len(b)]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    ctc = nn.CTCLoss(zero_infinity=True)
    t0, epoch = time.time(), 0
    while time.time() - t0 < minutes * 60:
        random.shuffle(batches)
        model.train()
        for b in batches:
            done = min(1.0, (time.time() - t0) / (minutes * 60))
            for group in opt.param_groups:
                group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * done))
            targets = [torch.tensor([index[c] for c in texts[i]]) for i in b]
            logp = model(as_input(x, widths, b).to(device)).log_softmax(1).permute(2, 0, 1)
            lengths = torch.full((len(b),), logp.shape[0], dtype=torch.long)
            loss = ctc(logp, torch.cat(targets).to(device), lengths, torch.tensor([len(t) for t in targets]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch += 1
        model.eval()
        ids = np.array(sorted(held, key=lambda i: widths[i]))
        with torch.no_grad():
            read = [t for s in range(0, len(ids), 128) for t in greedy(model(as_input(x, widths, ids[s : s + 128]).to(device)), chars)]  # fmt: skip
        right = sum(t == texts[i] for t, i in zip(read, ids, strict=True))
        print(f"epoch {epoch}: loss {loss.item():.4f}, held-out synthetic lines exact {right}/{len(ids)}, {time.time() - t0:.0f} s", flush=True)  # fmt: skip
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save({"state": state, "chars": chars, "minutes": minutes, "device": device, "lines": len(texts)}, out / "crnn.pt")  # fmt: skip


# -- reading held-out LoCoMo lines beside PP-OCRv6 -------------------------------------------


def evaluate(weights: Path, chats: list[str], pages: int) -> dict:
    import crop_height
    import torch

    from optimem.backends._recogniser import LineRecogniser
    from optimem.backends.rapidocr import RapidOCRBackend
    from optimem.bench.machine import cores, cpu_name
    from optimem.reading.fidelity import fidelity

    torch.set_num_threads(2)
    saved = torch.load(weights, weights_only=False)
    chars = saved["chars"]
    model = make_model(len(chars) + 1)
    model.load_state_dict(saved["state"])
    model.eval()
    rapid, pp = RapidOCRBackend(), LineRecogniser(threads=2)
    raw, upscaled, truth = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "pages.db")
        crop_height.build(db, chats, pages, chinese=False)
        for gray, box, font_px in crop_height.tiny_line_boxes(db):
            raw.append(rapid.cut_line(gray, box, font_px))
            upscaled.append(rapid._crop(gray, box, font_px))
            truth.append(box.text)
    x, widths = packed(raw)
    order = np.argsort(widths)

    def probe_read() -> list[str]:
        texts = [""] * len(raw)
        with torch.no_grad():
            for s in range(0, len(order), 8):
                ids = order[s : s + 8]
                for i, t in zip(ids, greedy(model(as_input(x, widths, ids)), chars), strict=True):
                    texts[i] = t
        return texts

    readers = {"line model probe (torch, batch 8)": probe_read, "PP-OCRv6 (onnxruntime, batch 8)": lambda: pp.read(upscaled)[0]}  # fmt: skip
    for read in readers.values():
        read()  # first runs outside the timing
    seconds: dict[str, list[float]] = {k: [] for k in readers}
    texts: dict[str, list[str]] = {}
    for _ in range(2):
        for name, read in readers.items():  # interleaved
            t0 = time.perf_counter()
            texts[name] = read()
            seconds[name].append(time.perf_counter() - t0)
    rows = []
    for name, got in texts.items():
        rows.append({
            "reader": name,
            "ms_per_line": round(1000 * statistics.median(seconds[name]) / len(raw), 1),
            "lines_words_right": crop_height.words_right(got, truth),
            "lines_exact_to_the_character": sum(t == w for t, w in zip(got, truth, strict=True)),
            "fidelity": round(statistics.fmean(fidelity(t, w) for t, w in zip(got, truth, strict=True)), 4),
        })  # fmt: skip
    return {
        "machine": f"{cpu_name()}, {cores()} cores",
        "inputs": f"{len(raw)} distinct held-out lines: LoCoMo {','.join(chats)}, the first {pages} full pages of "
        "each typeset at Small and aged to Tiny; each reader's raw output (no correction, no re-reading)",
        "lines": len(raw),
        "model": {k: saved.get(k) for k in ("minutes", "device", "lines")}
        | {"weights": sum(v.numel() for v in saved["state"].values() if v.dtype.is_floating_point)},
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="synthetic Tiny lines for training")
    d.add_argument("--turns", type=int, default=10500)
    d.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train", help="train the probe model (a GPU if torch sees one)")
    t.add_argument("data", type=Path)
    t.add_argument("--minutes", type=float, default=6)
    t.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("eval", help="read held-out LoCoMo Tiny lines with it and with PP-OCRv6")
    e.add_argument("weights", type=Path)
    e.add_argument("--chats", default="42,43")
    e.add_argument("--pages", type=int, default=8)
    e.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.cmd == "data":
        from optimem.pages.typeset import TurnText

        text = SyntheticText()
        turns = [
            TurnText(i, text.rng.choice(["user", "assistant"]), text.turn(), None) for i in range(args.turns)
        ]
        lines = tiny_lines(turns)
        save_lines(lines, args.out)
        print(f"{len(lines)} synthetic Tiny lines → {args.out}")
    elif args.cmd == "train":
        train(args.data, args.minutes, args.out)
    else:
        doc = evaluate(args.weights, args.chats.split(","), args.pages)
        for row in doc["rows"]:
            print(f"{row['reader']:34} {row['ms_per_line']:6.1f} ms/line  words right {row['lines_words_right']}/"
                  f"{doc['lines']}  exact {row['lines_exact_to_the_character']}  fidelity {100 * row['fidelity']:.2f}%")  # fmt: skip
        write_json(args.out, doc)


if __name__ == "__main__":
    main()
