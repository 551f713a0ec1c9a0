"""Reading a multipart/form-data body with the stdlib `email` parser (`cgi` is deprecated).

Owns: turning (Content-Type, body bytes) into text fields and file fields. Must never:
validate field values (the server does) or touch sockets.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
from dataclasses import dataclass, field

__all__ = ["Form", "FormError", "parse_form"]


class FormError(ValueError):
    """The body is not a multipart/form-data form we can read."""


@dataclass(frozen=True)
class Form:
    """Text fields (decoded UTF-8) and file fields (raw bytes); a repeated name keeps its first."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def parse_form(content_type: str, body: bytes, file_fields: frozenset[str] = frozenset()) -> Form:
    """Split a multipart/form-data body into fields and files; raises FormError.

    A part is a file when it has a filename or its name is in `file_fields` (some clients
    send file parts without a filename).
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise FormError("Content-Type must be multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    except Exception as exc:  # the email package raises many types on hostile input
        raise FormError(f"unreadable multipart body: {exc}") from exc
    if not message.is_multipart():
        raise FormError("multipart body has no parts (missing or wrong boundary?)")
    try:
        return _split(message, file_fields)
    except Exception as exc:  # malformed part headers surface only while reading parts
        raise FormError(f"unreadable multipart part: {exc}") from exc


def _split(message: email.message.EmailMessage, file_fields: frozenset[str]) -> Form:
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name in file_fields or part.get_filename() is not None:
            files.setdefault(name, data)
        else:
            fields.setdefault(name, data.decode("utf-8", errors="replace"))
    return Form(fields, files)
