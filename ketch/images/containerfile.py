"""Containerfile (Dockerfile) parsing: instructions, line continuations, exec vs shell form,
key=value lists and `$VAR` / `${VAR:-default}` substitution, as BuildKit reads the subset
ketch builds."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from .errors import BuildError

KNOWN = {"FROM", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "USER", "EXPOSE", "CMD", "ENTRYPOINT", "LABEL",
         "ARG", "VOLUME", "STOPSIGNAL", "MAINTAINER", "SHELL"}


@dataclass
class Instruction:
    keyword: str      # upper case
    args: str         # the raw text after the keyword (continuations joined)
    line: int

    @property
    def original(self) -> str:
        return f"{self.keyword} {self.args}".strip()

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form RUN/CMD/ENTRYPOINT/COPY, or None for shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None


def parse(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as BuildKit does
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.strip().partition(" ")
        if keyword.upper() not in KNOWN:
            raise BuildError(f"Containerfile line {start}: unknown instruction: {keyword}")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    if pending:
        raise BuildError("Containerfile ends inside a line continuation")
    if not instructions or instructions[0].keyword not in ("FROM", "ARG"):
        raise BuildError("no build stage in current context: the first instruction must be FROM")
    return instructions


_VAR = re.compile(r"\\\$|\$(?:\{(\w+)(?::([-+])([^}]*))?\}|(\w+))")


def expand(text: str, env: dict[str, str]) -> str:
    """Substitute `$X`, `${X}`, `${X:-default}` and `${X:+alt}` from `env`; `\\$` is a literal `$`."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "\\$":
            return "$"
        name = m.group(1) or m.group(4)
        value = env.get(name, "")
        if m.group(2) == "-":
            return value or m.group(3)
        if m.group(2) == "+":
            return m.group(3) if value else ""
        return value
    return _VAR.sub(sub, text)


def key_values(text: str, env: dict[str, str], legacy: bool = True) -> list[tuple[str, str]]:
    """`ENV a=1 b="two words"` pairs; the legacy `ENV key value with spaces` form too."""
    words = shlex.split(text, posix=True)
    if not words:
        raise BuildError("missing arguments")
    if "=" not in words[0]:
        if not legacy:
            raise BuildError(f"expected KEY=VALUE, got {words[0]!r}")
        key, _, value = text.strip().partition(" ")
        return [(key, expand(" ".join(shlex.split(value.strip())), env))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise BuildError(f"expected KEY=VALUE, got {word!r}")
        pairs.append((key, expand(value, env)))
    return pairs


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """`--chown=1:1 --from=x a b` → ({"chown": "1:1", ...}, ["a", "b"]); JSON array form too."""
    flags = {}
    rest = args.strip()
    while m := re.match(r"--([\w-]+)(?:=(\S*))?\s*", rest):
        flags[m.group(1)] = m.group(2) or ""
        rest = rest[m.end():]
    if rest.startswith("["):
        try:
            value = json.loads(rest)
            if isinstance(value, list):
                return flags, [str(v) for v in value]
        except ValueError:
            pass
    return flags, shlex.split(rest)
