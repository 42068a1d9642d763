"""The shapes denoiser: a small DiT-style patch transformer (Peebles & Xie 2023).

- Text encoder: one learned embedding per vocabulary word, summed over the
  caption's words (a caption is a set of attributes, so order-free pooling is
  exact), a learned "empty" vector for the unconditional row, then an MLP.
  With `text_tokens`, the four caption slots (colour, shape, column, row) also
  become four tokens (a learned "unnamed" token per kind for a slot the caption
  leaves out) that the image tokens attend to, beside the pooled vector.
- Denoiser: `patch` x `patch` patches of the 32x32 image -> tokens of width
  `dim`, learned positions, `depth` pre-LN transformer blocks conditioned by
  adaLN-Zero on (time embedding + pooled text), a linear head back to patches.
  With `stem` > 0, a 3x3 convolution to `stem` channels comes before the
  patches and another after them, so edges need not align with patch borders.
  Everything else is matrix products, which a CPU runs well (a GroupNorm conv UNet
  of similar size took 3-4 s per training step of 64 here).
- Output: v or epsilon (config.json says which) under the VP schedule in
  `SCHEDULER_CONFIG`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from composer.shapes.data import KIND_WORDS, KINDS, SIZE

SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                    "clip_sample": False, "prediction_type": "epsilon"}
# Slot s of a caption uses embedding rows OFFSETS[s] + index.
OFFSETS = [sum(len(KIND_WORDS[k]) for k in KINDS[:i]) for i in range(len(KINDS))]
NUM_WORDS = sum(len(KIND_WORDS[k]) for k in KINDS)


@dataclass(frozen=True)
class ShapesConfig:
    dim: int = 96
    depth: int = 4
    heads: int = 4
    patch: int = 4
    mlp_ratio: int = 4
    stem: int = 0               # conv stem/head channels; 0: plain linear patches
    text_tokens: bool = False   # caption slots as tokens the image attends to

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps in [0, 1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TextEncoder(nn.Module):
    """Caption slots [B, 4] (-1 = absent) -> [B, 1 + tokens, dim]: the pooled
    vector first, then (with `tokens`) one token per slot."""

    def __init__(self, dim: int, tokens: bool = False):
        super().__init__()
        self.words = nn.Embedding(NUM_WORDS, dim)
        self.empty = nn.Parameter(torch.zeros(dim))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.normal_(self.words.weight, std=0.3)
        self.unnamed = nn.Parameter(torch.randn(len(KINDS), dim) * 0.3) if tokens else None

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        present = slots >= 0
        ids = slots.clamp(min=0) + torch.tensor(OFFSETS, device=slots.device)
        words = self.words(ids)                                             # [B, 4, d]
        summed = (words * present[..., None].float()).sum(1)
        none = ~present.any(1)
        summed = torch.where(none[:, None], self.empty[None].expand_as(summed), summed)
        pooled = self.mlp(summed)[:, None]
        if self.unnamed is None:
            return pooled
        return torch.cat([pooled, torch.where(present[..., None], words, self.unnamed)], dim=1)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.SiLU(),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c))[:, None].chunk(6, dim=2)
        h = self.norm1(x) * (1 + scale1) + shift1
        b, n, d = h.shape
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate1 * self.proj(h)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class ShapesDenoiser(nn.Module):
    """eps_theta(x_t, t, caption)."""

    def __init__(self, config: ShapesConfig = ShapesConfig()):
        super().__init__()
        self.config = config
        d, p = config.dim, config.patch
        self.grid = SIZE // p
        self.pixels = config.stem or 3          # channels between the convolutions and the patches
        self.stem = nn.Conv2d(3, config.stem, 3, padding=1) if config.stem else None
        self.head = nn.Conv2d(config.stem, 3, 3, padding=1) if config.stem else None
        self.patch_in = nn.Linear(self.pixels * p * p, d)
        self.pos = nn.Parameter(torch.randn(1, self.grid ** 2, d) * 0.02)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.text = TextEncoder(d, tokens=config.text_tokens)
        self.blocks = nn.ModuleList(Block(d, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(d, 2 * d)
        self.patch_out = nn.Linear(d, self.pixels * p * p)
        # Zero-initialised output: the untrained network predicts 0 (adaLN-Zero's idea).
        for layer in (self.final_ada, self.head if self.head is not None else self.patch_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, slots: torch.Tensor | None = None,
                text: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, 3, 32, 32], t [B]; give caption `slots` [B, 4] or encoded `text`
        (what `self.text` returns for them, [B, 1 + tokens, d])."""
        if text is None:
            text = self.text(slots)
        c = self.time(timestep_embedding(t, self.config.dim)) + text[:, 0]
        b, p, g, k = x.shape[0], self.config.patch, self.grid, self.pixels
        if self.stem is not None:
            x = F.silu(self.stem(x))
        patches = x.reshape(b, k, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, k * p * p)
        h = torch.cat([self.patch_in(patches) + self.pos, text[:, 1:]], dim=1)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(F.silu(c))[:, None].chunk(2, dim=2)
        h = self.patch_out(self.norm(h[:, :g * g]) * (1 + scale) + shift)
        out = h.reshape(b, g, g, k, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, k, SIZE, SIZE)
        return self.head(F.silu(out)) if self.head is not None else out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
