"""Request ids carry a check tag: any replica recognises the ids it (or another replica with the same key) issued."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airloop.predlog import is_issued, new_request_id, new_request_ids


def test_issued_ids_are_32_hex_digits_unique_and_recognised():
    ids = new_request_ids(1000, "k")

    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(is_issued(i, "k") for i in ids)


def test_ids_of_another_key_a_typo_or_another_format_are_not_recognised():
    issued = new_request_id("k")
    typo = issued[:-1] + ("0" if issued[-1] != "0" else "1")

    assert not is_issued(issued, "other-key")
    assert not is_issued(typo, "k")
    assert not is_issued(issued.upper(), "k")
    assert not is_issued(issued[:31], "k")
    assert not is_issued("", "k")


@pytest.mark.property
@given(st.text(max_size=40))
def test_arbitrary_text_is_almost_never_an_issued_id(text):
    assert not is_issued(text, "k") or len(text) == 32
