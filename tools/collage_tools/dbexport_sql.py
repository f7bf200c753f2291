"""The reading of --query that refuses anything but one SELECT, before anything is contacted.

The SQL is read as the backend spells literals, quoted names and comments, so words inside
them do not count; what is left must start with SELECT or WITH, hold no second statement and no
word that writes. The session is read-only too (dbexport._READ_ONLY), which holds whatever
this reading misses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

from collage_tools.dbexport_errors import ExportConfigError

# Words that write, lock or make a SELECT write (INTO OUTFILE, a table, @var), wherever they
# stand as SQL: PostgreSQL runs DML inside a WITH, MySQL writes files with SELECT ... INTO.
# Followed by "(" a word is a function (MySQL's INSERT(), REPLACE()) and passes.
_WRITING_WORDS = frozenset(
    {
        *("INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "TRUNCATE", "INTO"),
        *("DROP", "ALTER", "CREATE", "RENAME", "GRANT", "REVOKE", "CALL", "LOCK"),
        *("ATTACH", "DETACH", "PRAGMA"),
    }
)


@cache
def _sql_lexer(mysql: bool) -> re.Pattern[str]:
    """Literals, quoted names and comments (skipped), then what is SQL: words and ';'."""
    if mysql:  # MySQL's strings take backslash escapes; it has no [name]
        strings = [r"'(?:''|\\[\s\S]|[^'\\])*'", r'"(?:""|\\[\s\S]|[^"\\])*"']
        opening = r"['\"`]|/\*"
    else:
        strings = [r"'(?:''|[^'])*'", r'"(?:""|[^"])*"', r"\[[^\]]*\]"]
        opening = r"['\"`\[]|/\*"
    skipped = [
        *strings,
        r"`(?:``|[^`])*`",
        r"--(?=\s|$)[^\n]*",  # MySQL needs the space; "--x" stays SQL, the safer reading
        r"/\*(?!M?!)[\s\S]*?\*/",
    ]
    return re.compile(
        f"(?P<skip>{'|'.join(skipped)})|(?P<executable>/\\*M?!)"
        rf"|(?P<word>[A-Za-z_][A-Za-z0-9_$]*)(?P<call>\s*\()?|(?P<end>;)|(?P<open>{opening})"
    )


def _sql_tokens(text: str, mysql: bool) -> Iterator[tuple[str, bool, str]]:
    """(word in capitals or ';', whether a '(' follows it, where) for what is SQL in `text`."""
    for match in _sql_lexer(mysql).finditer(text):
        at = f"at character {match.start() + 1}"
        if match.lastgroup == "executable":
            raise ExportConfigError(f"--query: executable comments (/*! */) are refused ({at})")
        if match.lastgroup == "open":
            raise ExportConfigError(f"--query: a quote or comment {at} is not closed")
        if match.lastgroup != "skip":
            token = match.group("word") or match.group("end")
            yield token.upper(), match.group("call") is not None, at


def check_query(sql: str, backend: str) -> str:
    """--query without its trailing ';', or ExportConfigError unless it is one SELECT.

    A reading of the SQL as `backend` spells literals and comments, before anything is
    contacted; the session is read-only too (_READ_ONLY), which holds whatever this misses.
    """
    text = sql.strip().rstrip(";").rstrip()
    tokens = list(_sql_tokens(text, backend == "mysql"))
    first = tokens[0][0] if tokens else "nothing"
    if first not in ("SELECT", "WITH"):
        raise ExportConfigError(f"--query must be one SELECT; it starts with {first}")
    for token, call, at in tokens:
        if token == ";":
            raise ExportConfigError(f"--query must be one SELECT; a second statement {at}")
        if token in _WRITING_WORDS and not call:
            raise ExportConfigError(f"--query must be one SELECT; {token} {at} would write")
    return text
