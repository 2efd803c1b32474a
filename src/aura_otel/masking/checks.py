"""Validity checks run on candidates only: they keep the rule table broad and false positives low.

A 16-digit number is a card only with a network prefix and a valid Luhn digit; an IBAN only with
its country's length and mod-97 check; an SSN only with an area, group and serial that the SSA
issues. None of these run on clean text (RE2 finds no candidate there).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from typing import Final


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_like(digits: str) -> bool:
    """13-19 digits, an issuer prefix that card networks use, and a valid Luhn check digit."""
    if not 13 <= len(digits) <= 19:
        return False
    if digits[0] not in "3456" and not ("22" <= digits[:2] <= "27"):
        return False
    return luhn(digits)


#: IBAN length by country (ISO 13616 registry). A candidate from a country not listed is kept.
IBAN_LENGTHS: Final = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BI": 27,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DJ": 27,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FK": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "LY": 25,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MN": 20,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NI": 28,
    "NL": 18,
    "NO": 15,
    "OM": 23,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "RU": 33,
    "SA": 24,
    "SC": 31,
    "SD": 18,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "SO": 23,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
    "YE": 30,
}


def iban_valid(compact: str) -> bool:
    """Country length and the ISO 7064 mod-97 check (a random string passes 1 time in 97)."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def ssn_valid(digits: str) -> bool:
    """The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


#: First letters never used in a UK National Insurance number, second letters never used, and
#: prefixes never allocated (HMRC's rules).
_NINO_BAD_FIRST: Final = frozenset("DFIQUV")
_NINO_BAD_SECOND: Final = frozenset("DFIOQUV")
_NINO_BAD_PREFIX: Final = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def nino_valid(compact: str) -> bool:
    if len(compact) != 9:
        return False
    prefix = compact[:2]
    return (
        prefix[0] not in _NINO_BAD_FIRST
        and prefix[1] not in _NINO_BAD_SECOND
        and prefix not in _NINO_BAD_PREFIX
        and compact[2:8].isdigit()
        and compact[8] in "ABCD"
    )


def nanp_valid(groups: list[str]) -> bool:
    """North American numbers: area code and exchange do not start with 0 or 1."""
    return (
        len(groups) == 3
        and len(groups[0]) == 3
        and len(groups[1]) == 3
        and groups[0][0] not in "01"
        and groups[1][0] not in "01"
    )


#: File extensions that are not top-level domains: ``thumbnail@2x.png`` is an asset name.
ASSET_EXTENSIONS: Final = frozenset(
    {
        "png",
        "jpg",
        "jpeg",
        "gif",
        "webp",
        "svg",
        "bmp",
        "tif",
        "tiff",
        "heic",
        "heif",
        "avif",
        "ico",
        "mp4",
        "webm",
        "mkv",
        "avi",
        "wav",
        "mp3",
        "ogg",
        "flac",
        "m4a",
        "aac",
        "json",
        "yaml",
        "yml",
        "txt",
        "csv",
        "pdf",
        "html",
        "htm",
        "css",
        "js",
        "mjs",
        "ts",
        "py",
        "md",
        "xml",
        "srt",
        "vtt",
        "ttf",
        "otf",
        "woff",
        "woff2",
        "gz",
        "tar",
        "lottie",
        "glb",
        "gltf",
    }
)
_SCALE_LABEL = re.compile(r"[0-9]+(?:\.[0-9]+)?x", re.IGNORECASE)


def _word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


def email_local_start(local: str) -> int | None:
    """Where the address's local part starts in ``local`` (the candidate may have swallowed
    non-ASCII punctuation before it, such as a dash or a quote), or None if nothing is left."""
    start = len(local)
    while start > 0 and (_word_char(local[start - 1]) or local[start - 1] in "._%+-"):
        start -= 1
    return start if start < len(local) else None


def email_like(domain: str) -> bool:
    """Domain labels of letters, digits and hyphens (any script), a top-level domain of
    letters or xn--; and ``name@2x.png`` or ``icon@3x.webp`` are asset names, not addresses."""
    labels = domain.lower().split(".")
    if not all(label and all(_word_char(ch) or ch == "-" for ch in label) for label in labels):
        return False
    tld = labels[-1]
    if not (tld.startswith("xn--") or (len(tld) >= 2 and tld.isalpha())):
        return False
    if tld in ASSET_EXTENSIONS:
        return False
    return not (len(labels) >= 2 and _SCALE_LABEL.fullmatch(labels[-2]))


_LOWER_RUN = re.compile(r"[a-z]{8,}|[A-Z]{8,}")


def random_like(value: str) -> bool:
    """A high-entropy backstop for values with no known shape: letters of both cases and
    digits, no long word-like run, and at least 3.5 bits of Shannon entropy per character.
    Identifiers people read (``job-2024-11-24-0001``, UUIDs, hex digests, paths of words)
    fail one of these."""
    value = value.rstrip("=")
    if len(value) < 20:
        return False
    upper = sum(ch.isupper() for ch in value)
    lower = sum(ch.islower() for ch in value)
    digits = sum(ch.isdigit() for ch in value)
    if upper < 2 or lower < 2 or digits < 2 or _LOWER_RUN.search(value):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5
