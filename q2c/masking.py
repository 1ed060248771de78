"""Hiding secrets before a person sees them: one rule set, which the query layer applies to
every payload, header, response excerpt, log body, message and audit document it returns,
and the collector to the failure messages it stores and the errors it logs.

A value is secret when its key names a secret (matched by words, whatever the spelling:
`api_key`, `apiKey`, `X-API-Key`, `apikey`; `pin` but not `shipping`), or when it looks like
one wherever it stands: a payment card number (13-19 digits starting 2-6 and passing the
Luhn check), a credential after Bearer/Basic, a JSON Web Token, the password in a URL. Keys
beyond the built-in ones come from Q2C_MASK_KEYS; the built-in ones cannot be switched off.

A masked document can be edited and sent back (`restore`): every masked value left as shown
gets its original value again on the server, so that no secret reaches a screen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from q2c.errors import Q2CError
from q2c.settings import load_settings

MASK = "•••"
BUILT_IN_KEYS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "client secret",
    "token",
    "api key",
    "access key",
    "private key",
    "authorization",
    "auth",
    "cookie",
    "set cookie",
    "session",
    "credential",
    "iban",
    "card number",
    "pan",
    "cvv",
    "cvc",
    "pin",
    "ssn",
    "otp",
    "amz signature",  # of an S3 presigned URL (X-Amz-Signature)
    "sig",  # of a shared access signature (Azure's ?sig=)
    # Keys written as one word, which words cannot tell apart (a rule finding `session` in
    # `sessionid` would find it in `possession_date` too).
    "sslpassword",
    "sessionid",
    "jsessionid",
    "phpsessid",
    "csrftoken",
    "xsrftoken",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "authtoken",
    "apitoken",
)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # of a name/value pair's name

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_CARD = re.compile(r"(?<![\d.])[2-6](?:[ -]?\d){12,18}(?![\d.])")
_CREDENTIAL = re.compile(r"(?i)\b(?:bearer|basic)\s+(?P<secret>[A-Za-z0-9._~+/=-]{6,})")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(r"//[^/\s:@]*:(?P<secret>[^@\s/]+)@")  # redis://:secret@host
_KEY = r"[A-Za-z0-9_.-]{1,64}"
# Pairs in text that is not JSON: key=value and key:value (forms, query strings, logfmt,
# `key = value`), key="value" and key='value' (logfmt, XML attributes, SQL), key: value
# (headers, YAML), "key": "value" and 'key': value (JSON lines, broken JSON, Python reprs),
# and <key>value</key>.
_KEY_STARTS = r"(?:^|(?<=[\s&?;,:={(\[\"']))"
# key=value, key:value (without a space after the colon: "invalid token: expired" is prose)
# and key="value": the keys are found first, and only a secret key's value is read, up to
# the next delimiter. (Matching whole pairs that may overlap, as in `msg:password:abc`,
# read every value to the end of its run: time quadratic in a message's length.)
_PAIR_KEY = re.compile(rf"{_KEY_STARTS}(?P<key>{_KEY})(?=[ \t]*[=:])")
_PAIR_VALUES = (
    re.compile(r"[ \t]*[=:][ \t]*(?P<v>[\"'])(?P<value>(?:(?!(?P=v))[^\n])*)(?P=v)"),
    re.compile(r"(?:[ \t]*=[ \t]*|:)(?P<value>[^\s&;,})\]\"':=]+=*)"),  # base64's = kept
)
_PAIRS = (
    re.compile(rf"(?m)^[ \t]*(?P<key>{_KEY}):[ \t]*(?P<value>\S.*)$"),
    re.compile(
        rf"(?P<q>[\"'])(?P<key>{_KEY})(?P=q)\s*[:=]\s*(?P<v>[\"'])(?P<value>[^\"'\n]*)(?P=v)"
    ),
    re.compile(rf"(?P<q>[\"'])(?P<key>{_KEY})(?P=q)\s*[:=]\s*(?P<value>[^\s,}}\]\"']+)"),
    re.compile(rf"<(?P<key>{_KEY}|[A-Za-z0-9_.-]+:{_KEY})(?:\s[^>]*)?>(?P<value>[^<]+)(?=</)"),
)
_CONTEXT_CHARS = 16  # of the text before a masked value that must stay for it to come back
_CONTEXT = re.compile(r"[^\s&;,]*\s*$")


def _words(key: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(key)]


def _luhn(digits: str) -> bool:
    total = 0
    for index, digit in enumerate(int(d) for d in reversed(digits)):
        total += digit if index % 2 == 0 else (digit * 2 if digit < 5 else digit * 2 - 9)
    return total % 10 == 0


def _card_number(value: int) -> bool:
    """Whether a JSON integer is a payment card number."""
    digits = str(value)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn(digits)


@dataclass(frozen=True)
class Masking:
    """The rule set: key patterns (words, any spelling) besides the built-in ones."""

    extra_keys: tuple[str, ...] = ()
    _patterns: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        joined = {"".join(_words(key)) for key in (*BUILT_IN_KEYS, *self.extra_keys)}
        object.__setattr__(self, "_patterns", frozenset(joined - {""}))

    def secret_key(self, key: str) -> bool:
        """Whether a value under `key` is secret: some run of its words spells a pattern
        (or its plural)."""
        words, patterns = _words(key), self._patterns
        for start in range(len(words)):
            run = ""
            for word in words[start:]:
                run += word
                if run in patterns or (run.endswith("s") and run[:-1] in patterns):
                    return True
        return False

    def text(self, text: str | None) -> str | None:
        """`text` with secrets masked: a JSON document by its keys (written anew if anything
        was masked), other text by its pairs, and everywhere by the look of its values."""
        if not text:
            return text
        document = _json(text)
        if document is None:
            return _replaced(text, self._spans(text))
        masked: dict[str, tuple[Any, Any]] = {}
        shown = self._masked(document, None, masked, "$")
        return _dumps(shown) if masked else text  # as written when there is nothing to hide

    def value(self, value: Any) -> Any:
        """A JSON value (from a jsonb column) with secrets masked; a string as `text`."""
        if isinstance(value, str):
            return self.text(value)
        return self._masked(value, None, {}, "$")

    def row(self, row: Mapping[str, Any], columns: Iterable[str]) -> dict[str, Any]:
        """`row` with those of its text `columns` it has masked (`text`)."""
        shown = dict(row)
        for column in columns:
            if column in shown:
                shown[column] = self.text(shown[column])
        return shown

    def headers(self, headers: Mapping[str, Any] | None) -> dict[str, Any]:
        """Headers with secret ones, and secret-looking values, masked."""
        return self._masked(dict(headers or {}), None, {}, "$")

    def restore(self, edited: str, original: str | None) -> str:
        """The payload to send for `edited`, a masked rendering of `original` that a person
        changed: each masked value left as shown gets its original value back. Raises
        Q2CError when that cannot be done without a doubt: a ••• where the original had no
        masked value, or whose surroundings changed, or a JSON original edited into text
        that is not JSON."""
        document = _json(original or "")
        if document is not None:
            edits = _json(edited)
            if edits is None:
                if MASK in edited:
                    raise Q2CError(
                        "the original payload is JSON: keep the edited payload valid JSON, "
                        "or replace every ••• with a new value"
                    )
                return edited
            masked: dict[str, tuple[Any, Any]] = {}
            self._masked(document, None, masked, "$")
            restored: list[str] = []
            sent = _restored(edits, masked, "$", restored)
            return _dumps(sent) if restored else edited
        if MASK not in edited:
            return edited
        return self._restored_text(edited, original or "")

    # -- internals ----------------------------------------------------------------------

    def _restored_text(self, edited: str, original: str) -> str:
        """`edited` with each ••• replaced by the secret that stood there in `original`:
        the masks must be as many, each after the same text as in the masked original."""
        spans = self._spans(original)
        shown = _replaced(original, spans)
        expected = _mask_contexts(shown)
        found = _mask_contexts(edited)
        if len(found) != len(expected):
            raise Q2CError(
                f"the edited payload has {len(found)} masked value(s) (•••) where the original "
                f"has {len(expected)}: leave each one as it is, or replace it with a new value"
            )
        for number, (before, after) in enumerate(zip(expected, found, strict=True), start=1):
            if before != after:
                raise Q2CError(
                    f"the text just before masked value {number} (•••) changed: keep it as it "
                    "was, or replace the ••• with a new value"
                )
        parts = edited.split(MASK)
        secrets = [original[start:end] for start, end in spans]
        return parts[0] + "".join(
            secret + part for secret, part in zip(secrets, parts[1:], strict=True)
        )

    def _masked(
        self, value: Any, key: str | None, masked: dict[str, tuple[Any, Any]], path: str
    ) -> Any:
        """`value` masked; `masked` gets (as shown, original) by path for each masked value."""
        if key is not None and value is not None and self.secret_key(key):
            masked[path] = (MASK, value)
            return MASK
        if isinstance(value, dict):
            # A name/value pair ({"name": "X-Api-Key", "value": …}, as HAR files hold
            # headers): its value is under the name it gives, when that is a key's name
            # ({"name": "Session fee", "value": 250} is business data).
            label = value.get("name", value.get("key"))
            named = (
                set(value) in ({"name", "value"}, {"key", "value"})
                and isinstance(label, str)
                and _NAME.fullmatch(label) is not None
            )
            fields = {
                k: self._masked(v, label if named and k == "value" else k, masked, f"{path}.{k}")
                for k, v in value.items()
            }
            if named and f"{path}.value" in masked:
                masked[f"{path}#name"] = (label, label)  # restored only under this name
            return fields
        if isinstance(value, list):
            return [self._masked(v, None, masked, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str):
            shown = self.text(value)  # a query string, or JSON held in a string, too
            if shown != value:
                masked[path] = (shown, value)
            return shown
        if type(value) is int and _card_number(abs(value)):
            masked[path] = (MASK, value)  # a card number sent as a JSON number
            return MASK
        return value

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Where the secrets of `text` are, in order, without overlaps: the values of secret
        keys in pairs, and every secret-looking value."""
        found: list[tuple[int, int]] = []
        for key in _PAIR_KEY.finditer(text):
            if self.secret_key(key["key"]):
                value = next(filter(None, (v.match(text, key.end()) for v in _PAIR_VALUES)), None)
                if value is not None:
                    found.append(value.span("value"))
        for pattern in _PAIRS:
            found += [m.span("value") for m in pattern.finditer(text) if self.secret_key(m["key"])]
        found += [m.span("secret") for m in _CREDENTIAL.finditer(text)]
        found += [m.span() for m in _JWT.finditer(text)]
        found += [m.span("secret") for m in _URL_PASSWORD.finditer(text)]
        found += [m.span() for m in _CARD.finditer(text) if _luhn(re.sub(r"\D", "", m[0]))]
        spans: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if spans and start < spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        return spans


def _replaced(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each span replaced by MASK."""
    parts, last = [], 0
    for start, end in spans:
        parts += [text[last:start], MASK]
        last = end
    return "".join(parts) + text[last:]


def _mask_contexts(text: str) -> list[str]:
    """For each ••• in `text`: what stands right before it, the last word and the spaces
    after it (`password=`, `Bearer `), at most _CONTEXT_CHARS characters."""
    pieces = text.split(MASK)
    return [_CONTEXT.search(piece)[0][-_CONTEXT_CHARS:] for piece in pieces[:-1]]  # type: ignore[index]


def _json(text: str) -> Any:
    """The JSON document `text` holds (an object or array), else None. Numbers are read
    exactly (decimals as Decimal), so that a document written again keeps them."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return None


def _dumps(value: Any) -> str:
    """JSON for a document `_json` read, its numbers as they were written."""
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"{json.dumps(k, ensure_ascii=False)}: {_dumps(v)}" for k, v in value.items()
            )
            + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_dumps(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _restored(
    value: Any, masked: Mapping[str, tuple[Any, Any]], path: str, restored: list[str]
) -> Any:
    """`value` with each masked value left as shown replaced by its original (their paths
    go to `restored`)."""
    if path in masked and value == masked[path][0]:
        restored.append(path)
        return masked[path][1]
    if isinstance(value, dict):
        shown = {k: _restored(v, masked, f"{path}.{k}", restored) for k, v in value.items()}
        name = masked.get(f"{path}#name")
        renamed = name is not None and value.get("name", value.get("key")) != name[0]
        if renamed and f"{path}.value" in restored:  # restored, it would be shown unmasked
            assert name is not None
            raise Q2CError(
                f"the name of the masked value at {path} changed: keep {name[0]!r}, or "
                "replace the ••• with a new value"
            )
        return shown
    if isinstance(value, list):
        return [_restored(v, masked, f"{path}[{i}]", restored) for i, v in enumerate(value)]
    if isinstance(value, str) and MASK in value:
        raise Q2CError(f"••• at {path} stands for no masked value of the original payload")
    return value


def masking_of(extra_keys: Iterable[str]) -> Masking:
    """The rule set with `extra_keys` besides the built-in ones."""
    return Masking(tuple(extra_keys))


@cache
def configured() -> Masking:
    """The rule set of this process: the built-in keys and Q2C_MASK_KEYS."""
    return masking_of(load_settings().mask_key_list)
