"""Build optimem/data/line_model.onnx: optimem's own reader for the Latin lines of aged pages.

Pages aged below the CPU backend's `blur_px` were read line by line with rapidocr's PP-OCRv6
recogniser (36 ms a line on two cores): a general model for any font and script. optimem's
own aged lines are far narrower: one type family, typeset at 8 px and shrunk to 6.4 px
(Small → Tiny), cut 12 px tall. This trains a small CTC line model on such lines (convolutions
only, 0.75 M weights) from synthetic text (words of the spelling dictionary weighted by
frequency, with names, numbers, times, contractions and punctuation; no benchmark text) and
exports it to ONNX with its character table, so the CPU install reads with onnxruntime alone.

The shipped model was built by exactly these steps: 23,581 lines and 5 minutes on one H200,
then 12,532 lines that also hold hyphenated words, slashes and identifiers (the first set had
hyphens only between words, and the model read "self-care" as "selfrcare") and 18 minutes on
the dev machine's two CPU cores, from those weights; then 24,000 of 27,430 lines, half of
their pages moved 1-4 Small pixels off the line grid (the model before read the lines below a
taller line as noise), 6 minutes on one H200 from the model then shipped:

    python scripts/train_line_model.py data --turns 10500 --out .spike/train.npz   # CPU, ~1 min
    python scripts/train_line_model.py train .spike/train.npz --minutes 5 --out .spike/run  # a GPU
    python scripts/train_line_model.py data --turns 5000 --seed 8 --compounds --out .spike/ft.npz
    python scripts/train_line_model.py train .spike/ft.npz --init .spike/run/crnn.pt --lr 3e-4 \
        --minutes 18 --out .spike/ft
    python scripts/train_line_model.py export .spike/ft/crnn.pt --out optimem/data/line_model.onnx
    python scripts/train_line_model.py data --turns 11000 --seed 10 --compounds --shifts 4 \
        --out .spike/shift.npz               # then 24,000 of its lines drawn with numpy's seed 1
    python scripts/train_line_model.py train .spike/shift.npz --init optimem/data/line_model.onnx \
        --lr 3e-4 --minutes 6 --out .spike/ft2       # a GPU box without onnx: torch.save(from_onnx(...))
    python scripts/train_line_model.py export .spike/ft2/crnn.pt --out optimem/data/line_model.onnx

Render the lines where optimem reads them: Pillow lays text out with raqm when libfribidi is
present and with its basic layout when not, and a model trained on one reads the other badly
(219 of 1,008 held-out lines with every word right, against 888). `data` says which it used.
Training needs torch (the `gpu` extra); `export` needs `onnx`. benchmarks/line_model.py reads
held-out LoCoMo lines with the result beside PP-OCRv6.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import time
from pathlib import Path

import numpy as np

HEIGHT = 12  # a Tiny line's crop: 6.4 px type cut 1.8 em tall, rounded out
ASCII = "".join(chr(c) for c in range(32, 127))


# -- synthetic lines -------------------------------------------------------------------------


class SyntheticText:
    """Chat-like text from the spelling dictionary's words, weighted by frequency."""

    def __init__(self, dictionary: str, seed: int = 7, compounds: bool = False) -> None:
        self.rng = random.Random(seed)
        self.compounds = compounds
        words, weights = [], []
        with open(dictionary, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].isalpha():
                    words.append(parts[0])
                    weights.append(int(parts[1]) ** 0.4)  # flatter than Zipf: rarer words too
        self.words, self.cum = words, list(itertools.accumulate(weights))
        self.names = [w.capitalize() for w in self.rng.sample(words[:20000], 400)]

    def compound(self) -> str:
        """Words joined by hyphens or a slash, and identifiers: the characters a word holds
        inside it that the first data set had only between words."""
        rng = self.rng

        def word() -> str:
            return rng.choices(self.words, cum_weights=self.cum)[0]

        def caps(n: int) -> str:
            return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))

        r = rng.random()
        if r < 0.45:
            return f"{word()}-{word()}"
        if r < 0.55:
            return f"{word()}-{word()}-{word()}"
        if r < 0.63:
            return f"{word()}/{word()}"
        return rng.choice(
            [
                f"{caps(rng.randint(2, 4))}-{rng.randint(1, 99999)}",
                f"v{rng.randint(0, 12)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
                f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                f"{word()}_{word()}",
                f"{word()}.{word()}@{word()}.com",
                f"https://{word()}.com/{word()}-{rng.randint(1, 999)}",
                f"{rng.randint(1, 99)}{rng.choice(['st', 'nd', 'rd', 'th'])}",
                f"{caps(1)}{rng.randint(1, 9)}-{caps(2)}{rng.randint(10, 99)}",
                f"{word()}.{rng.choice(['py', 'js', 'md', 'txt', 'json'])}",
                f"{rng.randint(1, 9)}.{rng.randint(0, 99)}%",
            ]
        )

    def token(self) -> str:
        if self.compounds and self.rng.random() < 0.12:
            return self.compound()
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


def tiny_lines(turns, shifts: int = 0, seed: int = 7) -> list[tuple[np.ndarray, str]]:
    """Each prose line of `turns` typeset at Small, aged to Tiny and cut as the line model
    reads it (`optimem.backends.line_model.cut_line`), with its text."""
    from optimem.backends.line_model import cut_line

    return [
        (cut_line(gray, box, font_px), box.text) for gray, box, font_px in tiny_boxes(turns, shifts, seed)
    ]


def tiny_boxes(turns, shifts: int = 0, seed: int = 7, moved: float = 0.5):
    """(grey Tiny page, line box on it, type size) of each prose line of `turns` typeset at
    Small and aged to Tiny.

    With `shifts`, a share `moved` of the pages (chosen at random) are first moved down by 1 to
    `shifts` Small pixels: a taller line above (a Chinese line, an emoji) puts the lines below it off the
    8-pixel grid of an all-Latin page, so they shrink to Tiny at another sub-pixel phase and
    their boxes round a pixel otherwise. A model that saw only the grid's phase read such lines
    as noise (a page of the embedded chat at 23% fidelity)."""
    import dataclasses

    from PIL import Image

    from optimem.backends import _lines
    from optimem.modes import Mode
    from optimem.pages import calibration
    from optimem.pages.typeset import paginate, resize_to

    options = calibration.render_options("cpu", Mode.SMALL)
    factor = Mode.TINY.canvas / options.canvas
    rng = random.Random(seed)
    for page in paginate(turns, options):
        image, shift = page.image, (rng.randint(1, shifts) if shifts and rng.random() < moved else 0)
        if shift:
            image = Image.new(page.image.mode, page.image.size, "white")
            image.paste(page.image, (0, shift))
        gray = _lines.as_gray(resize_to(image, Mode.TINY.canvas))
        for box in page.lines:
            if box.kind == "text":
                box = dataclasses.replace(box, y0=box.y0 + shift, y1=box.y1 + shift)
                yield gray, box.scaled(factor), options.font_px * factor


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


def _greedy(logits, chars: list[str]) -> list[str]:
    out = []
    for row in logits.argmax(1).cpu().numpy():
        keep = np.r_[True, row[1:] != row[:-1]] & (row != 0)
        out.append("".join(chars[k - 1] for k in row[keep]))
    return out


def train(data: Path, minutes: float, out: Path, init: Path | None = None, lr: float = 2e-3) -> None:
    """AdamW with a cosine schedule from `lr` for `minutes`, afresh or from `init`'s weights."""
    import torch
    import torch.nn as nn

    device = "cuda" if torch.cuda.is_available() else "cpu"
    d = np.load(data, allow_pickle=True)
    x, widths, texts = d["x"], d["w"], list(d["y"])
    chars = sorted({c for t in texts for c in t} | set(ASCII))
    index = {c: i + 1 for i, c in enumerate(chars)}  # 0 is CTC's blank
    model = make_model(len(chars) + 1).to(device)
    folded = False
    if init is not None:
        start = from_onnx(model, init) if init.suffix == ".onnx" else torch.load(init, weights_only=False)
        if start["chars"] != chars:
            raise SystemExit(f"{init} reads other characters than this data holds")
        model.load_state_dict(start["state"])
        folded = start.get("folded", False)
    held = set(range(0, len(texts), 50))
    order = np.argsort(widths)
    batches = [b for b in (order[i : i + 64] for i in range(0, len(order), 64))]
    batches = [b[[i not in held for i in b]] for b in batches]
    batches = [b for b in batches if len(b)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    ctc = nn.CTCLoss(zero_infinity=True)
    t0, epoch = time.time(), 0
    while time.time() - t0 < minutes * 60:
        random.shuffle(batches)
        model.train()
        if folded:  # the batch norms stay the identity the ONNX weights were folded through
            for m in model.modules():
                if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                    m.eval()
        for b in batches:
            done = min(1.0, (time.time() - t0) / (minutes * 60))
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * done))
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
            read = [t for s in range(0, len(ids), 128) for t in _greedy(model(as_input(x, widths, ids[s : s + 128]).to(device)), chars)]  # fmt: skip
        right = sum(t == texts[i] for t, i in zip(read, ids, strict=True))
        print(f"epoch {epoch}: loss {loss.item():.4f}, held-out synthetic lines exact {right}/{len(ids)}, {time.time() - t0:.0f} s", flush=True)  # fmt: skip
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    record = {"minutes": minutes, "device": device, "lines": len(texts)}
    if init is not None:  # a fine-tune: keep what it started from
        record["from"] = start.get("meta") or {k: start.get(k) for k in ("minutes", "device", "lines")}
    torch.save({"state": state, "chars": chars, "meta": record, **record}, out / "crnn.pt")


def from_onnx(model, path: Path) -> dict:
    """Load an exported model's weights into `model` (a `make_model`), whose batch norms
    become the identity: export folded them into the convolutions. Returns a start as `train`
    saves one (where onnx is missing, as on a GPU box, `torch.save` it and pass that)."""
    import json

    import onnx
    import torch
    import torch.nn as nn
    from onnx import numpy_helper

    graph = onnx.load(str(path))
    weights = [numpy_helper.to_array(t) for t in graph.graph.initializer]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]
    fc = weights[:2]  # the classifier keeps its own names and comes first
    pairs = [*zip(weights[2::2], weights[3::2], strict=True), (fc[0], fc[1])]
    if len(pairs) != len(convs):
        raise SystemExit(f"{path} does not hold this model's {len(convs)} convolutions")
    with torch.no_grad():
        for conv, (w, b) in zip(convs, pairs, strict=True):
            if tuple(conv.weight.shape) != w.shape:
                raise SystemExit(
                    f"{path}: a {w.shape} convolution where this model has {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(torch.from_numpy(w.copy()))
            conv.bias.copy_(torch.from_numpy(b.copy()))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.reset_parameters()
                m.eps = 0.0  # the exact identity
    meta = {p.key: p.value for p in graph.metadata_props}
    return {
        "state": {k: v.cpu() for k, v in model.state_dict().items()},
        "chars": meta["character"].split("\n"),
        "meta": json.loads(meta.get("trained", "{}")),
        "folded": True,
    }


def export(weights: Path, out: Path) -> None:
    """The model as ONNX with a softmax on its output, (batch, width, classes) as PP-OCR's
    recogniser has it, and its character table and training record in the metadata."""
    import json

    import onnx
    import torch

    saved = torch.load(weights, weights_only=False)
    chars = saved["chars"]
    saved.setdefault("meta", {k: saved.get(k) for k in ("minutes", "device", "lines")})
    model = make_model(len(chars) + 1)
    model.load_state_dict(saved["state"])
    model.eval()

    class Probabilities(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x).softmax(1).transpose(1, 2)

    example = torch.rand(2, 1, HEIGHT, 96)
    torch.onnx.export(
        Probabilities(), (example,), str(out), input_names=["crops"], output_names=["probs"],
        dynamic_axes={"crops": {0: "batch", 3: "width"}, "probs": {0: "batch", 1: "width"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    graph = onnx.load(str(out))
    for key, value in {"character": "\n".join(chars), "height": str(HEIGHT), "trained": json.dumps(saved["meta"])}.items():  # fmt: skip
        graph.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(graph, str(out))
    print(f"→ {out} ({out.stat().st_size / 1e6:.1f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="synthetic Tiny lines for training (CPU)")
    d.add_argument("--turns", type=int, default=10500)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--compounds", action="store_true", help="also hyphenated words, slashes and identifiers")
    d.add_argument(
        "--shifts",
        type=int,
        default=0,
        help="move half the pages down by 1 to this many Small pixels (off the line grid)",
    )
    d.add_argument("--dictionary", help="a word-frequency file (default: symspellpy's English one)")
    d.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train", help="train the model (a GPU if torch sees one)")
    t.add_argument("data", type=Path)
    t.add_argument("--minutes", type=float, default=5)
    t.add_argument(
        "--init",
        type=Path,
        help="start from these weights (crnn.pt, or an exported .onnx) rather than afresh",
    )
    t.add_argument("--lr", type=float, default=2e-3, help="the learning rate the cosine starts from")
    t.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("export", help="write the trained model as ONNX")
    e.add_argument("weights", type=Path)
    e.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "data":
        from PIL import features

        from optimem.pages.typeset import TurnText

        if args.dictionary is None:
            from optimem.aids.speller import dictionary_path

            args.dictionary = dictionary_path()
        text = SyntheticText(args.dictionary, args.seed, args.compounds)
        turns = [
            TurnText(i, text.rng.choice(["user", "assistant"]), text.turn(), None) for i in range(args.turns)
        ]
        lines = tiny_lines(turns, args.shifts, args.seed)
        save_lines(lines, args.out)
        layout = "raqm" if features.check("raqm") else "basic (no libfribidi: not how optimem reads here)"
        print(f"{len(lines)} synthetic Tiny lines → {args.out}; Pillow's text layout: {layout}")
    elif args.cmd == "train":
        train(args.data, args.minutes, args.out, args.init, args.lr)
    else:
        export(args.weights, args.out)


if __name__ == "__main__":
    main()
