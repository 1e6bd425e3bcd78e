"""Coordinate networks ("field" models): (x, y) -> colour, every one registered by name.

Every constructor takes ``in_features=2`` and ``out_features=C`` (1 grey, 3 RGB, 4 RGBA) plus its
own options, so a saved JSON spec rebuilds it. Outputs are colours in [0, 1] space: the seed presets
end in a sigmoid or a capped ReLU as the seed does; the others are linear, mapped so that the
network's own output range is [-1, 1] as in the SIREN protocol.

    >>> from pixlearn.models.registry import create_model
    >>> [sum(p.numel() for p in create_model(n).parameters()) for n in ("seed-linear", "seed-small", "seed-deep")]
    [9, 173, 41003]
    >>> sum(p.numel() for p in create_model("siren", out_features=1).parameters())
    198401
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pixlearn.models.encodings import GaussianFourierFeatures, HashGrid2d
from pixlearn.models.registry import register_model

# ---------------------------------------------------------------------------------- the seed's three


def _keras_dense(n_in: int, n_out: int) -> nn.Linear:
    # Keras' Dense defaults (glorot_uniform kernel, zero bias), so the presets start where the seed's did.
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class CappedReLU(nn.Module):
    """Keras' ``layer_activation_relu(max_value = 1)``: min(max(x, 0), 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)


@register_model("seed-linear", "field", "The seed's first network: 2 -> C, sigmoid (9 parameters for RGB).")
def seed_linear(in_features: int = 2, out_features: int = 3) -> nn.Module:
    return nn.Sequential(_keras_dense(in_features, out_features), nn.Sigmoid())


@register_model("seed-small", "field", "The seed's second network: 10 and 10 sigmoid units, C sigmoid (173 for RGB).")
def seed_small(in_features: int = 2, out_features: int = 3) -> nn.Module:
    return nn.Sequential(
        _keras_dense(in_features, 10),
        nn.Sigmoid(),
        _keras_dense(10, 10),
        nn.Sigmoid(),
        _keras_dense(10, out_features),
        nn.Sigmoid(),
    )


@register_model(
    "seed-deep", "field", "The seed's deep network: 100 tanh, 4x100 ReLU, C linear, ReLU capped at 1 (41,003 for RGB)."
)
def seed_deep(in_features: int = 2, out_features: int = 3) -> nn.Module:
    layers: list[nn.Module] = [_keras_dense(in_features, 100), nn.Tanh()]
    for _ in range(4):
        layers += [_keras_dense(100, 100), nn.ReLU()]
    layers += [_keras_dense(100, out_features), CappedReLU()]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------- SIREN

# Sitzmann et al. 2020, "Implicit Neural Representations with Periodic Activation Functions".
# Section 3.2: the first layer computes sin(omega_0 * (W x + b)) with omega_0 = 30, so that one
# period of the sine spans a fraction of the [-1, 1] input and high frequencies are reachable.
SIREN_OMEGA_0 = 30.0
# Section 3.2 / supplement 1.5: first-layer weights ~ U(-1/n, 1/n) (n = fan-in), hidden weights
# ~ U(-sqrt(6/n)/omega_0, sqrt(6/n)/omega_0), which keeps each layer's pre-activations
# distributed as arcsine-then-normal with unit spread, whatever the depth.
SIREN_HIDDEN_C = 6.0


class SineLayer(nn.Module):
    """sin(omega_0 * (W x + b)) with the SIREN initialisation (`siren_init`)."""

    keras_type = "SineDense"

    def __init__(self, n_in: int, n_out: int, first: bool = False, omega_0: float = SIREN_OMEGA_0):
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(n_in, n_out)
        siren_init(self.linear, first, omega_0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


def siren_init(layer: nn.Linear, first: bool, omega_0: float = SIREN_OMEGA_0) -> None:
    """SIREN's initialisation (section 3.2); biases keep PyTorch's default U(-1/sqrt(n), 1/sqrt(n)),
    as the reference implementation does."""
    n_in = layer.in_features
    bound = 1.0 / n_in if first else math.sqrt(SIREN_HIDDEN_C / n_in) / omega_0
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)


class HalfShift(nn.Module):
    """y -> (y + 1) / 2: the SIREN protocol fits values in [-1, 1]; pixlearn's loop works in [0, 1].
    With Adam the optimisation is the same (Adam is invariant to the gradient's scale)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 + 0.5


class Siren(nn.Module):
    def __init__(self, in_features: int, out_features: int, hidden: int, layers: int, omega_0: float, encoder=None):
        super().__init__()
        self.encoder = encoder
        width_in = encoder.out_dim if encoder is not None else in_features
        blocks = [SineLayer(width_in, hidden, first=True, omega_0=omega_0)]
        blocks += [SineLayer(hidden, hidden, omega_0=omega_0) for _ in range(layers)]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden, out_features)
        # The final linear layer uses the hidden-layer bound (reference modules.py, outermost_linear).
        siren_init(self.head, first=False, omega_0=omega_0)
        self.out = HalfShift()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x = self.encoder(coords) if self.encoder is not None else coords
        return self.out(self.head(self.body(x)))


@register_model(
    "siren",
    "field",
    "SIREN: sine activations, omega_0 = 30, 3 hidden layers of 256 (Sitzmann et al. 2020).",
    size_arg="hidden",
)
def siren(
    in_features: int = 2, out_features: int = 3, hidden: int = 256, layers: int = 3, omega_0: float = SIREN_OMEGA_0
) -> nn.Module:
    return Siren(in_features, out_features, hidden, layers, omega_0)


# ---------------------------------------------------------------------------------- Fourier features


def relu_mlp(n_in: int, n_out: int, hidden: int, layers: int) -> nn.Sequential:
    """`layers` ReLU layers of `hidden` units, then a linear output."""
    blocks: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    blocks.append(nn.Linear(width, n_out))
    return nn.Sequential(*blocks)


class EncodedMLP(nn.Module):
    def __init__(self, encoder: nn.Module, mlp: nn.Module, out: nn.Module):
        super().__init__()
        self.encoder, self.mlp, self.out = encoder, mlp, out

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(self.encoder(coords)))

    @property
    def renders_grids(self) -> bool:
        """Whether the encoder can encode a whole pixel grid at once (`forward_grid`): the hash grid can."""
        return hasattr(self.encoder, "encode_grid")

    def grid_state(self) -> list[torch.Tensor]:
        """What `forward_grid` reads, computed once per render: each level's vertex features."""
        return self.encoder.vertex_grids()

    def forward_grid(self, ys: torch.Tensor, xs: torch.Tensor, grids: list[torch.Tensor]) -> torch.Tensor:
        """Colours of every pixel of the grid rows `ys` x columns `xs`, row-major; `grids` is
        `grid_state()`."""
        return self.out(self.mlp(self.encoder.encode_grid(ys, xs, grids)))


@register_model(
    "fourier",
    "field",
    "Gaussian Fourier features (sigma 10) into a 4x256 ReLU MLP, sigmoid out (Tancik et al. 2020).",
    size_arg="hidden",
)
def fourier(
    in_features: int = 2,
    out_features: int = 3,
    mapping_size: int = 256,
    sigma: float = 10.0,
    hidden: int = 256,
    layers: int = 4,
    seed: int = 0,
) -> nn.Module:
    # Section 6 / the 2D regression notebook: 256 Gaussian frequencies, 4 ReLU layers of 256 and a
    # sigmoid output, sigma = 10 for natural images.
    encoder = GaussianFourierFeatures(in_features, mapping_size, sigma, seed)
    return EncodedMLP(encoder, relu_mlp(encoder.out_dim, out_features, hidden, layers), nn.Sigmoid())


@register_model(
    "fourier-siren",
    "field",
    "Gaussian Fourier features fed to a SIREN (the FFSiren combination, 51.8 dB anchor).",
    size_arg="hidden",
)
def fourier_siren(
    in_features: int = 2,
    out_features: int = 3,
    mapping_size: int = 256,
    sigma: float = 10.0,
    hidden: int = 256,
    layers: int = 3,
    omega_0: float = SIREN_OMEGA_0,
    seed: int = 0,
) -> nn.Module:
    return Siren(
        in_features,
        out_features,
        hidden,
        layers,
        omega_0,
        GaussianFourierFeatures(in_features, mapping_size, sigma, seed),
    )


# ---------------------------------------------------------------------------------- hash grid


@register_model(
    "hashgrid",
    "field",
    "Multiresolution hash encoding + small ReLU MLP, instant-ngp style, plain PyTorch.",
    size_arg="log2_table",
)
def hashgrid(
    in_features: int = 2,
    out_features: int = 3,
    levels: int = 6,
    features: int = 2,
    log2_table: int = 13,
    base_resolution: int = 16,
    finest_resolution: int = 256,
    hidden: int = 64,
    layers: int = 2,
) -> nn.Module:
    # instant-ngp's image config uses 16 levels and tables of 2^15-2^24 entries (ANCHORS.md). pixlearn's
    # defaults keep a 256x256 image's representation under its 65,536 pixels (~59k parameters): 6 levels
    # from 16 to 256 (growth 1.74), 2 features each, tables of 2^13. On cameraman 256x256 in a time budget on a
    # CPU (bench/README.md, "1. cameraman 256x256, SIREN protocol"): 6 levels x 2^13 beat 8 levels x 2^12 (48k)
    # and 16 x 2^12 (93k), which spend their time on more levels rather than on fewer collisions at the fine
    # ones. The MLP is instant-ngp's: 2 hidden layers of 64 ReLU units.
    if in_features != 2:
        raise ValueError("hashgrid encodes 2D coordinates only (in_features=2)")
    encoder = HashGrid2d(levels, features, log2_table, base_resolution, finest_resolution)
    return EncodedMLP(encoder, relu_mlp(encoder.out_dim, out_features, hidden, layers), HalfShift())
