"""Names derived from untrusted input: object keys, execution names, run ids.

Creator names and CSV names come from users. They become S3 key segments and Step Functions
execution names, so they are neutralised here, in one place, and made collision-free.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime

MAX_SAFE_NAME = 100  # characters of the readable part of a key segment
# The tail safe_segment gives a changed name; a name that already ends like it gets one too.
_HASH_TAIL = re.compile(r"-[0-9a-f]{8}$")
# Path and shell characters, C0/C1 controls, and the invisible ones: zero-width characters,
# bidi overrides and isolates, soft hyphen, BOM, line and paragraph separators.
# Characters unsafe in a key or a URL, refused in a message's output_prefix too.
_KEY_UNSAFE = ':*?"<>|#%{}^~`[]\\'
_UNSAFE = re.compile(
    rf"[\x00-\x1f\x7f-\x9f/{re.escape(_KEY_UNSAFE)}"
    r"\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]+"
)
# Names Windows keeps for devices, with or without an extension ("con", "com1.txt").
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\.|$)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s_]+")
# Execution names: 1-80 chars, no whitespace nor <>{}[]?*"#%\^|~`$&,;:/ and no control characters.
_EXECUTION_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_EXECUTION_NAME = 80
# A message's output_prefix: at most this many bytes of UTF-8, so that with the trigger's
# folder, "collages/" and the longest creator key (~440 bytes) an object key stays far below
# S3's 1,024 bytes. Characters refused in it: the key segments' unsafe set, and any control,
# format (bidi overrides, zero-width), separator or surrogate character.
MAX_PREFIX_BYTES = 256
_PREFIX_UNSAFE = frozenset(_KEY_UNSAFE)
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def safe_segment(name: str) -> str:
    """A readable, safe S3 key segment for `name`; distinct names always give distinct segments,
    also where keys are compared without case (a download to macOS or Windows).

    Path separators, `..`, control, invisible and shell-hostile characters become `_`, the
    result is cut to MAX_SAFE_NAME characters; letters of any script stay readable. A short hash
    of the original is appended whenever the result differs from the name itself, so two names
    that neutralise alike (`a/b` and `a\\b`) never share a key; and to any name with capitals
    or that Windows reserves (`con`), so `Alice` and `alice` differ without their case.
    """
    text = unicodedata.normalize("NFC", name)
    cleaned = _UNSAFE.sub("_", text)
    cleaned = _SEPARATORS.sub("_", cleaned).strip("._-")
    cleaned = re.sub(r"\.{2,}", "_", cleaned)[:MAX_SAFE_NAME].rstrip("._-")
    if cleaned == name and cleaned == cleaned.lower() and not _needs_tail(name):
        return cleaned
    return f"{cleaned or 'creator'}-{short_hash(name)}"


def _needs_tail(name: str) -> bool:
    """An empty name, one that ends like a hash tail, or a Windows device name."""
    return not name or bool(_HASH_TAIL.search(name) or _WINDOWS_RESERVED.match(name))


EXECUTION_DIGEST = 10  # hex characters of the identity's hash that end an execution name


def execution_label(label: str) -> str:
    """The readable part of an execution name (clients find a CSV's runs by it)."""
    readable = _EXECUTION_UNSAFE.sub("-", unicodedata.normalize("NFKD", label))
    return readable.strip("-.")[: MAX_EXECUTION_NAME - EXECUTION_DIGEST - 1] or "run"


def execution_name(label: str, identity: str) -> str:
    """A readable, valid execution name: the label (CSV name, message id) plus a short hash of
    the full identity (bucket/key/version, message id) so equal labels never collide."""
    return f"{execution_label(label)}-{short_hash(identity, EXECUTION_DIGEST)}"


def run_timestamp(moment: datetime) -> str:
    """The run's timestamp as it appears in object names: 20250119T103000Z."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def csv_stem(key: str) -> str:
    """`csv-files/daily/covers.csv` -> `covers` (the readable part of a run's names)."""
    base = key.rsplit("/", 1)[-1]
    return base[:-4] if base.lower().endswith(".csv") else base


def clean_prefix(prefix: str) -> str:
    """A folder path from an uploaded CSV's key, made safe: segments neutralised, no `..`, no
    leading `/` (an upload cannot be refused; a message's output_prefix is, see check_prefix)."""
    parts = [p for p in re.split(r"[/\\]+", prefix or "") if p and p not in (".", "..")]
    return "/".join(safe_segment(p) for p in parts)


def check_prefix(prefix: str) -> str:
    """A message's output_prefix as given, less one trailing `/`, or ValueError with the reason.

    Refused rather than neutralised, so the sender learns why: `..` or `.` segments, an
    absolute path, `//`, backslashes, control or invisible characters, characters unsafe in a
    key, over MAX_PREFIX_BYTES, or nothing left that names a folder.
    """
    problem = _character_problem(prefix) or _path_problem(prefix.removesuffix("/"))
    if problem:
        raise ValueError(problem)
    return prefix.removesuffix("/")


def _character_problem(prefix: str) -> str | None:
    size = len(prefix.encode("utf-8", "surrogatepass"))  # first: a long one is not scanned
    if size > MAX_PREFIX_BYTES:
        return f"longer than {MAX_PREFIX_BYTES} bytes of UTF-8 ({size:,})"
    for position, char in enumerate(prefix):
        if unicodedata.category(char) in _INVISIBLE:
            return f"contains an unprintable character U+{ord(char):04X} at position {position}"
        if char in _PREFIX_UNSAFE:
            shown = "a backslash" if char == "\\" else repr(char)
            return f"contains {shown} at position {position}, not allowed in a folder name"
    return None


def _path_problem(path: str) -> str | None:
    if not path.strip(" ./"):
        return "names no folder"
    if path.startswith("/"):
        return "is absolute (starts with /)"
    for segment in path.split("/"):
        if not segment.strip():
            return "has an empty folder name (// or a blank one)"
        if segment in (".", ".."):
            return f"has a {segment!r} segment"
    return None
