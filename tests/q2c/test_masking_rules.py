"""The masking rule set: which keys and values are secret, in JSON and in other text, and
how an edited masked document gets its secrets back."""

from __future__ import annotations

import json

import pytest

from q2c.errors import Q2CError
from q2c.masking import MASK, Masking

RULES = Masking(("acct no",))
DOCUMENT = {
    "user": "ada",
    "password": "hunter2",
    "cvv": 123,
    "pin": "0000",
    "ssn": "123-45-6789",
    "private_key": "-----BEGIN KEY-----",
    "nested": {"apiKey": "k1", "calls": ["Bearer abcdefghij", "plain"]},
    "passwords": ["a", "b"],
    "card": "4111 1111 1111 1111",
    "pan_number": 4111111111111111,
    "amount": 13138.08,
    "invoice": "INV-2026-000922",
    "shipping": "express",
    "author": "Grace",
    "acctNo": "99",
    "callback": "https://svc:s3cret@billing.example.com/hook",
}


def test_secret_keys_match_by_words_in_any_spelling() -> None:
    secret = [
        "password",
        "X-API-Key",
        "apiKey",
        "api_key",
        "APIKEY",
        "client_secret",
        "sessionId",
        "pwd",
        "PIN",
        "card_cvv2",
        "accessTokens",
        "Set-Cookie",
        "acct_no",
        *("sslpassword", "JSESSIONID", "PHPSESSID", "csrftoken", "X-Amz-Signature", "sig"),
    ]
    plain = [
        *("shipping", "author", "compass", "span_id", "company", "idempotency_key", "pinned"),
        *("tokenizer", "signal", "design", "passage", "signature_status", "possession_date"),
        *("secretary", "SignatureType"),
    ]

    assert [key for key in secret if not RULES.secret_key(key)] == []
    assert [key for key in plain if RULES.secret_key(key)] == []


def test_a_json_payload_is_masked_by_key_and_by_the_look_of_its_values() -> None:
    masked = json.loads(RULES.text(json.dumps(DOCUMENT)))

    for key in (
        "password",
        "cvv",
        "pin",
        "ssn",
        "private_key",
        "passwords",
        "card",
        "pan_number",
        "acctNo",
    ):
        assert masked[key] == MASK, key
    assert masked["nested"] == {"apiKey": MASK, "calls": [f"Bearer {MASK}", "plain"]}
    assert masked["callback"] == f"https://svc:{MASK}@billing.example.com/hook"
    for key in ("user", "amount", "invoice", "shipping", "author"):
        assert masked[key] == DOCUMENT[key]
    assert "hunter2" not in RULES.text(json.dumps(DOCUMENT))


def test_a_clean_json_payload_is_shown_as_written() -> None:
    written = '{"invoice":  "INV-1",\n "amount": 1.10}'

    assert RULES.text(written) == written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user=ada&password=hunter2&x=1", f"user=ada&password={MASK}&x=1"),
        ("Authorization: Basic dXNlcjpwYXNz\nAccept: */*", f"Authorization: {MASK}\nAccept: */*"),
        (
            "<a><Password>p</Password><id>7</id></a>",
            f"<a><Password>{MASK}</Password><id>7</id></a>",
        ),
        ("card 4111-1111-1111-1111 declined", f"card {MASK} declined"),
        ("order 1234567890123 shipped", "order 1234567890123 shipped"),  # fails Luhn
        ("token eyJhbGciOi.eyJzdWIiOiIx.c2ln here", f"token {MASK} here"),
        ("refused: invalid token: expired", "refused: invalid token: expired"),  # prose
        ("refused: token:abc123", f"refused: token:{MASK}"),
    ],
)
def test_other_text_is_masked_by_pairs_and_values(text: str, expected: str) -> None:
    assert RULES.text(text) == expected


def test_headers_are_masked_by_name_and_value() -> None:
    headers = {
        "Authorization": "Bearer abcdefgh",
        "X-Api-Key": "k",
        "X-Trace": "Bearer qwertyui",
        "Content-Type": "application/json",
    }

    assert RULES.headers(headers) == {
        "Authorization": MASK,
        "X-Api-Key": MASK,
        "X-Trace": f"Bearer {MASK}",
        "Content-Type": "application/json",
    }


def test_an_edited_masked_json_document_gets_its_secrets_back() -> None:
    original = json.dumps(DOCUMENT)
    shown = json.loads(RULES.text(original))
    shown["user"], shown["pin"] = "bob", "4321"  # one edit, one secret replaced on purpose

    sent = json.loads(RULES.restore(json.dumps(shown), original))

    assert sent == {**DOCUMENT, "user": "bob", "pin": "4321"}


def test_a_mask_where_the_original_had_no_secret_is_refused() -> None:
    original = json.dumps(DOCUMENT)
    shown = json.loads(RULES.text(original))
    shown["invoice"] = MASK

    with pytest.raises(Q2CError, match=r"••• at \$.invoice stands for no masked value"):
        RULES.restore(json.dumps(shown), original)


def test_an_edited_masked_text_gets_its_secrets_back_in_order() -> None:
    original = "user=ada&password=hunter2&token=t0k3n"
    edited = RULES.text(original).replace("ada", "bob")

    assert RULES.restore(edited, original) == "user=bob&password=hunter2&token=t0k3n"
    with pytest.raises(Q2CError, match="has 1 masked value"):
        RULES.restore(f"user=bob&password={MASK}", original)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('{"callback": "https://h/cb?api_key=SECRET1"}', "SECRET1"),
        ('{"blob": "{\\"password\\": \\"SECRET2\\"}"}', "SECRET2"),
        ("{'password': 'SECRET3'}", "SECRET3"),
        ('{"password": "SECRET4",}', "SECRET4"),
        ('{"password": "SECRET5", "a": 1', "SECRET5"),
        ('"password=SECRET6"', "SECRET6"),
        ("retries = 3\npassword = SECRET7", "SECRET7"),
        ('{"a": 1}\n{"token": "SECRET8"}', "SECRET8"),
        ('level=error msg="x" password="SECRET9"', "SECRET9"),  # logfmt
        ("<auth password='SECRET10'/>", "SECRET10"),  # an XML attribute
        ("SET password = 'SECRET11'", "SECRET11"),
        ("msg:password:SECRET12", "SECRET12"),  # a pair inside another's value
        ("https://acct.blob.example/c?sv=2024&sig=SECRET13", "SECRET13"),  # a SAS
        ("https://s3.example/o?X-Amz-Signature=SECRET14&X-Amz-Date=1", "SECRET14"),
        ("Cookie: a=1; JSESSIONID=SECRET15", "SECRET15"),
        ("sslpassword=SECRET16 host=db", "SECRET16"),
        ("redis://:SECRET17@cache:6379/0", "SECRET17"),
        ('[{"name": "X-Api-Key", "value": "SECRET18"}]', "SECRET18"),  # HAR headers
        ("csrftoken=SECRET19", "SECRET19"),
        ('password="it\'s SECRET20"', "SECRET20"),  # the other quote inside
        ("a:" * 5000 + "password:SECRET21", "SECRET21"),
    ],
)
def test_secrets_in_strings_and_text_that_is_not_json_are_masked(text: str, secret: str) -> None:
    assert secret not in RULES.text(text)


def test_timestamps_and_amounts_are_not_taken_for_card_numbers() -> None:
    text = '{"at": 1733097600000, "amount": 1.123456789012345678, "order": 1234567890123}'

    assert RULES.text(text) == text


def test_restore_keeps_numbers_exact_and_refuses_what_it_cannot_place() -> None:
    original = '{"amount": 1.123456789012345678, "password": "p"}'
    edited = RULES.text(original).replace("1.123456789012345678", "2.123456789012345678")

    assert RULES.restore(edited, original) == '{"amount": 2.123456789012345678, "password": "p"}'
    with pytest.raises(Q2CError, match="keep the edited payload valid JSON"):
        RULES.restore("password=•••", original)
    with pytest.raises(Q2CError, match="the text just before masked value 1"):
        RULES.restore("user=•••&password=x", "user=bob&password=hunter2")


def test_a_name_value_list_masks_the_values_of_secret_names_only() -> None:
    headers = [
        {"name": "X-Api-Key", "value": "k-9f8e7d6c"},
        {"name": "Accept", "value": "application/json"},
        {"name": "Session fee", "value": 250},  # business data: a name, not a key's
        {"key": "token", "value": "t0k3n", "note": "x"},  # not a bare pair
    ]

    shown = json.loads(RULES.text(json.dumps(headers)))

    assert [item["value"] for item in shown] == [MASK, "application/json", 250, "t0k3n"]


def test_renaming_a_masked_name_value_pair_does_not_reveal_its_value() -> None:
    original = json.dumps({"fields": [{"name": "api_key", "value": "k-9f8e7d6c"}]})
    shown = RULES.text(original)

    assert json.loads(RULES.restore(shown, original)) == json.loads(original)
    with pytest.raises(Q2CError, match=r"the name of the masked value at .* changed"):
        RULES.restore(shown.replace("api_key", "note"), original)
