from optimem.pages.verbatim import exact_share, extract, repair

TEXT = (
    "Check OPS-4821 on db-replica-03.eu-west.internal, mail ana.li@example.com, see "
    "https://x.org/a?b=1. Cost $1,250.50 and 37% of 3 items; sha 9f3c2a1b7, user_id, fooBar, "
    "123e4567-e89b-12d3-a456-426614174000 and `run_migration()`."
)


def test_extracts_each_kind_once():
    found = {(i.kind, i.value) for i in extract(TEXT, turn_id=4)}
    assert ("identifier", "OPS-4821") in found
    assert ("identifier", "db-replica-03.eu-west.internal") in found
    assert ("email", "ana.li@example.com") in found
    assert ("url", "https://x.org/a?b=1") in found
    assert ("number", "$1,250.50") in found
    assert ("number", "37%") in found
    assert ("hex", "9f3c2a1b7") in found
    assert ("uuid", "123e4567-e89b-12d3-a456-426614174000") in found
    assert ("code", "run_migration()") in found
    # a lone digit is prose; nothing is claimed twice
    assert all(i.value != "3" for i in extract(TEXT))
    values = [i.value for i in extract(TEXT)]
    assert len(values) == len(set(values))


def test_offsets_point_at_the_value():
    for item in extract(TEXT):
        assert TEXT[item.offset : item.offset + len(item.value)] == item.value


def test_repair_restores_near_misses_only():
    items = extract(TEXT)
    ocr = "Check OPS-482l on db-repIica-03.eu-west.internal, mail ana.Ii@example.com and unrelated words"
    fixed = repair(ocr, items)
    assert "OPS-4821" in fixed
    assert "db-replica-03.eu-west.internal" in fixed
    assert "ana.li@example.com" in fixed
    assert "unrelated words" in fixed
    # nothing similar → nothing inserted
    assert repair("completely different text", items) == "completely different text"


def test_exact_share():
    items = extract("OPS-1234 and OPS-5678")
    assert exact_share("OPS-1234 and OPS-5b78", items) == 0.5
    assert exact_share("anything", []) == 1.0


def test_repair_never_overwrites_an_exact_sibling():
    items = extract("tickets OPS-4821 and OPS-4822")
    assert repair("tickets OPS-4821 and OPS-482Z", items) == "tickets OPS-4821 and OPS-4822"
    assert repair("tickets OPS-4821", items) == "tickets OPS-4821"


def test_repair_takes_a_misread_last_character_but_not_glued_neighbours():
    items = extract("the role kestrel_ops and ticket OPS-4821 cost 48,500, fine")
    assert [i.value for i in items if i.kind == "number"] == ["48,500"]  # no trailing comma
    fixed = repair("the role kestrel ops.is and ticket OPS-482l cost 48.500, fine", items)
    assert "kestrel_ops.is" in fixed and "OPS-4821 cost" in fixed and "48,500," in fixed


def test_short_strings_need_a_closer_match():
    items = extract("join on n.oid")
    assert repair("join on c.oid", items) == "join on c.oid"


def test_look_alike_characters_are_folded():
    items = extract("the code is ZX-1000 and the part K-200A")
    fixed = repair("the code is ZX-LOO0 and the part K-2004", items)
    assert fixed == "the code is ZX-1000 and the part K-200A"


def test_a_copy_inside_a_longer_token_does_not_count():
    # "ZX-1010" appears inside the misread "ZX-10101"; ZX-1001 must still come back
    items = extract("ZX-1001 then ZX-1010")
    assert repair("ZX-10101 then ZX-1010", items) == "ZX-1001 then ZX-1010"


def test_each_copy_of_a_repeated_string_is_repaired():
    items = extract("OPS-4821 first, OPS-4821 again")
    assert repair("OPS-4821 first, 0PS-482l again", items) == "OPS-4821 first, OPS-4821 again"


def test_digit_first_identifiers_are_kept_whole():
    text = "ssh 22/tcp on 2024-05-01 at 02:00, host 10.0.0.1, release v1.2.3 and 3rd-party; pi 3.14, $1,250"
    values = {(i.kind, i.value) for i in extract(text)}
    for v in ("22/tcp", "2024-05-01", "02:00", "10.0.0.1", "v1.2.3", "3rd-party"):
        assert ("identifier", v) in values
    assert ("number", "3.14") in values and ("number", "$1,250") in values
    fixed = repair("ssh 22/tep on 2024-O5-01 at 02:0O, host 10.0.0.l, release vl.2.3", extract(text))
    assert "22/tcp" in fixed and "2024-05-01" in fixed and "02:00" in fixed
    assert "10.0.0.1" in fixed and "v1.2.3" in fixed


def test_order_decides_between_two_missing_look_alikes():
    # "ZX-LOOG" is one folded character from both ZX-1005 and ZX-1008: its place decides
    source = "item 4 ZX-1004, item 5 ZX-1005, item 7 ZX-1007, item 8 ZX-1008, item 9 ZX-1009"
    ocr = "item 4 ZX-1004, item 5 ZX-1OO5, item 7 ZX-1007, item 8 ZX-LOOG, item 9 ZX-1009"
    fixed = repair(ocr, extract(source))
    assert "item 8 ZX-1008," in fixed and "item 5 ZX-1005," in fixed


def test_a_string_glued_to_a_neighbour_is_still_put_back():
    # the copy is glued to the next word, so it is no whole token anywhere: the last pass finds it
    items = extract("run the nightly_orders_rollup job")
    assert repair("run the nightly_orders_rolIupjob", items) == "run the nightly_orders_rollupjob"


def test_digit_first_identifiers_of_tab_separated_tool_output_are_kept():
    out = "ftp\t21/tcp\nntp\t\t123/udp\t# time\nredis\t10.0.0.1:6379\t1.2M\nsince\t2024-05-01\t0/1\t3d4h"
    kept = [it.value for it in extract(out) if it.value[0].isdigit()]
    assert kept == ["21/tcp", "123/udp", "10.0.0.1:6379", "1.2M", "2024-05-01", "0/1", "3d4h"]
    read = out.replace("21/tcp", "2l/tcp").replace("123/udp", "l23/udp").replace("0/1", "O/1")
    fixed = repair(read, extract(out))
    assert (
        "21/tcp" in fixed
        and "123/udp" in fixed
        and "\t0/1\t" in fixed
        and fixed.count("\t") == out.count("\t")
    )


def _boxes(lines, turn_id=1):
    from optimem.layout import LineBox

    out, pos = [], 0
    for i, text in enumerate(lines):
        out.append(LineBox(0, 10 * i, 100, 10 * i + 9, text, turn_id, pos, pos + len(text)))
        pos += len(text) + 1
    return out


def test_a_repair_is_applied_only_where_the_line_check_confirms_it():
    from optimem.aids import linecheck
    from optimem.pages.verbatim import extract
    from optimem.reading.recall import repair_checked

    source = ["see https://grafana.example.com/d/pay-10 now", "and FL-304 departs at 09:40 today"]
    layout = _boxes(source)
    items = extract("\n".join(source), 1)
    checks = [linecheck.digest(x) for x in source]
    read = [
        "see https://grafana.example.com/d/pay-1O now",  # only the identifier is off: repaired
        "and FL-3O4 departs at O9:40 todey",  # another word is off too: kept, unverified
    ]
    lines, verified = repair_checked(read, checks, layout, items)
    assert lines[0] == source[0] and verified[0] is True
    # no kept string on the page is a near duplicate of FL-304 or 09:40: put back, still flagged
    assert lines[1] == "and FL-304 departs at 09:40 todey" and verified[1] is False
    # with FL-204 on the page too, an unconfirmed repair could pick the wrong flight: none is made
    source.append("then FL-204 leaves")
    layout = _boxes(source)
    items = extract("\n".join(source), 1)
    checks = [linecheck.digest(x) for x in source]
    lines, verified = repair_checked([*read, "then FL-204 leaves"], checks, layout, items)
    assert lines[1] == read[1] and verified[1] is False and verified[2] is True


def test_a_repair_never_puts_a_neighbouring_identifier_in():
    from optimem.aids import linecheck
    from optimem.pages.verbatim import extract
    from optimem.reading.recall import repair_checked

    source = ["runs pay-10 and pay-11 failed", "then pay-15 and pay-16 recovered"]
    layout = _boxes(source)
    items = extract("\n".join(source), 1)
    checks = [linecheck.digest(x) for x in source]
    for misread in ("then pay-1515 and pay-16 recovered", "then pay-14 and pay-16 recovered"):
        lines, verified = repair_checked(["runs pay-10 and pay-11 failed", misread], checks, layout, items)
        assert lines[0] == source[0] and verified[0] is True
        # either the check confirms the repair, or the line keeps its reading and says so
        assert (lines[1], verified[1]) in ((source[1], True), (misread, False))


def test_marked_text_flags_unverified_lines_for_a_model():
    from optimem.records import UNVERIFIED_MARK, Recall

    r = Recall(
        1, "a\nb", "a\nb", "small", "cpu", 1.0, True, 0.0, {}, [], lines=("a", "b"), verified=(True, False)
    )
    assert r.marked_text == f"a\n{UNVERIFIED_MARK}b" and r.unverified_lines == [1]
    clean = Recall(1, "a", "a", "small", "cpu", 1.0, True, 0.0, {}, [], lines=("a",), verified=(True,))
    assert clean.marked_text == "a"
