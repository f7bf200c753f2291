"""CSV lines as bytes, their fields located by numpy: no Python object per field.

The split's fast path (split._Creators._take_raw). csv.reader splits a line that holds no
double quote (and no lone CR) on every comma, so the fields of a block of such lines are
fixed by where its commas and newlines are. Quotes are taken too where they only wrap whole
fields (`"a, b",c`, as exporters that quote every field write them): a comma is a separator
when an even number of quotes comes before it, and a field's value is what its quotes wrap.
Other quoting (doubled quotes, a quote inside a field, a field over several lines) is left
to csv.reader: the block says it is not `simple`. Short texts are read eight bytes at a time
through an unaligned uint64 view of the block, so a name, a date or the head of a URL costs
a few gathers a column. A row that these whole-column tests do not settle takes the split's
full check, which decides exactly as csv_input.check_record does.
"""

from __future__ import annotations

import csv

import numpy as np

from collage.config import MAX_URL_LENGTH

_PAD = 64  # zero bytes after the block, so eight-byte reads near its end stay inside it
_HTTPS = int.from_bytes(b"https://", "little")
_HOST_WORDS = 4  # a host of up to 31 characters is checked here, a longer one by the regex
_HOST_BYTES = np.zeros(256, dtype=bool)  # what split._URL_OK allows in a host
_HOST_BYTES[list(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")] = True
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_MIX_A = np.uint64(0x9E3779B97F4A7C15)
_MIX_B = np.uint64(0xBF58476D1CE4E5B9)
MAX_NAME_WORDS = 8  # names of up to 64 bytes go in the NameTable; longer ones use the dict
MAX_TABLE_NAMES = 1 << 18  # ~30 MB: a month has ~57,000 creators; past that, the dict answers


class RawLines:
    """A block of whole lines (each ended by a newline), none with a CR. Unless `simple`, its
    quotes are not only whole-field wrappers and nothing else here may be used."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        padded = data + bytes(_PAD)
        codes = np.frombuffer(padded, dtype=np.uint8)[: len(data)]
        self.codes = codes
        # The eight bytes at every offset, as one little-endian number.
        self.words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
        # One pass finds the newlines, commas and quotes, and the bytes no URL or date of the
        # fast path holds (controls, space, non-ASCII; DEL apart, as it is rare).
        marks = codes.view(np.int8) < 33
        marks |= codes == 44
        marks |= codes == 34
        found = np.flatnonzero(marks)
        kind = codes[found]
        newline, comma = kind == 10, kind == 44
        self.simple = True
        self.quoted = bool(34 in kind)
        if self.quoted:
            quote = kind == 34
            inside = (np.cumsum(quote) - quote) % 2 == 1  # an odd number of quotes before
            self.simple = _wraps_fields(codes, found[quote], inside[quote], inside[newline])
            comma &= ~inside
        self.ends = found[newline]  # each line's newline
        self.count = len(self.ends)
        self.starts = np.concatenate(([0], self.ends[:-1] + 1))
        commas = found[comma]
        before = np.cumsum(comma)[newline]  # commas before each line's end
        self.fields = np.diff(before, prepend=0) + 1  # fields per line
        self._first_comma = before - (self.fields - 1)
        self._commas = commas if commas.size else np.zeros(1, dtype=np.int64)
        self._odd = found[(kind != 10) & (kind != 44) & (kind != 34)]
        if b"\x7f" in data:
            self._odd = np.union1d(self._odd, np.flatnonzero(codes == 127))
        self._odd_line = np.searchsorted(self.ends, self._odd)

    def field(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) of field `index` of every line; meaningless where it has fewer fields."""
        last = len(self._commas) - 1
        if index == 0:
            start = self.starts
        else:
            start = self._commas[np.minimum(self._first_comma + (index - 1), last)] + 1
        after = self._commas[np.minimum(self._first_comma + index, last)]
        end = np.where(self.fields > index + 1, after, self.ends)
        if self.quoted:  # a field in quotes is what they wrap
            wrapped = self.codes[start] == 34
            start, end = start + wrapped, end - wrapped
        return start, end

    def line(self, at: int) -> list[str]:
        """Line `at` as csv.reader gives it (invalid UTF-8 replaced, as the tokenizer does)."""
        text = self.data[self.starts[at] : self.ends[at]].decode("utf-8", "replace")
        if '"' in text:
            return next(csv.reader([text]))
        return text.split(",") if text else []

    def text(self, start: np.ndarray, end: np.ndarray, at: int) -> bytes:
        return self.data[start[at] : end[at]]

    def texts(self, start: np.ndarray, end: np.ndarray, rows: np.ndarray) -> list[bytes]:
        """The texts [start, end) of the given rows, as bytes."""
        data, starts, ends = self.data, start[rows].tolist(), end[rows].tolist()
        return [data[at:to] for at, to in zip(starts, ends, strict=True)]

    def odd_bytes(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Which texts [start, end) hold a byte outside printable ASCII, or a space."""
        found = np.zeros(self.count, dtype=bool)
        if self._odd.size:
            odd, line = self._odd, self._odd_line
            found[line[(odd >= start[line]) & (odd < end[line])]] = True
        return found

    def gather(self, start: np.ndarray, width: int) -> np.ndarray:
        """The `width` bytes from each `start` (beyond the text too), one row each."""
        count = -(-width // 8)
        words = np.empty((len(start), count), dtype="<u8")
        for word in range(count):
            words[:, word] = self.words[start + 8 * word]
        return words.view(np.uint8)[:, :width]

    def plain_urls(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Which texts are "https://" + a host of letters, digits, dots and dashes + "/" and
        at most MAX_URL_LENGTH long (the rest is checked apart, by odd_bytes). False may be
        wrong (http, a long host): the caller then asks the regex."""
        length = end - start
        plain = (length > 9) & (length <= MAX_URL_LENGTH)
        plain &= self.words[start] == _HTTPS
        host = self.gather(start + 8, 8 * _HOST_WORDS)
        first = (~_HOST_BYTES[host]).argmax(axis=1)  # the first byte that is not of a host
        width = host.shape[1]
        plain &= host.reshape(-1).take(np.arange(0, width * len(host), width) + first) == ord("/")
        plain &= (first > 0) & (first + 8 < length)
        return plain


def _wraps_fields(
    codes: np.ndarray, quotes: np.ndarray, closing: np.ndarray, newline_inside: np.ndarray
) -> bool:
    """Does every quote open a field (first byte of a line or after a comma) or close one
    (right before a comma or a newline), no newline falling inside quotes? Then each field is
    either bare or wrapped whole, and no line is left open (the block ends with a newline)."""
    if newline_inside.any():
        return False
    opening = quotes[~closing]
    before = codes[np.maximum(opening - 1, 0)]
    if not ((opening == 0) | (before == 44) | (before == 10)).all():
        return False
    after = codes[quotes[closing] + 1]  # a closing quote is never the block's last byte
    return bool(((after == 44) | (after == 10)).all())


class NameKeys:
    """The names [start, end) of a block as zero-padded words and a 64-bit hash each (both as
    int64, so a table row holds them beside its numbers)."""

    def __init__(self, lines: RawLines, start: np.ndarray, end: np.ndarray) -> None:
        self.lengths = lengths = end - start
        longest = int(lengths.max()) if lengths.size else 0
        count = min(MAX_NAME_WORDS, max(1, -(-longest // 8)))
        words = np.empty((len(start), count), dtype="<u8")
        hashes = lengths.astype(np.uint64) * _MIX_A
        for word in range(count):
            value = lines.words[start + 8 * word]
            left = np.clip(lengths - 8 * word, 0, 8).astype(np.uint64)
            value &= np.where(left >= 8, _ALL_ONES, (np.uint64(1) << (left * 8)) - 1)
            words[:, word] = value
            mixed = (hashes ^ value) * _MIX_B
            mixed ^= mixed >> 31
            hashes = np.where(left > 0, mixed, hashes)  # the same hash whatever `count` is
        hashes ^= hashes >> 29
        self.words = words.view(np.int64)
        self.hashes = hashes.view(np.int64)
        self.fits = lengths <= 8 * MAX_NAME_WORDS


class NameTable:
    """Raw creator-name bytes -> creator index: an open-addressing hash table probed a whole
    column at a time. A name it does not hold (new, over 64 bytes, or sharing a hash with
    another) is answered -1: the caller then looks in its dict.

    A slot is (hash, entry or -1), an entry (creator index, length, hash, words...): one row,
    so a probe and a check cost a cache miss apiece. At most a quarter of the slots are used,
    and it holds at most `limit` names, so a file of a million creators costs it no more
    memory than one of a quarter million.
    """

    def __init__(self, limit: int = MAX_TABLE_NAMES) -> None:
        self.limit = limit
        self.size = 0
        self.entries = np.zeros((1024, 4), dtype=np.int64)
        self.slots = np.full((4096, 2), -1, dtype=np.int64)

    def find(self, keys: NameKeys) -> np.ndarray:
        """The creator index of each name, or -1."""
        found = np.full(len(keys.hashes), -1, dtype=np.int64)
        if self.size:
            rows = np.flatnonzero(keys.fits)
            found[rows] = self._probe(keys.hashes[rows])
            held = np.flatnonzero(found >= 0)
            entry = self.entries.take(found[held], axis=0)  # take: faster than [] in 2-D
            width = min(self.entries.shape[1] - 3, keys.words.shape[1])
            same = entry[:, 1] == keys.lengths[held]
            same &= (entry[:, 3 : 3 + width] == keys.words[held, :width]).all(axis=1)
            found[held] = np.where(same, entry[:, 0], -1)
        return found

    def _probe(self, hashes: np.ndarray) -> np.ndarray:
        """The entry whose hash each is, or -1 (linear probing, all rows at once)."""
        found = np.full(len(hashes), -1, dtype=np.int64)
        mask = len(self.slots) - 1
        rows, slot = np.arange(len(hashes)), hashes & mask
        while rows.size:
            taken = self.slots.take(slot, axis=0)
            hit = taken[:, 0] == hashes[rows]
            hit &= taken[:, 1] >= 0
            found[rows[hit]] = taken[hit, 1]
            going = (taken[:, 1] >= 0) & ~hit
            rows, slot = rows[going], (slot[going] + 1) & mask
        return found

    def add(self, keys: NameKeys, rows: list[int], indexes: list[int]) -> None:
        """Names `rows` of `keys` are creators `indexes`. A name is skipped if it does not
        fit, if its hash is held already or if the table is full (the dict answers it)."""
        rows = np.array(rows, dtype=np.int64)
        indexes = np.array(indexes, dtype=np.int64)
        keep = keys.fits[rows]
        rows, indexes = rows[keep], indexes[keep]
        hashes = keys.hashes[rows]
        _, first = np.unique(hashes, return_index=True)
        first = first[self._probe(hashes[first]) < 0][: self.limit - self.size]
        if not first.size:
            return
        rows, indexes, hashes = rows[first], indexes[first], hashes[first]
        size = self.size + len(rows)
        width = max(self.entries.shape[1], 3 + keys.words.shape[1])
        if size > len(self.entries) or width > self.entries.shape[1]:
            rows_wanted = min(max(size, 2 * len(self.entries)), self.limit)
            grown = np.zeros((rows_wanted, width), dtype=np.int64)
            grown[: self.size, : self.entries.shape[1]] = self.entries[: self.size]
            self.entries = grown
        added = self.entries[self.size : size]
        added[:, 0], added[:, 1], added[:, 2] = indexes, keys.lengths[rows], hashes
        added[:, 3 : 3 + keys.words.shape[1]] = keys.words[rows]
        self.size = size
        if 4 * size > len(self.slots):
            capacity = len(self.slots)
            while 4 * size > capacity:
                capacity *= 2
            self.slots = np.full((capacity, 2), -1, dtype=np.int64)
            self._place(np.arange(size))
        else:
            self._place(np.arange(size - len(rows), size))

    def _place(self, entries: np.ndarray) -> None:
        """Put entries in free slots: each in the first free one from its hash's, a round of
        free slots at a time (a slot is never freed, so every slot probed before it is
        taken, as lookups need)."""
        mask = len(self.slots) - 1
        hashes = self.entries[entries, 2]
        slot = hashes & mask
        while entries.size:
            free = np.flatnonzero(self.slots[slot, 1] < 0)
            taken, first = np.unique(slot[free], return_index=True)  # one entry a slot
            winners = free[first]
            self.slots[taken, 0] = hashes[winners]
            self.slots[taken, 1] = entries[winners]
            placed = np.zeros(len(entries), dtype=bool)
            placed[winners] = True
            entries, hashes, slot = entries[~placed], hashes[~placed], (slot[~placed] + 1) & mask
