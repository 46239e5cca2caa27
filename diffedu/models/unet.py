"""A small UNet noise predictor eps_theta(x_t, t, label) for 28 x 28 images (chapter 03).

As shipped (mnist-unet: patch_size=2, channel_mults=(1, 2)): 2 x 2 pixel patches are folded into
channels first, so the UNet works at 14 x 14 and 7 x 7 (the latent model, mnist-ldm, runs the
same design on 4 x 7 x 7 latents, at 7 x 7 and 4 x 4):

    x_t (B, 1, 28, 28)                                          eps (B, 1, 28, 28)
      │ fold 2x2 patches into channels                              ^ unfold the patches
    (B, 4, 14, 14) ─conv─> 14x14 ─ResBlock──── skip ────> ResBlock ─ conv
                             │ down                          ^ up
                            7x7 ─ResBlock── skip ──> ResBlock, ResBlock
                             └──> middle: ResBlock, Attention, ResBlock ──┘

With patch_size=1 and channel_mults=(1, 2, 2) (the defaults) it runs at 28, 14 and 7 instead.

Every ResBlock receives the timestep's sinusoidal embedding (and, for a class-conditional
model, a learned class embedding; class `num_classes` is the "null" class used for
classifier-free guidance). Self-attention runs at the lowest resolution only, where 7 x 7 = 49
positions make it cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffedu.models.time_embedding import timestep_embedding


@dataclass
class UNetConfig:
    """Shape of the UNet (the course's shipped models: diffedu.zoo.mnist_unet.MODEL_CONFIG, mnist_ldm.MODEL_CONFIG)."""

    image_channels: int = 1
    image_size: int = 28
    patch_size: int = 1  # 2: fold 2x2 pixel patches into channels first (28x28x1 -> 14x14x4), 4x cheaper
    base_channels: int = 32  # channels at the first resolution level
    channel_mults: tuple[int, ...] = (1, 2, 2)  # per resolution level: 28, 14, 7
    num_res_blocks: int = 1  # ResBlocks per level on the way down (one more on the way up)
    attention_heads: int = 4  # self-attention at the lowest resolution
    num_classes: int | None = 10  # None for an unconditional model
    dropout: float = 0.0
    groups: int = 8  # GroupNorm groups
    condition_channels: int = 0  # extra input channels beside x_t (chapter 10's upscaler: the low-res image)
    interval_input: bool = False  # a second time input, the length t - r of an interval (chapter 08's MeanFlow)
    max_time_frequency: float | None = None  # drop faster time-embedding frequencies (radians per unit of time input)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "UNetConfig":
        values = dict(values)
        values["channel_mults"] = tuple(values["channel_mults"])
        return cls(**values)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> Conv, add the (time + class) embedding, GroupNorm -> SiLU ->
    Dropout -> Conv, plus a skip connection (Ho et al. 2020, after Wide ResNets)."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # inject time (and class)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H * W positions of a feature map, with a residual."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by attention heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        # (B, heads, head_dim, HW) -> (B, heads, HW, head_dim) for attention over positions
        attended = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps_theta(x_t, time_input, labels): predicts the noise in x_t (B, C, H, W) at the noise level
    time_input (B,): a code timestep k for a diffusion model, t * 1000 for chapter 08's flows (which
    train the same network to predict a velocity).

    Args:
        config: a UNetConfig (default: the course's MNIST model).
    Forward:
        x_t: (B, C, H, W) noisy images; time_input: (B,) noise levels; labels: (B,) long classes in
        0..num_classes-1, or num_classes (= UNet.null_class) for "no label"; None means all
        null; condition: (B, condition_channels, H, W) images concatenated to x_t as extra input
        channels (only for condition_channels > 0, as Stable Diffusion's x4 upscaler takes its
        low-resolution image); interval_input: (B,) (t - r) * 1000, the interval of MeanFlow's average
        velocity (only for interval_input=True; None means r = t). Returns the predicted noise, (B, C, H, W).
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config = config or UNetConfig()
        channels = [config.base_channels * m for m in config.channel_mults]
        emb_dim = 4 * config.base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(config.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        # MeanFlow's interval t - r gets an embedding of its own; its last layer starts at zero, so that a
        # network copied from a flow starts as that flow for every interval
        self.interval_mlp = None
        if config.interval_input:
            self.interval_mlp = nn.Sequential(
                nn.Linear(config.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
            )
            nn.init.zeros_(self.interval_mlp[-1].weight)
            nn.init.zeros_(self.interval_mlp[-1].bias)
        # one extra row: the "null" class for classifier-free guidance
        self.class_emb = nn.Embedding(config.num_classes + 1, emb_dim) if config.num_classes else None

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, config.groups, config.dropout)

        if config.image_size % config.patch_size:
            raise ValueError(f"image_size {config.image_size} must be divisible by patch_size {config.patch_size}")
        patch_channels = config.image_channels * config.patch_size**2
        input_channels = (config.image_channels + config.condition_channels) * config.patch_size**2
        self.stem = nn.Conv2d(input_channels, channels[0], 3, padding=1)
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        skip_channels, current = [channels[0]], channels[0]
        for level, width in enumerate(channels):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                blocks.append(res(current, width))
                current = width
                skip_channels.append(current)
            self.down_blocks.append(blocks)
            last = level == len(channels) - 1
            # stride-2 conv halves the resolution (28 -> 14 -> 7); padding keeps odd sizes right
            self.downsamples.append(nn.Identity() if last else nn.Conv2d(current, current, 3, stride=2, padding=1))
            if not last:
                skip_channels.append(current)

        self.mid_block1 = res(current, current)
        self.mid_attention = SelfAttention(current, config.attention_heads, config.groups)
        self.mid_block2 = res(current, current)

        self.up_blocks, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for level, width in reversed(list(enumerate(channels))):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                blocks.append(res(current + skip_channels.pop(), width))
                current = width
            self.up_blocks.append(blocks)
            self.upsamples.append(nn.Conv2d(current, current, 3, padding=1) if level > 0 else nn.Identity())

        self.out_norm = nn.GroupNorm(config.groups, current)
        self.out_conv = nn.Conv2d(current, patch_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    @property
    def null_class(self) -> int | None:
        return self.config.num_classes

    def embed(self, time_input: torch.Tensor, labels: torch.Tensor | None,
              interval_input: torch.Tensor | None = None) -> torch.Tensor:
        """Time embedding plus class embedding (plus interval embedding), (B, 4 * base_channels)."""
        cutoff = self.config.max_time_frequency
        emb = self.time_mlp(timestep_embedding(time_input, self.config.base_channels, max_frequency=cutoff))
        if self.interval_mlp is not None:
            if interval_input is None:  # no interval: r = t, the plain velocity
                interval_input = torch.zeros_like(time_input)
            emb = emb + self.interval_mlp(timestep_embedding(interval_input, self.config.base_channels, max_frequency=cutoff))
        elif interval_input is not None:
            raise ValueError("this UNet takes no interval input (interval_input=False in its config): do not pass one")
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full_like(time_input, self.null_class)
            # checked in eager mode; torch.compile and ONNX export trace the network and cannot branch on values
            if not torch.compiler.is_compiling() and (labels.min() < 0 or labels.max() > self.null_class):
                raise ValueError(f"labels must be in 0..{self.null_class} ({self.null_class} = no label), got {labels.unique().tolist()}")
            emb = emb + self.class_emb(labels)
        elif labels is not None:
            raise ValueError("this UNet is unconditional (num_classes=None): do not pass labels")
        return emb

    def forward(self, x_t: torch.Tensor, time_input: torch.Tensor, labels: torch.Tensor | None = None,
                condition: torch.Tensor | None = None, interval_input: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x_t.ndim != 4 or x_t.shape[1] != cfg.image_channels:
            raise ValueError(f"x_t must have shape (B, {cfg.image_channels}, H, W), got {tuple(x_t.shape)}")
        if cfg.condition_channels:
            expected = (x_t.shape[0], cfg.condition_channels, *x_t.shape[2:])
            if condition is None or tuple(condition.shape) != expected:
                got = "none" if condition is None else tuple(condition.shape)
                raise ValueError(f"this UNet takes a condition image of shape {expected} beside x_t, got {got}")
            x_t = torch.cat([x_t, condition.to(x_t.dtype)], dim=1)  # (B, C + C_cond, H, W)
        elif condition is not None:
            raise ValueError("this UNet takes no condition image (condition_channels=0): do not pass one")
        if time_input.ndim == 1 and time_input.shape[0] == 1:
            time_input = time_input.expand(x_t.shape[0])
        if interval_input is not None and interval_input.ndim == 1 and interval_input.shape[0] == 1:
            interval_input = interval_input.expand(x_t.shape[0])
        emb = self.embed(time_input, labels, interval_input)  # (B, emb_dim)

        # (B, C, 28, 28) -> (B, C*p*p, 28/p, 28/p): each p x p patch becomes p*p channels
        h = self.stem(F.pixel_unshuffle(x_t, cfg.patch_size))  # (B, C0, 28/p, 28/p)
        skips = [h]
        for blocks, downsample in zip(self.down_blocks, self.downsamples):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            if not isinstance(downsample, nn.Identity):
                h = downsample(h)  # (B, C, H/2, W/2)
                skips.append(h)

        h = self.mid_block2(self.mid_attention(self.mid_block1(h, emb)), emb)  # (B, C, 7, 7)

        for blocks, upsample in zip(self.up_blocks, self.upsamples):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if not isinstance(upsample, nn.Identity):
                h = F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest")  # 7 -> 14 -> 28
                h = upsample(h)
        out = self.out_conv(F.silu(self.out_norm(h)))  # (B, p*p, 28/p, 28/p)
        return F.pixel_shuffle(out, cfg.patch_size)  # (B, 1, 28, 28)



def unet_from_saved(state: dict, config: dict, device="cpu") -> UNet:
    """A UNet in eval mode on `device` from saved weights and the config they were saved with
    (a checkpoint's config["unet"], see models.checkpoints.read_checkpoint)."""
    model = UNet(UNetConfig.from_dict(config))
    model.load_state_dict(state)
    return model.to(device).eval()
