"""Debian package short → long descriptions, from the archive's ``Translation-en`` index.

The ``Packages`` lists on this machine carry only the one-line short description; the long
ones come from ``Translation-en`` (fetched into the cache by
``debian.apt_translation_files``), with ``/var/lib/dpkg/status`` as a fallback for installed
packages missing there. Binary packages built from one source package (``0ad``,
``0ad-data``, ...) share most of their long description, so each description records its
source package (from the ``Packages`` lists), which the suite uses as the unit of its split.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aegis_lab.data.debian import apt_translation_files, file_digest, read_apt_index

__all__ = [
    "PackageDescription",
    "descriptions_key",
    "load_descriptions",
    "long_description_text",
    "parse_stanzas",
    "source_packages",
]

DPKG_STATUS = Path("/var/lib/dpkg/status")


@dataclass(frozen=True)
class PackageDescription:
    package: str
    source: str
    short: str
    long: str


def parse_stanzas(text: str) -> Iterator[dict[str, str]]:
    """RFC 822-style stanzas of an apt index (continuation lines kept with their newline)."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if line.startswith((" ", "\t")) and key is not None:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip()
                fields[key] = value.strip()
        if fields:
            yield fields


def long_description_text(lines: Iterable[str]) -> str:
    """The long description from its continuation lines: `` .`` separates paragraphs, lines of
    a paragraph are joined (one paragraph per output line)."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        body = line[1:] if line.startswith(" ") else line
        if body.strip() == ".":
            paragraphs.append([])
        else:
            paragraphs[-1].append(body.strip())
    return "\n".join(" ".join(" ".join(p).split()) for p in paragraphs if any(p))


def _description(fields: dict[str, str], key: str) -> tuple[str, str] | None:
    value = fields.get(key)
    if value is None:
        return None
    first, *rest = value.split("\n")
    return " ".join(first.split()), long_description_text(rest)


def source_packages(texts: Iterable[str]) -> dict[str, str]:
    """Binary package → source package name, from ``Packages`` list texts."""
    out: dict[str, str] = {}
    for text in texts:
        for fields in parse_stanzas(text):
            name = fields.get("Package")
            if name and name not in out:
                out[name] = fields.get("Source", name).split()[0]
    return out


def _lists_dir_files(pattern: str) -> list[Path]:
    return [p for f in apt_translation_files() for p in sorted(f.parent.glob(pattern))]


def descriptions_key() -> str:
    """Digest of the Translation-en files: keys data built from them."""
    return "-".join(file_digest(p) for p in apt_translation_files())


def load_descriptions(
    translation_texts: Iterable[str] | None = None,
    packages_texts: Iterable[str] | None = None,
    status_text: str | None = None,
) -> list[PackageDescription]:
    """Every package with a non-empty long description, sorted by package name.

    Without arguments the texts are the cached ``Translation-en`` and ``Packages`` lists and
    the local dpkg status file.
    """
    if translation_texts is None:
        translation_texts = [read_apt_index(p) for p in apt_translation_files()]
    if packages_texts is None:
        packages_texts = [read_apt_index(p) for p in _lists_dir_files("*_Packages*")]
    if status_text is None:
        status_text = DPKG_STATUS.read_text("utf-8", "replace") if DPKG_STATUS.is_file() else ""
    sources = source_packages(packages_texts)
    found: dict[str, tuple[str, str]] = {}
    for text in translation_texts:
        for fields in parse_stanzas(text):
            name, desc = fields.get("Package"), _description(fields, "Description-en")
            if name and desc and desc[1] and name not in found:
                found[name] = desc
    for fields in parse_stanzas(status_text):
        name, desc = fields.get("Package"), _description(fields, "Description")
        if name and desc and desc[1] and name not in found:
            found[name] = desc
            if name not in sources:
                sources[name] = fields.get("Source", name).split()[0]
    return [
        PackageDescription(name, sources.get(name, name), short, long)
        for name, (short, long) in sorted(found.items())
    ]
