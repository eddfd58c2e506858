"""Go durations, as flags, annotations, metrics windows and protobuf durations carry them."""
import pytest

from ketch.api import durations


@pytest.mark.parametrize("text,seconds", [("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25), ("0", 0),
                                          ("-2s", -2), ("1m0.5s", 60.5), (".5s", 0.5), ("3us", 3e-6)])
def test_parse(text, seconds):
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5 minutes", "", "10", "1x", "s", "1h 2m"])
def test_parse_refuses_what_go_refuses(text):
    with pytest.raises(ValueError, match="time: invalid duration"):
        durations.parse(text)


def test_bare_seconds_when_asked():
    assert durations.parse("10", bare_seconds=True) == 10
    assert durations.parse("1.5", bare_seconds=True) == 1.5


def test_format_at_millisecond_precision():
    assert [durations.format_seconds(s, precision_ns=1_000_000) for s in (0, 0.5, 15.012, 60.5, 3605)] == \
        ["0s", "500ms", "15.012s", "1m0.5s", "1h0m5s"]
