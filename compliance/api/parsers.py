"""The API's JSON parser. Kept free of ``rest_framework.views`` imports: DRF loads parser classes
while it is itself being imported."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser, get_encoding


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a key given twice is ambiguous (which one did the sender mean?)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return result


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(JSONParser):
    """Strict JSON: no NaN/Infinity, no duplicate keys, no lone UTF-16 surrogates (they cannot be
    stored or answered in UTF-8), nesting bounded by the interpreter's recursion limit. Every
    refusal is a 400 ``parse_error`` whose message never repeats the body."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding) if stream is not None else ""
            data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
            json.dumps(data, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
        except UnicodeError:
            raise exceptions.ParseError("JSON parse error - the body is not valid UTF-8 text "
                                        "(lone surrogates included)") from None
        except ValueError as exc:  # json's messages name a position, never the input itself
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        return data
