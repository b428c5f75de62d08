"""A U-Net whose encoder is torchvision's ResNet18 (the "strong" generator of the seeds).

Normalised L ``[B, 1, H, W]`` in, normalised ab ``[B, 2, H, W]`` out. The encoder is
resnet18 up to ``layer4`` with a 1-channel stem: the ImageNet stem filters summed over RGB
(a gray pixel v is the RGB pixel (v, v, v), so the summed filter gives the same response).
The decoder upsamples (bilinear + 3x3 convs: no transposed convs, whose uneven overlap
draws the square-grid texture) and concatenates the encoder feature of every stage.

``weights``: ``"imagenet"`` (torchvision's weights API; its cache under ``TORCH_HOME``),
a path or URL of a resnet18 state dict (local, ``s3://`` or ``http(s)://``), or ``"none"``.
"""

from __future__ import annotations

import io
import logging
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNet18UNet", "load_resnet18_state"]

logger = logging.getLogger(__name__)

# Encoder widths: stem (H/2), layer1 (H/4), layer2 (H/8), layer3 (H/16), layer4 (H/32).
_ENCODER_WIDTHS = (64, 64, 128, 256, 512)
_SIZE_MULTIPLE = 32  # five halvings
_HEAD_INIT_STD = 1e-3
_HUB_CHECK_TIMEOUT_S = 5.0  # fail at once when offline instead of hanging on the download


def load_resnet18_state(weights: str) -> dict[str, torch.Tensor]:
    """A torchvision resnet18 state dict from `weights` ("imagenet", a path or a URL)."""
    if weights == "imagenet":
        return _imagenet_state()
    if urlparse(weights).scheme in ("http", "https"):
        return torch.hub.load_state_dict_from_url(weights, map_location="cpu",
                                                  weights_only=True)
    from colorization import storage  # local paths and s3:// URLs

    try:
        data = storage.read_bytes(weights)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"resnet18_unet weights {weights!r}: no such file") from exc
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise ValueError(f"resnet18_unet weights {weights!r}: not a resnet18 state dict "
                         "(expected keys like conv1.weight, layer1.0.conv1.weight)")
    return state


def _imagenet_state() -> dict[str, torch.Tensor]:
    from torchvision.models import ResNet18_Weights  # lazy: see ResNet18UNet.__init__

    entry = ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(entry.url).path).name
    if not cached.exists():
        host = urlparse(entry.url).hostname or ""
        try:
            socket.create_connection((host, 443), timeout=_HUB_CHECK_TIMEOUT_S).close()
        except OSError as exc:
            raise OSError(
                f"resnet18_unet weights 'imagenet': not cached at {cached} and {host} cannot "
                f"be reached ({exc}). Either run once on a connected machine (or copy the file "
                f"there; TORCH_HOME moves the cache), or pass weights=<path or URL of a resnet18 "
                f"state dict> (local, s3:// or http(s)://); weights=none trains from scratch."
            ) from exc
    return entry.get_state_dict(progress=False, check_hash=True)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU at the same resolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True))


class ResNet18UNet(nn.Module):
    """``[B, 1, H, W]`` -> ``[B, 2, H, W]`` in (-1, 1); H, W padded to a multiple of 32."""

    def __init__(self, *, weights: str = "imagenet", decoder_width: int = 256,
                 out_channels: int = 2) -> None:
        super().__init__()
        self.weights = weights
        # Imported here: torchvision pulls in torch._dynamo (~1.5 s), which every `colorize`
        # command would otherwise pay at start-up, resnet18_unet or not.
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        # 1-channel stem; its weights are filled by init_weights (summed RGB filters).
        self.stem = nn.Sequential(nn.Conv2d(1, 64, 7, 2, 3, bias=False), net.bn1, net.relu)
        self.pool = net.maxpool
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        # Decoder stage i: up x2, concat the skip of the next-shallower stage, two convs.
        # Widths shrink with depth: 512 -> dw -> dw/2 -> dw/4 -> dw/8, then full resolution.
        widths = [decoder_width // 2**i for i in range(4)]
        c_in = _ENCODER_WIDTHS[-1]
        ups = []
        for skip, c_out in zip(reversed(_ENCODER_WIDTHS[:-1]), widths, strict=True):
            ups.append(_conv_block(c_in + skip, c_out))
            c_in = c_out
        self.ups = nn.ModuleList(ups)
        # Last stage: back to H x W, concatenated with the input L itself.
        self.head = nn.Sequential(_conv_block(c_in + 1, max(c_in // 2, 16)),
                                  nn.Conv2d(max(c_in // 2, 16), out_channels, 1), nn.Tanh())

    @property
    def size_multiple(self) -> int:
        return _SIZE_MULTIPLE

    def init_weights(self, generator: torch.Generator | None) -> None:
        """Seeded random init of everything, then the pretrained encoder when asked for."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out",
                                            nonlinearity="relu", generator=generator)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            # The ab head starts near 0 (gray): tanh unsaturated, and L1 sees a fair start.
            head = self.head[1]
            assert isinstance(head, nn.Conv2d)
            nn.init.normal_(head.weight, 0.0, _HEAD_INIT_STD, generator=generator)
            if self.weights != "none":
                self._load_encoder(load_resnet18_state(self.weights))

    def _load_encoder(self, state: dict[str, torch.Tensor]) -> None:
        stem = state["conv1.weight"]  # [64, 3, 7, 7] -> [64, 1, 7, 7]
        stem_conv = self.stem[0]
        assert isinstance(stem_conv, nn.Conv2d)
        stem_conv.weight.copy_(stem.sum(dim=1, keepdim=True))
        self.stem[1].load_state_dict({k[len("bn1."):]: v for k, v in state.items()
                                      if k.startswith("bn1.")})
        for i, layer in enumerate(self.layers, start=1):
            prefix = f"layer{i}."
            layer.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                   if k.startswith(prefix)})
        logger.info("resnet18_unet: encoder loaded from %s", self.weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % _SIZE_MULTIPLE, -width % _SIZE_MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # [B, 1, H', W']
        skips = [self.stem(x)]  # [B, 64, H'/2, W'/2]
        h = self.pool(skips[0])  # [B, 64, H'/4, W'/4]
        for layer in self.layers:
            h = layer(h)
            skips.append(h)  # H'/4, H'/8, H'/16, H'/32
        h = skips.pop()  # [B, 512, H'/32, W'/32]
        for up in self.ups:
            skip = skips.pop()  # the next-shallower stage
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = up(torch.cat([h, skip], dim=1))
        h = F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)
        out = self.head(torch.cat([h, x], dim=1))  # [B, 2, H', W']
        return out[..., :height, :width]
