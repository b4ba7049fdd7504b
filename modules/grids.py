"""Labelled image grids like the webui's X/Y/Z plot: x values across, y values down, one grid per z value.

Labels use PIL's built-in font (`ImageFont.load_default`), so grids draw the same with or without system fonts.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

CELL_SIZE = 96  # the default model's 32x32 images would be unreadably small in a grid
PADDING = 6
CELL_GAP = 2  # a thin line of background between cells, so neighbouring images do not blend
FONT_SIZE = 13
MAX_ROW_LABEL_WIDTH = 160
BACKGROUND = "white"
INK = "black"


def label_font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def upscale_for_display(image: Image.Image, min_side: int = CELL_SIZE) -> Image.Image:
    """Scale up by a whole factor with NEAREST, so each generated pixel stays an exact square block."""
    factor = max(1, min_side // max(image.size))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def text_width(text: str, font: ImageFont.ImageFont) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def line_height(font: ImageFont.ImageFont) -> int:
    _, top, _, bottom = font.getbbox("Ag")
    return int(bottom - top) + 3


def wrap_text(text: str, font: ImageFont.ImageFont, max_width: int) -> list[str]:
    """Greedy word wrap to `max_width` pixels; a word longer than a line is split between characters."""
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if text_width(candidate, font) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for character in word:
                if line and text_width(line + character, font) > max_width:
                    lines.append(line)
                    line = ""
                line += character
        lines.append(line)
    return lines


def draw_centered_lines(draw: ImageDraw.ImageDraw, lines: list[str], box: tuple[int, int, int, int], font) -> None:
    """Draw `lines` centred in `box` (left, top, right, bottom)."""
    left, top, right, bottom = box
    height = line_height(font)
    y = top + (bottom - top - height * len(lines)) // 2
    for line in lines:
        x = left + (right - left - text_width(line, font)) // 2
        draw.text((x, y), line, fill=INK, font=font)
        y += height


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes in a labelled grid, in pixels."""

    left_margin: int  # row labels
    top_margin: int  # title and column labels
    title_height: int
    slot_width: int  # every cell is centred in a slot this size
    slot_height: int
    rows: int
    columns: int

    @property
    def size(self) -> tuple[int, int]:
        return (
            self.left_margin + self.columns * (self.slot_width + CELL_GAP) - CELL_GAP,
            self.top_margin + self.rows * (self.slot_height + CELL_GAP) - CELL_GAP,
        )

    def slot(self, row: int, column: int) -> tuple[int, int, int, int]:
        left = self.left_margin + column * (self.slot_width + CELL_GAP)
        top = self.top_margin + row * (self.slot_height + CELL_GAP)
        return left, top, left + self.slot_width, top + self.slot_height


def layout_grid(
    cells: list[list[Image.Image]], column_lines: list[list[str]], row_lines: list[list[str]], title_lines, font
) -> GridLayout:
    height = line_height(font)
    label_width = max((text_width(line, font) for lines in row_lines for line in lines), default=0)
    column_label_height = max((len(lines) for lines in column_lines), default=0) * height
    title_height = len(title_lines) * height + PADDING if title_lines else 0
    return GridLayout(
        left_margin=label_width + 2 * PADDING if label_width else 0,
        top_margin=title_height + (column_label_height + 2 * PADDING if column_label_height else 0),
        title_height=title_height,
        slot_width=max(image.width for row in cells for image in row),
        slot_height=max(image.height for row in cells for image in row),
        rows=len(cells),
        columns=max(len(row) for row in cells),
    )


def labelled_grid(
    rows: list[list[Image.Image]],
    column_labels: list[str],
    row_labels: list[str],
    title: str = "",
    cell_size: int = CELL_SIZE,
) -> Image.Image:
    """`rows[r][c]` in a grid with `column_labels` above the columns and `row_labels` left of the rows.

    Empty label lists (an unused axis) leave out that margin. Cells are upscaled for display (see
    `upscale_for_display`) and centred in slots the size of the largest cell.
    """
    font = label_font()
    cells = [[upscale_for_display(image, cell_size) for image in row] for row in rows]
    slot_width = max(image.width for row in cells for image in row)
    columns = max(len(row) for row in cells)
    column_lines = [wrap_text(label, font, slot_width) for label in column_labels]
    row_lines = [wrap_text(label, font, MAX_ROW_LABEL_WIDTH) for label in row_labels]
    title_lines = wrap_text(title, font, columns * slot_width) if title else []
    layout = layout_grid(cells, column_lines, row_lines, title_lines, font)

    grid = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(grid)
    if title_lines:
        draw_centered_lines(draw, title_lines, (layout.left_margin, PADDING, grid.width, layout.title_height), font)
    for column, lines in enumerate(column_lines):
        left, _, right, _ = layout.slot(0, column)
        draw_centered_lines(draw, lines, (left, layout.title_height, right, layout.top_margin), font)
    for row, lines in enumerate(row_lines):
        _, top, _, bottom = layout.slot(row, 0)
        draw_centered_lines(draw, lines, (0, top, layout.left_margin, bottom), font)
    for row, images in enumerate(cells):
        for column, image in enumerate(images):
            left, top, right, bottom = layout.slot(row, column)
            grid.paste(image, (left + (right - left - image.width) // 2, top + (bottom - top - image.height) // 2))
    return grid


def side_by_side(images: list[Image.Image], gap: int = 4 * PADDING) -> Image.Image:
    """Images left to right, top-aligned, on the grid background (the webui places z grids this way)."""
    if len(images) == 1:
        return images[0]
    width = sum(image.width for image in images) + gap * (len(images) - 1)
    combined = Image.new("RGB", (width, max(image.height for image in images)), BACKGROUND)
    left = 0
    for image in images:
        combined.paste(image, (left, 0))
        left += image.width + gap
    return combined


def stacked(images: list[Image.Image], gap: int = PADDING) -> Image.Image:
    """Images top to bottom, left-aligned, on the grid background."""
    if len(images) == 1:
        return images[0]
    height = sum(image.height for image in images) + gap * (len(images) - 1)
    combined = Image.new("RGB", (max(image.width for image in images), height), BACKGROUND)
    top = 0
    for image in images:
        combined.paste(image, (0, top))
        top += image.height + gap
    return combined
