"""JSON nesting depth (SPEC §1), measured without recursion and in linear time.

Python's ``json`` recurses once per level, so its only depth limit is the interpreter's recursion
limit, which depends on how deep the calling thread's stack already is. MMTP declares its own
limit instead, measured here by scanning text, so a 100,000-deep frame is refused in
milliseconds on every stack.
"""

from __future__ import annotations

import re
from itertools import accumulate

MAX_DEPTH = 32

# Loose on purpose: the parser proper judges escapes. An unterminated string runs to the end
# of the text instead of failing, so no quote is ever the start of a second, failing scan
# (`"\"\"\"...` would otherwise cost quadratic time).
_STRING = re.compile(r'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in `text` (a scalar is 0, `{}` is 1).

    Text that is not JSON gets some number; only valid JSON gets its true depth.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether `text` nests deeper than `limit`; most frames are settled by counting."""
    if text.count("[") + text.count("{") <= limit:
        return False  # depth never exceeds the number of opening brackets
    return nesting_depth(text) > limit


_WS = "[ \t\n\r]"
_STRICT_STRING = r'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+"'
# One token for a run of openers: "[" or '{"key":', as deep nesting is made of.
_OPENER = rf"(?:\[|\{{{_WS}*+{_STRICT_STRING}{_WS}*+:)"
_TOKEN = re.compile(
    rf"""{_WS}*+(?:
      (?P<openers>{_OPENER}(?:{_WS}*+{_OPENER})*+)
    | (?P<string>{_STRICT_STRING})
    | (?P<number>-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+)
    | (?P<literal>true|false|null)
    | (?P<closers>[\]}}](?:{_WS}*+[\]}}])*+)
    | (?P<punct>[{{:,]))""",
    re.X,
)
_AFTER_ARRAY, _AFTER_OBJECT = "a", "o"
_KINDS = str.maketrans({"[": _AFTER_ARRAY, "{": _AFTER_OBJECT})
# What the grammar expects next.
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _AFTER, _END = range(7)


def is_json_syntax(text: str) -> bool:
    """Whether `text` is one JSON value by RFC 8259's grammar, judged without recursion.

    Used only for frames too deep to hand to :func:`json.loads`, so such a frame can still
    be told apart from a syntax error (which SPEC §1 answers first). Runs of ``[`` and of
    closing brackets are taken as one token each, so deep nesting costs a few steps.
    """
    stack: list[str] = []
    state, pos = _VALUE, 0
    while True:
        match = _TOKEN.match(text, pos)
        if match is None:
            return state == _END and not text[pos:].strip(" \t\n\r")
        pos = match.end()
        kind = match.lastgroup
        token = match[kind or 0]
        if kind == "closers":
            if state not in (_VALUE_OR_CLOSE, _KEY_OR_CLOSE, _AFTER):
                return False
            wanted = [_AFTER_ARRAY if c == "]" else _AFTER_OBJECT for c in token if c in "]}"]
            wanted.reverse()
            if len(wanted) > len(stack) or stack[len(stack) - len(wanted) :] != wanted:
                return False
            del stack[len(stack) - len(wanted) :]
            state = _AFTER if stack else _END
        elif state in (_VALUE, _VALUE_OR_CLOSE):
            if kind == "openers":
                stack.extend(_NOT_BRACKET.sub("", _STRING.sub("", token)).translate(_KINDS))
                state = _VALUE_OR_CLOSE if token[-1] == "[" else _VALUE
            elif token == "{":
                stack.append(_AFTER_OBJECT)
                state = _KEY_OR_CLOSE
            elif kind in ("string", "number", "literal"):
                state = _AFTER if stack else _END
            else:
                return False
        elif state in (_KEY, _KEY_OR_CLOSE):
            if kind != "string":
                return False
            state = _COLON
        elif state == _COLON:
            if token != ":":
                return False
            state = _VALUE
        elif state == _AFTER:
            if token != ",":
                return False
            state = _VALUE if stack[-1] == _AFTER_ARRAY else _KEY
        else:  # _END: a second value
            return False
