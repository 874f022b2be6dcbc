"""The vlm lab's synthetic world: images of one coloured shape in a 3 x 3 grid, their captions, and the
text-only task the language model is pretrained on (see ``labs/vlm.py``)."""

from __future__ import annotations

import torch

COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "blue": (0.15, 0.3, 1.0), "yellow": (1.0, 0.9, 0.1)}
SHAPES = ("square", "disk", "triangle", "cross")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "centre", "right")
SPECIAL = ("<pad>", "<sep>", "<eos>", "<fill>")
VOCAB = SPECIAL + tuple(COLOURS) + SHAPES + ROWS + COLS
WORD = {w: i for i, w in enumerate(VOCAB)}
SEP, EOS, FILL = WORD["<sep>"], WORD["<eos>"], WORD["<fill>"]
FIELDS = (tuple(COLOURS), SHAPES, ROWS, COLS)  # caption order
CELL, GRID, PATCH = 8, 3, 6
SIZE = CELL * GRID
N_PATCHES = (SIZE // PATCH) ** 2


def shape_mask(shape: str) -> torch.Tensor:
    """An 8 x 8 boolean mask of the shape, centred in its cell."""
    y, x = torch.meshgrid(torch.arange(CELL) + 0.5, torch.arange(CELL) + 0.5, indexing="ij")
    c = CELL / 2
    if shape == "square":
        return (abs(y - c) < 3) & (abs(x - c) < 3)
    if shape == "disk":
        return (y - c) ** 2 + (x - c) ** 2 < 3.3 ** 2
    if shape == "triangle":  # apex at the top
        return (y > 1) & (y < 7) & (abs(x - c) < (y - 1) * 0.6)
    if shape == "cross":
        return ((abs(y - c) < 1.2) & (abs(x - c) < 3.5)) | ((abs(x - c) < 1.2) & (abs(y - c) < 3.5))
    raise ValueError(shape)


MASKS = {s: shape_mask(s) for s in SHAPES}


def make_images(n: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (n, 3, 24, 24) and their attribute labels (n, 4): colour, shape, row, column."""
    labels = torch.stack([torch.randint(len(f), (n,), generator=gen) for f in FIELDS], dim=1)
    images = noise * torch.randn(n, 3, SIZE, SIZE, generator=gen)
    bright = 0.7 + 0.3 * torch.rand(n, generator=gen)
    for i in range(n):
        c, s, r, col = labels[i].tolist()
        rgb = torch.tensor(COLOURS[FIELDS[0][c]]) * bright[i]
        mask = MASKS[SHAPES[s]].float()
        images[i, :, r * CELL:(r + 1) * CELL, col * CELL:(col + 1) * CELL] += rgb[:, None, None] * mask
    return images, labels


def caption_ids(labels: torch.Tensor) -> torch.Tensor:
    """(n, 5): the four caption words in canonical order, then <eos>."""
    words = [[WORD[FIELDS[f][int(v)]] for f, v in enumerate(row)] + [EOS] for row in labels]
    return torch.tensor(words)


def text_contexts(labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The LM's text-only task: caption words shuffled among fillers, then <sep>, caption, <eos>.
    One context length (4 to N_PATCHES) per batch, so no padding is needed."""
    n = labels.shape[0]
    length = int(torch.randint(4, N_PATCHES + 1, (1,), generator=gen))
    ctx = torch.full((n, length), FILL)
    caps = caption_ids(labels)
    for i in range(n):
        slots = torch.randperm(length, generator=gen)[:4]
        ctx[i, slots] = caps[i, :4][torch.randperm(4, generator=gen)]
    return torch.cat([ctx, torch.full((n, 1), SEP), caps], dim=1)
