"""Go's time.Duration as Kubernetes writes and reads it: "1m30s", "500ms", "1h0m0s"."""
from __future__ import annotations

import re

_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse(text: str, *, bare_seconds: bool = False) -> float:
    """time.ParseDuration, in seconds; with `bare_seconds` a plain number counts as seconds.
    Raises ValueError with Go's message."""
    if bare_seconds:
        try:
            return float(text)
        except ValueError:
            pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text[:1] in "+-" and text else text
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    for m in _PART.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _SECONDS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def _fraction(value: int, digits: int) -> tuple[str, int]:
    """Go's fmtFrac: the last `digits` digits as a fraction without trailing zeros, and the rest."""
    scale = 10 ** digits
    frac = f"{value % scale:0{digits}d}".rstrip("0")
    return ("." + frac if frac else ""), value // scale


def format_ns(nanoseconds: int) -> str:
    """time.Duration.String(): 1h0m0s, 1m30s, 1.5s, 500ms, 2µs, 7ns, 0s."""
    if nanoseconds == 0:
        return "0s"
    sign, u = ("-" if nanoseconds < 0 else ""), abs(nanoseconds)
    if u < 1_000_000_000:
        digits, unit = (0, "ns") if u < 1_000 else (3, "µs") if u < 1_000_000 else (6, "ms")
        frac, whole = _fraction(u, digits)
        return f"{sign}{whole}{frac}{unit}"
    frac, seconds = _fraction(u, 9)
    minutes, hours = seconds // 60, seconds // 3600
    text = f"{seconds % 60}{frac}s"
    if minutes:
        text = f"{minutes % 60}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def format_seconds(seconds: float, *, precision_ns: int = 1) -> str:
    """`format_ns` of a duration in seconds, rounded to `precision_ns` (1_000_000 for milliseconds)."""
    return format_ns(round(seconds * 1e9 / precision_ns) * precision_ns)
