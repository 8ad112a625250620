"""The 'cpu' backend: Latin lines through tesseract, CJK lines through rapidocr (real engines)."""

from optimem.backends import get_backend
from optimem.backends.base import Backend, Decoded, PageInput
from optimem.backends.cpu import CpuBackend
from optimem.modes import Mode
from optimem.pages.typeset import RenderOptions, TurnText, paginate
from optimem.reading.fidelity import fidelity

MIXED = [
    TurnText(1, "user", "The meeting with Chen Wei is at 10:30 on Thursday, room 4B, ticket OPS-4821."),
    TurnText(2, "assistant", "我们四月二十三日在成都办公室开会，然后周五去大熊猫繁育研究基地。"),
    TurnText(3, "user", "Great, and book the hotel near Kuanzhai Alley for three nights."),
]


def _page(turns):
    (page,) = paginate(turns, RenderOptions(canvas=640, font_px=8, cjk_font_px=10))
    return page, PageInput(page.image, Mode.SMALL, page.lines, 8.0, page.has_cjk)


def test_mixed_page_routes_lines_by_script_and_keeps_alignment():
    page, inp = _page(MIXED)
    decoded = get_backend("cpu").decode(inp)
    assert decoded.backend == "cpu"
    assert len(decoded.lines) == len(page.lines)
    assert fidelity(decoded.text, page.text) >= 0.95
    cjk_line = next(i for i, line in enumerate(page.lines) if "成都" in line.text)
    assert "成都" in decoded.lines[cjk_line]
    assert 0.0 <= decoded.confidence <= 1.0


class _Marks(Backend):
    """Reads every line it is given as "?": shows which lines went to it."""

    name = "marks"

    def decode(self, page):
        return Decoded("\n".join("?" for _ in page.lines), 1.0, self.name, 0.0, ("?",) * len(page.lines))


def test_sharp_latin_prose_goes_to_the_line_model_shrunk_and_code_to_tesseract():
    page, inp = _page([MIXED[0], TurnText(2, "user", CODE), MIXED[2]])
    read = CpuBackend(latin=_Marks(), recheck=False).decode(inp)
    for box, text in zip(page.lines, read.lines, strict=True):
        if box.kind == "code":
            assert text == "?"  # tesseract's, judged glyph by glyph
        else:
            assert fidelity(text, box.text.strip()) >= 0.97, (text, box.text)
    assert ";sharp=lines" in CpuBackend().fingerprint()


def test_pages_of_other_sizes_and_sharp_model_off_read_like_tesseract():
    page, inp = _page([MIXED[0], MIXED[2]])
    assert not page.has_cjk
    plain = CpuBackend(recheck=False, sharp_model=False)  # routing alone; the re-check may improve lines
    assert plain.decode(inp).text == get_backend("tesseract").decode(inp).text
    assert ";sharp=" not in plain.fingerprint()
    # 9 px type (pages typeset at Tiny) is hinted otherwise than the model learnt: tesseract's
    (tiny,) = paginate([MIXED[0]], RenderOptions(canvas=512, font_px=9, cjk_font_px=11))
    at_9px = PageInput(tiny.image, Mode.TINY, tiny.lines, 9.0, False)
    assert set(CpuBackend(latin=_Marks(), recheck=False).decode(at_9px).lines) == {"?"}


def test_sharp_lines_the_model_read_wrong_are_re_read_by_rapidocr_and_tesseract():
    page, inp = _page([MIXED[0], MIXED[2]])
    wrong = ["user: nothing like it", "user: nor this"]
    found = CpuBackend().alternates(inp, [0, 1], wrong)
    assert set(found) == {0, 1}
    for i, readings in found.items():
        assert wrong[i] not in readings
        assert max(fidelity(r, page.lines[i].text) for r in readings) >= 0.9
    assert len(found[0]) >= 2  # rapidocr's and tesseract's (and each with the word gaps merged)


def test_fingerprint_names_both_engines():
    fp = get_backend("cpu").fingerprint()
    assert fp.startswith("cpu[latin=tesseract-") and ";cjk=rapidocr-" in fp


def _aged(turns):
    from optimem.pages.typeset import resize_to

    page, _ = _page(turns)
    factor = Mode.TINY.canvas / Mode.SMALL.canvas  # aged one rung: 8 px → 6.4 px
    aged = PageInput(
        resize_to(page.image, Mode.TINY.canvas),
        Mode.TINY,
        tuple(line.scaled(factor) for line in page.lines),
        8.0 * factor,
        False,
    )
    return page, aged


def test_blurred_pages_go_to_the_line_model():
    from optimem.backends.line_model import AgedLineBackend

    page, aged = _aged([MIXED[0], MIXED[2]])
    line_model = AgedLineBackend()
    assert line_model.model_lines(aged) == list(range(len(page.lines)))
    read = CpuBackend(recheck=False).decode(aged)
    assert read.text == line_model.decode(aged).text
    assert fidelity(read.text, page.text) >= 0.97


def test_blurred_pages_can_go_to_rapidocr_as_before():
    rapid = get_backend("rapidocr")
    _, aged = _aged([MIXED[0], MIXED[2]])
    before = CpuBackend(cjk=rapid, blurred=rapid, recheck=False)
    assert before.decode(aged).text == rapid.decode(aged).text
    assert ";blurred=cjk" in before.fingerprint()
    assert ";blurred=lines[model=" in CpuBackend().fingerprint()


def test_blurred_lines_that_fail_are_re_read_by_tesseract_and_rapidocr():
    page, aged = _aged([MIXED[0], MIXED[2]])
    backend = CpuBackend()
    wrong = ["user: nothing like it", "user: nor this"]
    found = backend.alternates(aged, [0, 1], wrong)
    assert set(found) == {0, 1}
    for i, readings in found.items():
        assert wrong[i] not in readings
        assert max(fidelity(r, page.lines[i].text) for r in readings) >= 0.9
    # tesseract's reading, rapidocr's, and each merged with the first reading's word gaps
    assert len(found[0]) >= 2


CODE = (
    "Try this:\n```python\ndef quicksort(arr):\n    if len(arr) <= 1:\n        return arr\n"
    "    pivot = arr[0]\n    return quicksort([x for x in arr[1:] if x < pivot]) + [pivot]\n```"
)


def test_code_lines_come_back_indented():
    page, inp = _page([TurnText(1, "user", CODE)])
    decoded = get_backend("cpu").decode(inp)
    code = [
        (box.text, read) for box, read in zip(page.lines, decoded.lines, strict=True) if box.kind == "code"
    ]
    assert len(code) >= 6
    for source, read in code:
        assert len(read) - len(read.lstrip(" ")) == len(source) - len(source.lstrip(" ")), (source, read)


def test_sharp_code_rows_that_their_glyph_cells_read_right_never_reach_tesseract():
    import dataclasses

    from optimem.aids.linecheck import digest

    accents = '```python\nname = "Zoë"  # ë is not in the cells\' ASCII\nok = a <= b != c\n```'
    page, inp = _page([TurnText(1, "user", CODE), TurnText(2, "user", accents)])
    checked = dataclasses.replace(inp, checks=tuple(digest(box.text) for box in page.lines))
    read = CpuBackend(latin=_Marks(), recheck=False).decode(checked)  # the proofreading path
    code = [(box, text) for box, text in zip(page.lines, read.lines, strict=True) if box.kind == "code"]
    assert len(code) >= 9
    for box, text in code:
        if "ë" in box.text:
            assert text == "?"  # no cell reads it: tesseract's reading, judged by the cells
        else:
            assert text.split() == box.text.split() and digest(text) == digest(box.text), (box, text)
    # without line checks (a plain decode) every code row goes to tesseract, as before
    plain = CpuBackend(latin=_Marks(), recheck=False).decode(inp)
    assert all(text == "?" for box, text in zip(page.lines, plain.lines, strict=True) if box.kind == "code")


def test_a_misread_line_is_re_read_by_the_other_engine():
    page, inp = _page([MIXED[0], MIXED[2]])
    backend = get_backend("cpu")
    good = backend.decode(inp)
    lines = list(good.lines)
    lines[0] = lines[0].replace(" ", "", 3)[:-6]  # glued words and a lost tail: too short for its box
    broken = Decoded("\n".join(lines), good.confidence, "tesseract", good.seconds, tuple(lines))
    fixed = backend._checked(inp, broken, backend.cjk)
    assert fixed.extra["rechecked_lines"] >= 1 and fixed.extra["replaced_lines"] >= 1
    assert fidelity(fixed.lines[0], page.lines[0].text) > fidelity(lines[0], page.lines[0].text)
    assert fidelity(fixed.lines[0], page.lines[0].text) >= 0.95
