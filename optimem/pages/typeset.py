"""Render chat turns into dense square page images. No I/O, no models.

Each page keeps its layout (one box per line, in pixels of the canvas it was typeset on)
and which characters of which turns it holds, so a decoder can read line by line and a
recalled page can be split back into turns.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageDraw

from .. import fonts
from ..errors import InputError, RenderError
from ..layout import CJK_CHAR, LineBox, Span, placeholder, speaker, tab_stop
from ..modes import Mode

# Emoji and pictographs: fonts may draw them, but no OCR reads them back, so they get a
# placeholder that does survive the round trip.
_EMOJI = re.compile(r"[\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d\U0001f000-\U0001faff]")
_FENCE = re.compile(r"^\s*(```|~~~)")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")  # a markdown table row keeps its shape


@dataclass(frozen=True)
class TurnText:
    """The part of a turn a page needs: id, speaker and text."""

    turn_id: int
    role: str
    content: str
    name: str | None = None

    @property
    def label(self) -> str:
        """Speaker label typeset before the turn's first line."""
        return speaker(self.role, self.name) + ": "


@dataclass(frozen=True)
class RenderOptions:
    """How densely to typeset. Font sizes are pixels per em on the creation canvas."""

    canvas: int = Mode.LARGE.canvas
    font_px: int = 10
    cjk_font_px: int | None = None
    """Size for lines holding CJK (CJK needs more pixels per glyph); defaults to font_px."""
    code_font_px: int | None = None
    """Size for monospace lines (code, tool output, lines with tabs: OCR misreads brackets
    and operators at prose sizes); defaults to font_px."""
    margin_px: int | None = None
    line_spacing: float = 1.2
    cjk_line_spacing: float = 1.45

    def __post_init__(self) -> None:
        if not 64 <= self.canvas <= 8192:
            raise InputError(f"canvas must be 64–8192 px, got {self.canvas}")
        if not 4 <= self.font_px <= self.canvas // 4:
            raise InputError(f"font_px must be 4–{self.canvas // 4}, got {self.font_px}")
        if self.cjk_font_px is not None and not 4 <= self.cjk_font_px <= self.canvas // 4:
            raise InputError(f"cjk_font_px must be 4–{self.canvas // 4}, got {self.cjk_font_px}")
        if self.code_font_px is not None and not 4 <= self.code_font_px <= self.canvas // 4:
            raise InputError(f"code_font_px must be 4–{self.canvas // 4}, got {self.code_font_px}")

    @property
    def margin(self) -> int:
        return self.margin_px if self.margin_px is not None else max(3, self.font_px // 2 + 1)

    @property
    def cjk_px(self) -> int:
        return self.cjk_font_px or self.font_px

    @property
    def code_px(self) -> int:
        return self.code_font_px or self.font_px


@dataclass(frozen=True)
class RenderedPage:
    """A typeset page: the image at its creation canvas, its lines and the turns it holds."""

    image: Image.Image
    options: RenderOptions
    lines: tuple[LineBox, ...]
    spans: tuple[Span, ...]
    has_cjk: bool = False

    @property
    def text(self) -> str:
        """What the page shows, one line per row: the reference a decoder is scored against."""
        return "\n".join(line.text for line in self.lines)

    @property
    def turn_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(s.turn_id for s in self.spans))


# ---------------------------------------------------------------------------------------------
# Text → runs of one font


@dataclass
class _Run:
    text: str
    font: str  # 'sans', 'bold', 'mono', 'cjk'
    src_start: int
    src_end: int
    breakable_after: bool = False  # a space or a CJK character: a line may end here
    hard: int = 0  # line breaks of the source this space stands for (prose flows; recall restores them)


@dataclass
class _Line:
    runs: list[_Run] = field(default_factory=list)
    width: float = 0.0
    kind: str = "text"
    tabs: bool = False

    @property
    def text(self) -> str:
        return "".join(r.text for r in self.runs)


#: Word widths a typesetter remembers before it starts again (a bound for long-running services).
WIDTH_CACHE = 500_000


class _Typesetter:
    def __init__(self, options: RenderOptions) -> None:
        self.options = options
        files = fonts.font_files()
        self.paths = {"sans": files.sans, "bold": files.sans_bold, "mono": files.mono}
        if files.cjk is not None:
            self.paths["cjk"] = files.cjk
        self.sizes = {k: options.font_px for k in self.paths}
        self.sizes["cjk"] = options.cjk_px
        self.sizes["mono"] = options.code_px
        self.charsets = {k: fonts.charset(p) for k, p in self.paths.items()}
        self._widths: dict[tuple[str, str], float] = {}

    def font(self, key: str):
        return fonts.load(self.paths[key], self.sizes[key])

    def width(self, text: str, key: str) -> float:
        w = self._widths.get((key, text))
        if w is None:
            if len(self._widths) >= WIDTH_CACHE:
                self._widths.clear()  # a typesetter lives as long as the process
            w = self.font(key).getlength(text)
            self._widths[(key, text)] = w
        return w

    def stamp(self, image: Image.Image, text: str, key: str, x: int, baseline: int) -> None:
        """Draw `text` with its baseline at (x, baseline), from a cache of word bitmaps.

        Chat text repeats its words, so drawing each distinct word once and pasting it is
        about twice as fast as asking FreeType for every glyph of a dense page.
        """
        glyph = _word_bitmap(self.paths[key], self.sizes[key], text)
        if glyph is not None:
            mask, left, top = glyph
            image.paste(0, (x + left, baseline + top), mask)

    def font_for(self, ch: str, base: str) -> str | None:
        cp = ord(ch)
        if _EMOJI.match(ch):
            return None
        if CJK_CHAR.match(ch) and "cjk" in self.charsets and cp in self.charsets["cjk"]:
            return "cjk"
        if cp in self.charsets[base]:
            return base
        if base != "sans" and cp in self.charsets["sans"]:
            return "sans"
        return None  # emoji and the rest: a readable placeholder, never tofu

    def runs(self, text: str, offset: int, base: str) -> Iterator[_Run]:
        """Split text into unbreakable pieces, each in one font: words, spaces, CJK glyphs."""
        word: list[str] = []
        word_start = offset
        word_font = base

        def flush(end: int) -> Iterator[_Run]:
            nonlocal word
            if word:
                yield _Run("".join(word), word_font, word_start, end)
                word = []

        for i, ch in enumerate(text):
            pos = offset + i
            if ch == "\t":
                yield from flush(pos)
                yield _Run("    ", base, pos, pos + 1, breakable_after=True)
                continue
            if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
                key = None if not ch.isspace() or ch in "\u2028\u2029\x1c\x1d\x1e\x1f\x85" else base
                if key is None:  # controls, format and unassigned code points: show them
                    yield from flush(pos)
                    yield _Run(placeholder(ch), base, pos, pos + 1)
                    continue
                yield from flush(pos)
                yield _Run(" ", base, pos, pos + 1, breakable_after=True)
                continue
            key = self.font_for(ch, base)
            if key is None:
                yield from flush(pos)
                yield _Run(placeholder(ch), base, pos, pos + 1)
                continue
            if key == "cjk":
                yield from flush(pos)
                yield _Run(ch, "cjk", pos, pos + 1, breakable_after=True)
                continue
            if word and word_font != key:
                yield from flush(pos)
            if not word:
                word_start, word_font = pos, key
            word.append(ch)
        yield from flush(offset + len(text))

    def pre_runs(self, text: str, offset: int) -> tuple[list[_Run], bool]:
        """Runs of one preformatted line in monospace, tabs expanded to tab stops.

        Columns are counted in monospace advances from the line's start, so a tab lands on
        the same stop whatever precedes it. Returns the runs and whether the line had tabs.
        """
        runs: list[_Run] = []
        advance = self.width(" ", "mono")
        width = 0.0
        pos = offset
        for i, piece in enumerate(text.split("\t")):
            if i:
                column = round(width / advance)
                n = tab_stop(column) - column
                runs.append(_Run(" " * n, "mono", pos, pos + 1, breakable_after=True))
                width += n * advance
                pos += 1
            for run in self.runs(piece, pos, "mono"):
                runs.append(run)
                width += self.width(run.text, run.font)
            pos += len(piece)
        return runs, "\t" in text


@lru_cache(maxsize=65536)
def _word_bitmap(path, size: int, text: str) -> tuple[Image.Image, int, int] | None:
    font = fonts.load(path, size)
    left, top, right, bottom = (int(v) for v in font.getbbox(text, anchor="ls"))
    if right <= left or bottom <= top:
        return None
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255, anchor="ls")
    return mask, left, top


# ---------------------------------------------------------------------------------------------
# Paragraphs → lines


def _paragraphs(content: str, pre: bool = False) -> Iterator[tuple[int, str, str]]:
    """(offset, text, kind) for each line of the content; preformatted lines are 'code':
    fenced code, lines holding a tab, markdown table rows, and every line when `pre` (a tool
    turn's output)."""
    in_code = False
    offset = 0
    for raw in content.split("\n"):
        preformatted = pre or in_code or _FENCE.match(raw) or "\t" in raw or _TABLE_ROW.match(raw)
        kind = "code" if preformatted else "text"
        if _FENCE.match(raw):
            in_code = not in_code
        yield offset, raw, kind
        offset += len(raw) + 1


def _blocks(content: str, ts: _Typesetter, pre: bool = False) -> Iterator[tuple[list[_Run], str, bool]]:
    """Runs of each block to wrap, its kind, and whether it had tabs: prose paragraphs flow
    together (a line break in chat text costs a whole page row, and recall is scored on
    normalised whitespace), while each preformatted line (fenced code, tool output with
    `pre`, a line with tabs) keeps its own row in monospace, tabs expanded to tab stops."""
    prose: list[_Run] = []
    last_end = 0  # where the last prose paragraph drawn ended
    for offset, text, kind in _paragraphs(content, pre):
        if kind == "code":
            if prose:
                yield prose, "text", False
                prose = []
            runs, tabs = ts.pre_runs(text, offset)
            yield runs, "code", tabs
            continue
        runs = list(ts.runs(text, offset, "sans"))
        if not runs:
            continue
        if prose:  # the line breaks since the last paragraph (blank lines too) flow as one space
            prose.append(_Run(" ", "sans", offset - 1, offset, breakable_after=True, hard=offset - last_end))
        prose.extend(runs)
        last_end = offset + len(text)
    if prose:
        yield prose, "text", False


def _split_long(run: _Run, ts: _Typesetter, max_w: float) -> Iterator[_Run]:
    """Break a word wider than a line into pieces that fit (URLs, hashes, base64)."""
    piece_start = 0
    text = run.text
    placeholder_run = len(text) > 1 and run.src_end - run.src_start == 1
    if placeholder_run:
        yield run
        return
    while piece_start < len(text):
        end = piece_start + 1
        while end < len(text) and ts.width(text[piece_start : end + 1], run.font) <= max_w:
            end += 1
        yield _Run(text[piece_start:end], run.font, run.src_start + piece_start, run.src_start + end)
        piece_start = end


def _wrap(
    runs: Iterable[_Run], ts: _Typesetter, first_indent: float, max_w: float, kind: str, tabs: bool = False
) -> Iterator[_Line]:
    """Lines of `runs`. Prose drops the space at a break; a preformatted line carries it to
    the next row's start, where it reads as indentation and the characters stay contiguous
    (a row that starts where the last one ended is a wrap, not a line break)."""
    line = _Line(width=first_indent, kind=kind, tabs=tabs)
    pending: list[_Run] = []  # the current unbreakable group (a word and its trailing space)
    hard_break: _Run | None = None  # a source line break dropped at a wrap: the next row starts after it
    for run in runs:
        w = ts.width(run.text, run.font)
        pieces = list(_split_long(run, ts, max_w)) if w > max_w else [run]
        for piece in pieces:
            pw = ts.width(piece.text, piece.font)
            if line.width + pw > max_w and line.runs:
                if piece.text == " " and kind != "code":
                    if piece.hard:  # not drawn, but remembered (no offsets: it is on neither row)
                        hard_break = _Run("", piece.font, piece.src_end, piece.src_end, hard=piece.hard)
                    continue  # a space at a break is not drawn
                yield line
                line = _Line(kind=kind, tabs=tabs)
                if hard_break is not None:
                    line.runs.append(hard_break)
                    hard_break = None
            if not line.runs and piece.text == " " and kind != "code":
                # keep offsets honest: an eaten leading space still belongs to this line
                line.runs.append(_Run("", piece.font, piece.src_start, piece.src_end, hard=piece.hard))
                continue
            line.runs.append(piece)
            line.width += pw
    del pending
    if line.runs:
        yield line


def _breaks(line: _Line) -> tuple[int, ...]:
    """Where the source had line breaks on this prose row: the count of words drawn before
    each (0: the row starts after one), once per break (a blank line is two)."""
    out, words = [], 0
    for run in line.runs:
        out += [words] * run.hard
        words += len(run.text.split())
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Public entry points


@lru_cache(maxsize=32)
def _typesetter(options: RenderOptions) -> _Typesetter:
    """One typesetter per set of options, kept between calls: its word widths are measured
    once per process, not once per page."""
    return _Typesetter(options)


@lru_cache(maxsize=1024)
def _turn_lines(options: RenderOptions, role: str, name: str | None, content: str) -> tuple[_Line, ...]:
    """A turn broken into rows, remembered: a pager typesets the same turns again as new ones
    arrive (the page it holds back, a reopened last page), and a turn's rows do not depend on
    where on the page it lands. The rows are never changed once made."""
    ts = _typesetter(options)
    max_w = options.canvas - 2 * options.margin
    turn = TurnText(0, role, content, name)
    label_run = _Run(turn.label, "bold", 0, 0)
    label_w = ts.width(turn.label, "bold")
    first = True
    blocks = list(_blocks(content, ts, pre=role == "tool"))
    blocks = blocks or [([_Run("", "sans", 0, 0)], "text", False)]
    lines: list[_Line] = []
    if blocks[0][1] == "code":
        # text kept as typed starts on the row after the label, so that every monospace
        # row's columns start at the margin (a decoder measures them from there)
        lines.append(_Line([label_run], label_w))
        first = False
    for runs, kind, tabs in blocks:
        if not runs:
            continue  # a blank line inside code
        lines.extend(_wrap(runs, ts, label_w if first else 0.0, max_w, kind, tabs))
        if first and lines:
            lines[0].runs.insert(0, label_run)
            first = False
    return tuple(lines)


@dataclass(frozen=True)
class PageLayout:
    """A page typeset but not drawn yet: its lines, its turns and where every word goes.

    Drawing is most of typesetting's cost, and a pager often needs only the layout: a last
    page that is not full yet waits for more turns, and is thrown away unseen.
    """

    options: RenderOptions
    lines: tuple[LineBox, ...]
    spans: tuple[Span, ...]
    has_cjk: bool
    words: tuple[tuple[str, str, int, int], ...]
    """(text, font, x, baseline) of every word to draw."""

    @property
    def fill(self) -> float:
        """Share of the page's height that holds text."""
        return self.lines[-1].y1 / self.options.canvas if self.lines else 0.0

    def draw(self) -> RenderedPage:
        """The page's image, and the page."""
        ts = _typesetter(self.options)
        canvas = self.options.canvas
        image = Image.new("L", (canvas, canvas), 255)
        for text, font, x, baseline in self.words:
            ts.stamp(image, text, font, x, baseline)
        return RenderedPage(image, self.options, self.lines, self.spans, self.has_cjk)


def lay_out(turns: Sequence[TurnText], options: RenderOptions) -> list[PageLayout]:
    """Typeset turns in order onto as many pages as they need, without drawing them.

    Pages are filled to the bottom; a turn longer than the space left continues on the next
    page, and every character of every turn lands on exactly one page.
    """
    if not turns:
        return []
    canvas, margin = options.canvas, options.margin
    latin_h = max(options.font_px + 1, round(options.font_px * options.line_spacing))
    code_h = max(options.code_px + 1, round(options.code_px * options.line_spacing))
    cjk_h = max(options.cjk_px + 1, round(options.cjk_px * options.cjk_line_spacing))

    pages: list[PageLayout] = []
    placed: list[tuple[_Line, int, int]] = []  # line, turn_id, height
    y = margin

    def finish_page() -> None:
        nonlocal placed, y
        if placed:
            pages.append(_layout(placed, options))
        placed, y = [], margin

    for turn in turns:
        for line in _turn_lines(options, turn.role, turn.name, turn.content):
            if any(r.font == "cjk" for r in line.runs):
                height = cjk_h
            else:
                height = code_h if line.kind == "code" else latin_h
            if y + height > canvas - margin and placed:
                finish_page()
            if height > canvas - 2 * margin:
                raise RenderError(f"a {height}px line cannot fit a {canvas}px page")
            placed.append((line, turn.turn_id, height))
            y += height
    finish_page()
    return pages


def paginate(turns: Sequence[TurnText], options: RenderOptions) -> list[RenderedPage]:
    """Typeset turns in order onto as many pages as they need, and draw them (see `lay_out`)."""
    return [page.draw() for page in lay_out(turns, options)]


def _layout(placed: list[tuple[_Line, int, int]], options: RenderOptions) -> PageLayout:
    ts = _typesetter(options)
    margin = options.margin
    boxes: list[LineBox] = []
    words: list[tuple[str, str, int, int]] = []
    spans: dict[int, list[int]] = {}
    y = margin
    has_cjk = False
    for line, turn_id, height in placed:
        x = float(margin)
        baseline = y + round(height * 0.78)
        for run in line.runs:
            if run.text and not run.text.isspace():
                words.append((run.text, run.font, round(x), baseline))
            x += ts.width(run.text, run.font)
            has_cjk = has_cjk or run.font == "cjk"
        src = [r for r in line.runs if r.font != "bold" or r.src_end > r.src_start]
        start = min((r.src_start for r in src), default=0)
        end = max((r.src_end for r in src), default=0)
        boxes.append(
            LineBox(
                margin,
                y,
                max(margin + 1, round(x)),
                y + height,
                line.text,
                turn_id,
                start,
                end,
                line.kind,
                line.tabs,
                float(options.code_px) if line.kind == "code" else 0.0,
                _breaks(line),
            )
        )
        if end > start or turn_id not in spans:
            lo, hi = spans.setdefault(turn_id, [start, end])
            spans[turn_id] = [min(lo, start), max(hi, end)]
        y += height
    return PageLayout(
        options=options,
        lines=tuple(boxes),
        spans=tuple(Span(t, lo, hi) for t, (lo, hi) in spans.items()),
        has_cjk=has_cjk,
        words=tuple(words),
    )


def resize_to(image: Image.Image, canvas: int) -> Image.Image:
    """The page at another mode's canvas: the same text, more or fewer pixels."""
    if image.width == canvas:
        return image
    return image.resize((canvas, canvas), Image.Resampling.LANCZOS)
