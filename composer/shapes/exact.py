"""The shapes world's exact denoiser: E[x0 | x_t, caption] and log p_t(x_t | caption).

The world is a program (composer/shapes/data.py), so its noised density is a finite
sum over scenes. With x_t = sqrt(abar) x0 + sigma z, an object drawn by template j
(one mask, one colour) multiplies the background's likelihood by e^{l_j}:

    l_j = [2 sqrt(abar) <S_j - sqrt(abar) |m_j| bg, d_j> - abar |m_j| |d_j|^2] / (2 sigma^2)

with S_j the sum of x_t over the mask's pixels and d_j = colour - background. A
caption c draws its scene with weight w = m/k (m of the k objects match it; the
empty caption matches every object, so w = 1). Per cell, a = log sum of q_j e^{l_j}
over the matching templates and b over the others; the scene sum is the
polynomial G(u, v) = prod_cells (1 + e^a u v + e^b u), u counting objects and v
matches, and

    Z_c(x_t) = sum_{k, m} [u^k v^m] G * p(k) / C(cells, k) * w(k, m).

A template's posterior is q_j e^{l_j} times the same sum over the other cells'
product ("leave one out") with one object (and one match, if j matches) more,
divided by Z. The posterior mean is the background plus each template's posterior
times its mask and colour. Everything is in log space (float64): at the lowest
noise the l's reach 1e6 nats, and a linear-space sum underflows the matching
channel to 0, which makes a NOT caption's prediction NaN.

    log p_t(x_t | c) = log N(x_t; sqrt(abar) bg, sigma^2 I) + log Z_c(x_t) - log Z_c(l = 0)

(the last term is log p(c) up to the caption-independent factor (1 - p_empty)/15).
docs/shapes.md derives it; tests/test_shapes_exact.py checks it against brute
force on a small world.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from composer.shapes import data

DTYPE = torch.float64


@dataclass(frozen=True)
class World:
    """A shapes world as templates. `masks[c, s, m]` is the m-th distinct mask of shape
    s in cell c (padding rows have log_prior -inf), on the cell's window of pixels
    `pixels[c]` (indices into the flattened image; an object never leaves it)."""
    masks: torch.Tensor           # [cells, shapes, M, window] float64 0/1
    pixels: torch.Tensor          # [cells, window] long
    log_prior: torch.Tensor       # [cells, shapes, M]: log q(mask | shape, cell)
    palette: torch.Tensor         # [colours, channels]
    background: torch.Tensor      # [channels]
    count_prior: torch.Tensor     # [max_objects + 1]: p(k), p(0) = 0
    image_shape: tuple[int, int, int]
    columns: int                  # cell c sits in column c % columns, row c // columns

    @property
    def cells(self) -> int:
        return self.masks.shape[0]

    @property
    def max_objects(self) -> int:
        return self.count_prior.numel() - 1

    def to(self, device) -> "World":
        move = {k: getattr(self, k).to(device) for k in
                ("masks", "pixels", "log_prior", "palette", "background", "count_prior")}
        return World(**move, image_shape=self.image_shape, columns=self.columns)


def make_world(masks: torch.Tensor, log_prior: torch.Tensor, palette: torch.Tensor,
               background: torch.Tensor, count_prior: torch.Tensor,
               image_shape: tuple[int, int, int], columns: int) -> World:
    """A World from full-image masks [cells, shapes, M, H*W]: each cell keeps only the
    pixels its masks touch (padded with zero columns), which makes every product with
    the image several times cheaper than on the whole image."""
    touched = masks.amax(dim=(1, 2)) > 0                                       # [cells, P]
    window = int(touched.sum(-1).max())
    pixels = torch.zeros(masks.shape[0], window, dtype=torch.long)
    cropped = torch.zeros(*masks.shape[:3], window, dtype=DTYPE)
    for c in range(masks.shape[0]):
        index = touched[c].nonzero()[:, 0]
        pixels[c, :len(index)] = index
        cropped[c, :, :, :len(index)] = masks[c][..., index]
    return World(cropped, pixels, log_prior.to(DTYPE), palette.to(DTYPE), background.to(DTYPE),
                 count_prior.to(DTYPE), image_shape, columns)


def shapes_world() -> World:
    """The world the training data draws: 9 cells, 3 shapes, 196 placements each,
    identical masks merged (their probabilities added)."""
    offsets = torch.tensor(data.OFFSETS)
    halves = torch.tensor(data.HALVES)
    dx, dy, half = torch.meshgrid(offsets, offsets, halves, indexing="ij")
    dx, dy, half = dx.reshape(-1), dy.reshape(-1), half.reshape(-1)
    n = dx.numel()
    per_cell = []
    for cell in range(9):
        per_shape = []
        for shape in range(len(data.SHAPES)):
            slot = torch.zeros(n, data.MAX_OBJECTS, dtype=torch.long)
            present = torch.zeros(n, data.MAX_OBJECTS, dtype=torch.bool)
            present[:, 0] = True
            place = torch.zeros(n, data.MAX_OBJECTS)
            cx, cy, h = place.clone(), place.clone(), place.clone()
            cx[:, 0] = (cell % 3 + 0.5) * data.CELL + dx
            cy[:, 0] = (cell // 3 + 0.5) * data.CELL + dy
            h[:, 0] = half
            scenes = data.Scenes(present, slot, slot + shape, slot + cell, cx, cy, h)
            masks = data.object_masks(scenes)[:, 0].flatten(1)
            unique, counts = torch.unique(masks, dim=0, return_counts=True)
            per_shape.append((unique.to(DTYPE), counts.to(DTYPE) / n))
        per_cell.append(per_shape)
    width = max(u.shape[0] for row in per_cell for u, _ in row)
    pixels = data.SIZE * data.SIZE
    masks = torch.zeros(9, len(data.SHAPES), width, pixels, dtype=DTYPE)
    log_prior = torch.full((9, len(data.SHAPES), width), -math.inf, dtype=DTYPE)
    for c, row in enumerate(per_cell):
        for s, (unique, prob) in enumerate(row):
            masks[c, s, :len(unique)] = unique
            log_prior[c, s, :len(unique)] = prob.log()
    count_prior = torch.tensor([0.0] + [1.0 / data.MAX_OBJECTS] * data.MAX_OBJECTS, dtype=DTYPE)
    return make_world(masks, log_prior, data.PALETTE, torch.full((3,), -1.0), count_prior,
                      (3, data.SIZE, data.SIZE), columns=3)


def matches(world: World, slots: torch.Tensor) -> torch.Tensor:
    """Which (cell, shape, colour) templates a caption matches: slots [..., 4] (colour,
    shape, column, row; -1 = not named) -> bool [..., cells, shapes, colours]."""
    cells = torch.arange(world.cells, device=slots.device)
    shapes = torch.arange(world.masks.shape[1], device=slots.device)
    colours = torch.arange(world.palette.shape[0], device=slots.device)
    s = slots[..., None, None, None, :]

    def named(slot, value):
        return (slot < 0) | (slot == value)
    return (named(s[..., 0], colours[None, None, :]) & named(s[..., 1], shapes[None, :, None])
            & named(s[..., 2], (cells % world.columns)[:, None, None])
            & named(s[..., 3], (cells // world.columns)[:, None, None]))


def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """logsumexp that gives -inf, with a zero gradient, where every term is -inf (torch's
    own gives a NaN gradient there: an empty caption has no "other" objects at all)."""
    empty = torch.isneginf(x).all(dim=dim, keepdim=True)
    safe = torch.logsumexp(torch.where(empty, torch.zeros_like(x), x), dim=dim)
    return torch.where(empty.squeeze(dim), torch.full_like(safe, -math.inf), safe)


def _times_cell(poly: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """poly(u, v) * (1 + e^a u v + e^b u) in log coefficients, truncated; poly [..., K+1, K+1]."""
    pad = torch.full_like(poly[..., :1, :], -math.inf)
    shifted_u = torch.cat([pad, poly[..., :-1, :]], dim=-2)                    # u * poly
    shifted_uv = torch.cat([torch.full_like(shifted_u[..., :1], -math.inf),
                            shifted_u[..., :-1]], dim=-1)                      # u v * poly
    return _logsumexp(torch.stack([poly, a[..., None, None] + shifted_uv,
                                        b[..., None, None] + shifted_u]), dim=0)


def _scene_weights(world: World, device) -> torch.Tensor:
    """log [p(k) / C(cells, k) * m / k] over (k, m) [K+1, K+1] (-inf where m = 0 or k = 0)."""
    size = world.max_objects + 1
    k = torch.arange(size, dtype=DTYPE, device=device)[:, None]
    m = torch.arange(size, dtype=DTYPE, device=device)[None, :]
    choose = torch.tensor([math.comb(world.cells, i) for i in range(size)], dtype=DTYPE, device=device)
    valid = (m <= k) & (m > 0)
    weight = world.count_prior.to(device).log()[:, None] - choose.log()[:, None] + (m / k.clamp(min=1)).log()
    return torch.where(valid, weight, torch.full_like(weight, -math.inf))


def _partition(world: World, cell_logits: torch.Tensor, match: torch.Tensor):
    """log Z and, per cell, the log weight of one more (matching, other) object there.

    cell_logits [..., cells, shapes, colours]: log sum_masks q e^l, with the colour
    and shape prior. Returns log Z [...], and log_match, log_other [..., cells]."""
    neg = torch.full_like(cell_logits, -math.inf)
    a = _logsumexp(torch.where(match, cell_logits, neg).flatten(-2), dim=-1)     # [..., cells]
    b = _logsumexp(torch.where(match, neg, cell_logits).flatten(-2), dim=-1)
    size, cells = world.max_objects + 1, world.cells
    one = torch.full((*a.shape, size, size), -math.inf, dtype=DTYPE, device=a.device)
    one[..., 0, 0] = 0.0
    leave_out = one                                                             # [..., cells, K+1, K+1]
    for d in range(cells):
        skip = torch.arange(cells, device=a.device) == d
        a_d = torch.where(skip, -math.inf, a[..., d:d + 1].expand_as(a))
        b_d = torch.where(skip, -math.inf, b[..., d:d + 1].expand_as(b))
        leave_out = _times_cell(leave_out, a_d, b_d)
    whole = _times_cell(leave_out[..., 0, :, :], a[..., 0], b[..., 0])
    weights = _scene_weights(world, a.device)
    log_z = _logsumexp((whole + weights).flatten(-2), dim=-1)
    log_match = _logsumexp((leave_out[..., :-1, :-1] + weights[1:, 1:]).flatten(-2), dim=-1)
    log_other = _logsumexp((leave_out[..., :-1, :] + weights[1:, :]).flatten(-2), dim=-1)
    return log_z, log_match - log_z[..., None], log_other - log_z[..., None]


def denoise(world: World, x: torch.Tensor, alpha_bar: float | torch.Tensor, slots: torch.Tensor,
            with_density: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The exact posterior mean and log density, for every caption row at once.

    x [B, C, H, W]; alpha_bar a number or one per sample [B]; slots [R, S, 4] long
    with S = 1 (one caption per row) or B (one per sample). Returns x0_hat
    [R, B, C, H, W] and log p_t(x | caption) [R, B] (None without `with_density`),
    both float64. The template likelihoods are shared by every row.
    """
    abar = torch.as_tensor(alpha_bar, dtype=DTYPE, device=x.device).reshape(-1)
    if not bool(((abar > 0) & (abar < 1)).all()):
        raise ValueError(f"alpha_bar: must lie strictly between 0 and 1, got {alpha_bar}")
    root, var = abar.sqrt(), 1.0 - abar
    batch = x.shape[0]
    flat = x.to(DTYPE).flatten(2)                                                # [B, C, P]
    bg, diff = world.background, world.palette - world.background                # [C], [colours, C]
    windows = flat[:, :, world.pixels]                                           # [B, C, cells, W]
    sums = torch.einsum("csmw,bkcw->bcsmk", world.masks, windows)                # [B, cells, S, M, C]
    area = world.masks.sum(-1)                                                   # [cells, S, M]
    per = (-1, 1, 1, 1, 1)                                                       # a per-sample number
    centred = sums - root.view(per) * area[..., None] * bg
    ell = (2 * root.view(per) * torch.einsum("bcsmk,ok->bcsmo", centred, diff)
           - abar.view(per) * area[..., None] * (diff ** 2).sum(-1)) / (2 * var.view(per))
    type_prior = -math.log(world.masks.shape[1] * world.palette.shape[0])
    log_w = world.log_prior[..., None] + ell + type_prior                        # [B, cells, S, M, colours]
    cell_logits = _logsumexp(log_w, dim=-2)                                      # [B, cells, S, colours]
    match = matches(world, slots)                                                # [R, S|1, cells, S, colours]
    log_z, log_match, log_other = _partition(world, cell_logits[None], match)
    # Posterior of each template: its weight times the other cells' sum with it added.
    per_type = torch.where(match, log_match[..., None, None], log_other[..., None, None])
    posterior = torch.exp(log_w[None] + per_type[..., None, :])                  # [R, B, cells, S, M, colours]
    colour = torch.einsum("rbcsmo,ok->rbcsmk", posterior, diff)
    painted = torch.einsum("rbcsmk,csmw->rbkcw", colour, world.masks).flatten(-2)
    index = world.pixels.flatten().expand(*painted.shape[:-1], -1)
    x0 = bg[:, None] + torch.zeros(*painted.shape[:-1], flat.shape[-1], dtype=DTYPE,
                                   device=x.device).scatter_add(-1, index, painted)
    x0 = x0.reshape(-1, batch, *world.image_shape)
    if not with_density:
        return x0, None
    log_z0, _, _ = _partition(world, torch.full_like(cell_logits[0], type_prior), match)
    dim = flat[0].numel()
    gaussian = (-((flat - root.view(-1, 1, 1) * bg[:, None]) ** 2).flatten(1).sum(1) / (2 * var)
                - 0.5 * dim * (2 * math.pi * var).log())                         # [B]
    log_density = gaussian + log_z - log_z0
    return x0, log_density.expand(-1, batch)


def eps_from_x0(x: torch.Tensor, x0: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """eps = (x_t - sqrt(abar) x0) / sigma."""
    return (x - math.sqrt(alpha_bar) * x0) / math.sqrt(1.0 - alpha_bar)
