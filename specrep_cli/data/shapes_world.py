"""dataset.source=shapes_world: a finite world of rendered shapes whose augmentation kernel is known.

    world = shapes_world(classes=4, grid=2, class_change=0.375, move=0.1, image_size=32, seed=0)
    world.kernel, world.images   # (n, n) the kernel below; uint8 (n, 3, S, S) each state's image
    world.spectrum()             # the kernel's eigenvalues in closed form (products of the factors'), descending
    graphs.world_graph(cfg)      # dataset.source=shapes_world: the Graph of A = kernel, its nodes' images

A state is (shape class c, grid cell p, nuisance m): m = (colour pair, size, rotation), every
combination of COLOUR_PAIRS, SIZES and ROTATIONS. Each state is rendered once (the shapes generator's
renderer, its texture drawn from `seed`), so a convnet sees only pixels. A positive pair (x, x')
keeps the class with probability 1 - class_change (else another class, uniformly), takes a lazy
random-walk step on the grid (to each neighbouring row and column with probability `move`, staying
at a wall), and draws the nuisance afresh, uniformly. The kernel is the Kronecker product

    K = T_class (x) T_row (x) T_col (x) J_m / M,     p(x, x') = K[x, x'] / n,   p(x) = 1 / n

of symmetric stochastic factors, so its eigenvalues are products of theirs: T_class has 1 and
1 - class_change C / (C - 1) (C - 1 times); a lazy reflecting walk on g cells has
1 - 2 move (1 - cos(pi k / g)), k = 0..g-1; J_m / M has 1 and 0. Only functions of (class, cell)
have non-zero eigenvalues: the top C g^2 eigenfunctions are exactly those (the nuisance is what every
pair changes), and below them the spectrum is 0: a gap as wide as the smallest of them at
d = C g^2 (16 by default: 1, 0.8 x 2, 0.64, 0.5 x 3, 0.4 x 6, 0.32 x 3).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from .shapes import CLASSES, COLORS, PALETTE_RGB, render

# The nuisance: what every pair draws afresh. Colour pairs (foreground, background) far apart in luma.
COLOUR_PAIRS = (("white", "black"), ("black", "white"), ("red", "white"), ("white", "blue"))
SIZES = (0.75, 0.95)                                 # diameter of the shape, as a fraction of a grid cell's side
ROTATIONS = (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi)


@dataclass(frozen=True)
class World:
    """The world's kernel K (n, n) float64 (rows sum to 1), its states' images, names and labels (the
    class), and its factor kernels' eigenvalues."""
    kernel: Tensor
    images: Tensor
    names: List[str]
    labels: Tensor
    classes: List[str]
    class_values: Tensor   # (C,) T_class's eigenvalues
    walk_values: Tensor    # (g,) a grid axis's walk's eigenvalues

    def spectrum(self) -> Tensor:
        """Every eigenvalue of the normalised kernel, descending, float64 (n,): the products
        class x row x column (times 1 for the nuisance's constant), then zeros."""
        cell = torch.outer(self.walk_values, self.walk_values).flatten()
        top = torch.outer(self.class_values, cell).flatten()
        zeros = torch.zeros(self.kernel.shape[0] - top.numel(), dtype=torch.float64)
        return torch.cat([top, zeros]).sort(descending=True).values


def class_kernel(classes: int, class_change: float) -> Tensor:
    """T_class (C, C): stay with probability 1 - class_change, else move to one of the others uniformly."""
    off = class_change / max(classes - 1, 1)
    return torch.full((classes, classes), off, dtype=torch.float64).fill_diagonal_(1 - class_change)


def walk_kernel(cells: int, move: float) -> Tensor:
    """T (g, g): a lazy random walk on a line of g cells, a step to each neighbour with probability
    `move`, the step off a wall replaced by staying (reflecting: symmetric, uniform stationary law)."""
    t = torch.zeros(cells, cells, dtype=torch.float64)
    i = torch.arange(cells - 1)
    t[i, i + 1] = t[i + 1, i] = move
    return t + torch.diag(1 - t.sum(1))


def _states(classes: int, grid: int) -> List[tuple]:
    """Every state (class, row, col, colour pair, size, rotation), in node order."""
    return list(itertools.product(range(classes), range(grid), range(grid), range(len(COLOUR_PAIRS)),
                                  range(len(SIZES)), range(len(ROTATIONS))))


def _images(states: List[tuple], grid: int, image_size: int, seed: int) -> Tensor:
    """uint8 (n, 3, S, S): each state rendered once, the shape centred in its grid cell."""
    c, row, col, colour, size, rot = (torch.tensor(f) for f in zip(*states))
    fg = PALETTE_RGB[torch.tensor([COLORS.index(COLOUR_PAIRS[k][0]) for k in colour.tolist()])]
    bg = PALETTE_RGB[torch.tensor([COLORS.index(COLOUR_PAIRS[k][1]) for k in colour.tolist()])]
    x, y = (col.double() + 0.5) / grid, (row.double() + 0.5) / grid
    diameter = torch.tensor(SIZES, dtype=torch.float64)[size] / grid
    rotation = torch.tensor(ROTATIONS, dtype=torch.float64)[rot]
    factors = {"shape": c, "x": x.float(), "y": y.float(), "size": diameter.float(), "rotation": rotation.float()}
    return render(factors, fg, bg, torch.Generator().manual_seed(seed), image_size)


def shapes_world(classes: int, grid: int, class_change: float, move: float, image_size: int, seed: int) -> World:
    """The world of `classes` shapes on a grid x grid board (module docstring)."""
    states = _states(classes, grid)
    nuisance = len(COLOUR_PAIRS) * len(SIZES) * len(ROTATIONS)
    walk = walk_kernel(grid, move)
    content = torch.kron(class_kernel(classes, class_change), torch.kron(walk, walk))
    kernel = torch.kron(content, torch.full((nuisance, nuisance), 1 / nuisance, dtype=torch.float64))
    names = [f"{CLASSES[c]} r{r}c{q} {'/'.join(COLOUR_PAIRS[k])} s{s} rot{round(math.degrees(ROTATIONS[o]))}"
             for c, r, q, k, s, o in states]
    walk_values = torch.tensor([1 - 2 * move * (1 - math.cos(math.pi * k / grid)) for k in range(grid)],
                               dtype=torch.float64)
    return World(kernel, _images(states, grid, image_size, seed), names, torch.tensor([s[0] for s in states]),
                 list(CLASSES[:classes]), torch.linalg.eigvalsh(class_kernel(classes, class_change)).flip(0),
                 walk_values)
