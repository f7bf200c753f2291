"""Place tiles on pages in order and encode each page as soon as it is full.

Tiles fill each page row-major; `rows*cols` tiles per page, then the next page. With
on_failure='placeholder' a failed cover keeps its cell and shows the placeholder tile; with
'close_up' later tiles move up into it. A page on which no cover rendered is not written, so
no tiles, or only failures, give no pages at all.
"""

from __future__ import annotations

from PIL import Image

from collage.engine.render import (
    Layout,
    encode_jpeg,
    encode_thumbnail,
    new_canvas,
    paste_tile,
    placeholder_tile,
)


class Pages:
    """The pages so far: `encoded` JPEGs, and page 1's `thumbnail` when a width is given."""

    def __init__(self, layout: Layout, thumbnail_width: int | None = None) -> None:
        self.layout = layout
        self.thumbnail_width = thumbnail_width
        self.encoded: list[bytes] = []
        self.thumbnail: bytes | None = None
        self._slots = 0  # cells used so far, over all pages
        self._canvas: Image.Image | None = None
        self._page_has_cover = False
        self._placeholder: Image.Image | None = None

    def place(self, tile: Image.Image | None) -> int | None:
        """Put the next cover (None: a failed one); returns its 1-based page, if it has one."""
        if tile is None and self.layout.on_failure == "close_up":
            return None
        if self._canvas is None:
            self._canvas = new_canvas(self.layout)
        shown = tile if tile is not None else self._placeholder_tile()
        paste_tile(self._canvas, shown, self._slots, self.layout)
        self._page_has_cover = self._page_has_cover or tile is not None
        page = len(self.encoded) + 1
        self._slots += 1
        if self._slots % self.layout.cells == 0:
            self.finish_page()
        return page if tile is not None else None

    def finish_page(self) -> None:
        """Encode the page in progress (a full one, or the last)."""
        if self._canvas is not None and self._page_has_cover:
            if not self.encoded and self.thumbnail_width:
                self.thumbnail = encode_thumbnail(self._canvas, self.thumbnail_width)
            self.encoded.append(encode_jpeg(self._canvas, self.layout.quality))
        elif self._canvas is not None:
            # Only placeholders on this page: drop it, and start the next page afresh.
            self._slots -= self.layout.cells
        self._canvas = None
        self._page_has_cover = False

    def _placeholder_tile(self) -> Image.Image:
        if self._placeholder is None:  # drawn once, with the first failure
            self._placeholder = placeholder_tile(self.layout)
        return self._placeholder
