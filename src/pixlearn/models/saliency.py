"""What a classifier looked at: Grad-CAM (Selvaraju et al. 2017) by captum's `LayerGradCam`, on the layer
found from the network itself, and the heat maps drawn over the images.

The layer is the last module (in the order a forward pass finishes them) whose output is still a spatial
map (N, C, H, W) with more than one position: the input of the global pooling or of the flattening head.
It is found by running one image through forward hooks, never named per model, so every registered
classifier, and any registered later, gets one.

    >>> import torch
    >>> from pixlearn.models.registry import create_model
    >>> net = create_model("resnet-small", in_channels=1, num_classes=2, input_size=(32, 32))
    >>> cam = GradCam(net, (1, 32, 32))
    >>> cam.layer_name
    'stages'
    >>> maps = cam.maps(torch.zeros(2, 32, 32, 1, dtype=torch.uint8).numpy(), [0, 1])
    >>> maps.shape, bool(maps.min() >= 0 and maps.max() <= 1)
    ((2, 32, 32), True)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from pixlearn.core.errors import ConfigError
from pixlearn.core.imaging import figures
from pixlearn.core.storage.spec import ModelSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HEAT_ALPHA = 0.45  # share of the heat map in an overlay: the image stays readable beneath it


def spatial_layer(model: nn.Module, sample: torch.Tensor) -> tuple[str, nn.Module]:
    """(name, module) of the last module to finish whose output is (N, C, H, W) with H x W > 1."""
    names = {m: n for n, m in model.named_modules()}
    last: list[nn.Module] = []

    def record(module: nn.Module, _inputs: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1:
            last[:] = [module]

    hooks = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for hook in hooks:
            hook.remove()
    if not last:
        raise ConfigError(f"explain (--explain): {type(model).__name__} has no layer with a spatial output to explain")
    return names[last[0]], last[0]


class GradCam:
    """Grad-CAM maps of a classifier for uint8 images (N, H, W, C), at the input's size, in [0, 1].

    `normalize`: the spec's (mean, std), applied to inputs in [0, 1] as inference applies it. The maps
    are of the plain image (no mirror TTA), for the class asked (galleries ask for the predicted one).
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int], normalize: Sequence[float] | None = None):
        from captum.attr import LayerGradCam  # half a second to import: only where maps are drawn

        # A float32 copy in eval mode with in-place activations turned off: an in-place ReLU after the
        # chosen layer would overwrite the very output whose gradient Grad-CAM reads.
        self.net = copy.deepcopy(model).float().eval()
        for module in self.net.modules():
            if getattr(module, "inplace", False):
                module.inplace = False
        self.device = next(self.net.parameters()).device
        self.normalize = None if normalize is None else (float(normalize[0]), float(normalize[1]))
        sample = torch.zeros(1, *input_shape, device=self.device)
        self.layer_name, layer = spatial_layer(self.net, self._scaled(sample))
        self.cam = LayerGradCam(self._forward, layer)

    @classmethod
    def for_spec(cls, model: nn.Module, spec: ModelSpec) -> GradCam:
        """Grad-CAM of a saved classifier, fed as its spec says (input shape, normalisation)."""
        return cls(model, spec.input_shape(), spec.normalize)

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.normalize is None else (x - self.normalize[0]) / self.normalize[1]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._scaled(x)).float()

    def maps(self, images: np.ndarray, targets: Sequence[int], batch: int = 16) -> np.ndarray:
        """(N, H, W) float32 maps in [0, 1] (each divided by its own maximum; all zero where nothing
        in the layer raises the target's logit)."""
        from captum.attr import LayerAttribution

        out = []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).permute(0, 3, 1, 2)
            x = x.to(self.device, torch.float32).div_(255.0).requires_grad_(True)
            target = torch.as_tensor([int(t) for t in targets[i : i + batch]], device=self.device)
            attr = self.cam.attribute(x, target=target, relu_attributions=True)
            attr = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[2:]), "bilinear")[:, 0]
            top = attr.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
            out.append((attr / top).clamp_(0, 1).cpu().numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)

    def overlays(self, images: np.ndarray, targets: Sequence[int]) -> np.ndarray:
        """The images (N, H, W, C) uint8 with their maps drawn over them, RGB uint8."""
        return overlay(images, self.maps(images, targets))

    def gallery(
        self, images: np.ndarray, targets: Sequence[int], titles: Sequence[str | Sequence[str]], title: str
    ) -> Figure:
        """A gallery of the images with their maps for `targets`, titled as the plain gallery beside it."""
        what = f"{title}: Grad-CAM of the predicted class (layer {self.layer_name}; red: most evidence)"
        return figures.image_grid(self.overlays(images, targets), titles, title=what)


def explained_name(gallery: str | Path) -> Path:
    """Where the Grad-CAM version of a gallery goes: beside it, `_gradcam` added to its name.

    >>> explained_name("figures/misclassified.png").name
    'misclassified_gradcam.png'
    """
    path = Path(gallery)
    return path.with_name(f"{path.stem}_gradcam{path.suffix or '.png'}")


def overlay(images: np.ndarray, maps: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """Heat maps (N, H, W) in [0, 1] blended over uint8 images (N, H, W, C), grey widened to RGB.

    >>> overlay(np.zeros((1, 2, 2, 1), np.uint8), np.ones((1, 2, 2), np.float32)).shape
    (1, 2, 2, 3)
    """
    rgb = np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images[..., :3]
    from matplotlib import colormaps  # imported when drawn (core.figures)

    heat = colormaps["jet"](maps, bytes=True)[..., :3].astype(np.float32)
    return np.clip((1 - alpha) * rgb.astype(np.float32) + alpha * heat + 0.5, 0, 255).astype(np.uint8)
