"""The summary of ``python -m benchmarks.faults`` (no server: the counting and the table)."""

from __future__ import annotations

from benchmarks.faults import HEADER, CaseResult, Tally, format_table, tally


def test_every_message_once_is_clean() -> None:
    sent = {"a": [b"a0", b"a3"], "b": [b"b1"], "c": [b"c2"]}
    received = {"a": [b"b1", b"c2"], "b": [b"a0", b"c2", b"a3"], "c": [b"a0", b"b1", b"a3"]}
    assert tally(sent, received) == Tally(received_min=2, expected=2, lost=0, duplicated=0)


def test_lost_and_duplicated_are_summed_and_the_worst_member_shown() -> None:
    sent = {"a": [b"a0", b"a3"], "b": [b"b1"], "c": [b"c2"]}
    received = {"a": [b"b1", b"b1", b"c2"],   # b1 twice
                "b": [b"a0"],                  # c2 and a3 lost
                "c": [b"a0", b"b1", b"a3", b"x"]}  # x was never sent
    assert tally(sent, received) == Tally(received_min=1, expected=3, lost=2, duplicated=2)


def test_a_member_that_got_nothing() -> None:
    assert tally({"a": [b"1"], "b": []}, {"a": []}) == Tally(0, 1, 1, 0)


def test_the_table_has_one_row_per_case_and_the_notes_below() -> None:
    ok = CaseResult("xmpp", sent=60, received_min=40, expected=40, seconds=31.04,
                    longest_send=5.25, outages=["SIGTERM 7.1 s"])
    bad = CaseResult("bridge", sent=60, received_min=44, expected=45, lost=1,
                     send_errors=2, seconds=80.0, notes=["send errors: X x2"])
    broken = CaseResult("matrix", failed=True, notes=["did not run"])
    text = format_table([ok, bad, broken])
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(HEADER)
    assert [c.strip() for c in lines[2].strip("|").split("|")] == [
        "xmpp", "60", "40 of 40", "0", "0", "0", "31.0 s"]
    assert [c.strip() for c in lines[3].strip("|").split("|")][2:6] == ["44 of 45", "1", "0", "2"]
    assert "n/a" in lines[4]
    assert len({len(line) for line in lines[:5]}) == 1  # aligned
    assert "xmpp: outages SIGTERM 7.1 s; longest send 5.2 s" in text
    assert "bridge: send errors: X x2" in text and "matrix: did not run" in text
    assert ok.clean and not bad.clean and not broken.clean
