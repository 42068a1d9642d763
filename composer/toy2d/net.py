"""The 2D lab's network: a small conditional residual MLP.

    e   = MLP([sinusoid(t), embedding(c)])                (one vector per row)
    phi = [x, a_t sin(2^k pi x), a_t cos(2^k pi x)]  (k < fourier),  a_t = cos(pi t / 2T)
    h   = W_in phi + P_0 e
    h  <- h + W_2 silu(W_1 silu(h) + P_k e)               (k = 1 .. blocks)
    f   = W_out silu(h)                                   (2 numbers)

The condition c is one of the six components or the unconditional row (index
`len(CONCEPTS)`, the text ""). The Fourier input features let a small MLP
draw modes as narrow as the ring's (std 0.03); without them it smears them
(an MLP on raw coordinates is biased towards smooth functions). They fade out
with the noise (a_t is about sqrt(abar_t) under the cosine schedule): at high
noise only smooth functions are needed, and ungated high frequencies there give
the far field, where MCMC proposals land, gradients steep enough to make U-HMC
diverge. Two parameterisations share the trunk:

- score: eps(x, t, c) = f(x, t, c);
- energy (Reduce, Reuse, Recycle, Du et al. 2023): E(x, t, c) = 1/2 |f(x, t, c)|^2
  and eps = grad_x E by autograd. Since eps = sigma_t grad_x U, the energy in
  nats is U = E / sigma_t (up to a constant per t and c).

`embed` depends only on (t, c), so a sampler that evaluates many points at one
noise level computes it once per row and broadcasts it (see `trunk`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open
from torch import nn

from composer.toy2d.data import CONCEPTS

NUM_CONDITIONS = len(CONCEPTS) + 1      # six components and the unconditional row
UNCONDITIONAL = len(CONCEPTS)
TIME_FREQUENCIES = 16


class ToyNet(nn.Module):
    def __init__(self, width: int = 64, blocks: int = 3, num_train_timesteps: int = 100,
                 energy: bool = False, fourier: int = 0):
        super().__init__()
        self.width, self.blocks, self.energy, self.fourier = width, blocks, energy, fourier
        self.num_train_timesteps = num_train_timesteps
        self.label = nn.Embedding(NUM_CONDITIONS, width)
        self.cond = nn.Sequential(nn.Linear(2 * TIME_FREQUENCIES + width, width), nn.SiLU(),
                                  nn.Linear(width, width), nn.SiLU(),
                                  nn.Linear(width, (blocks + 1) * width))
        self.inp = nn.Linear(2 * (1 + 2 * fourier), width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.mix = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.out = nn.Linear(width, 2)

    def config(self) -> dict:
        return {"width": self.width, "blocks": self.blocks, "energy": self.energy,
                "num_train_timesteps": self.num_train_timesteps, "fourier": self.fourier}

    def features(self, x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        if not self.fourier:
            return x
        scales = math.pi * 2.0 ** torch.arange(self.fourier, device=x.device, dtype=x.dtype)
        angles = (x[..., None] * scales).flatten(-2)
        return torch.cat([x, gate * angles.sin(), gate * angles.cos()], -1)

    def gate(self, t: torch.Tensor) -> torch.Tensor:
        """a_t = cos(pi t / 2T) [..., 1]: the Fourier features' weight at timestep t."""
        return torch.cos(0.5 * math.pi * t.float() / self.num_train_timesteps)[..., None]

    def embed(self, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Per-row conditioning [..., (blocks + 1) * width + 1] for timesteps t and
        labels c; the last entry is the Fourier gate a_t."""
        scale = torch.exp(-math.log(1000.0) * torch.arange(TIME_FREQUENCIES, device=t.device)
                          / TIME_FREQUENCIES)
        angles = t.float()[..., None] * scale * (1000.0 / self.num_train_timesteps)
        return torch.cat([self.cond(torch.cat([angles.sin(), angles.cos(), self.label(c)], -1)),
                          self.gate(t)], -1)

    def trunk(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """f(x) for points x [..., 2] and conditioning e broadcastable to x's rows."""
        parts = e[..., :-1].chunk(self.blocks + 1, dim=-1)
        h = self.inp(self.features(x, e[..., -1:])) + parts[0]
        for hidden, mix, part in zip(self.hidden, self.mix, parts[1:]):
            h = h + mix(nn.functional.silu(hidden(nn.functional.silu(h)) + part))
        return self.out(nn.functional.silu(h))

    def eps_and_energy(self, x: torch.Tensor, e: torch.Tensor, create_graph: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """eps [..., 2] and, for the energy variant, E [...] (not yet divided by sigma)."""
        if not self.energy:
            return self.trunk(x, e), None
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            energy = 0.5 * self.trunk(x, e).pow(2).sum(-1)
            (eps,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
        return eps, energy

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor,
                create_graph: bool = False) -> torch.Tensor:
        """eps for points x [N, 2], timesteps t [N] and labels c [N]."""
        return self.eps_and_energy(x, self.embed(t, c), create_graph)[0]


# --- weights -------------------------------------------------------------------
# The noise schedule the networks were trained on, with their weights: the adapter
# and the training script both read it from here.
SCHEDULER_CONFIG = {"num_train_timesteps": 100, "beta_schedule": "squaredcos_cap_v2",
                    "clip_sample": False}


def weights_path(folder: str | Path, variant: str) -> Path:
    return Path(folder) / f"toy2d-{variant}.safetensors"


def read_metadata(path: Path) -> dict:
    with safe_open(str(path), "pt") as handle:
        return dict(handle.metadata())


def load_net(folder: str | Path, variant: str) -> tuple[ToyNet, dict]:
    """The trained network (eval mode, frozen) and its metadata."""
    path = weights_path(folder, variant)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no weights; train with "
                                f"python -m composer.toy2d.train --out {folder}")
    meta = read_metadata(path)
    net = ToyNet(**json.loads(meta["config"]))
    net.load_state_dict(load_file(str(path)))
    net.eval().requires_grad_(False)
    return net, meta
