"""Containerfile parsing: continuations, comments, exec vs shell form, variables, flags."""
import pytest

from ketch.images import containerfile
from ketch.images.errors import BuildError


def test_instructions_continuations_and_comments():
    text = "# syntax\nFROM busybox\n\nRUN echo a \\\n  # dropped\n  && echo b\ncmd [\"sh\", \"-c\", \"x\"]\n"
    got = containerfile.parse(text)
    assert [(i.keyword, i.line) for i in got] == [("FROM", 2), ("RUN", 4), ("CMD", 7)]
    assert got[1].args == "echo a  && echo b"
    assert got[1].exec_form() is None
    assert got[2].exec_form() == ["sh", "-c", "x"]


def test_errors():
    with pytest.raises(BuildError, match="unknown instruction: FORM"):
        containerfile.parse("FORM x\n")
    with pytest.raises(BuildError, match="FROM"):
        containerfile.parse("RUN true\n")


def test_expand():
    env = {"A": "1", "EMPTY": ""}
    assert containerfile.expand("$A ${A} ${B:-dflt} ${A:+alt} ${EMPTY:+alt} \\$A", env) == "1 1 dflt alt  $A"


def test_key_values_and_flags():
    assert containerfile.key_values('a=1 b="two words" c=$X', {"X": "x"}) == [("a", "1"), ("b", "two words"), ("c", "x")]
    assert containerfile.key_values("KEY some value", {}) == [("KEY", "some value")]
    assert containerfile.split_flags("--chown=1:2 a b/") == ({"chown": "1:2"}, ["a", "b/"])
    assert containerfile.split_flags('["a b", "c"]') == ({}, ["a b", "c"])
