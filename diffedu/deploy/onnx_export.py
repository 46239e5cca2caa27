"""A few-step sampler as one ONNX graph, run by ONNX Runtime, and its int8 version (chapter 11).

mnist-fast draws a digit in 4 Euler steps of a flow (chapter 08, eq. (8.5)):

    x_1 = eps ~ N(0, I),    x_{t'} = x_t + (t' - t) v_theta(x_t, t, label),    t = 1, 0.75, 0.5, 0.25, 0

The loop has a fixed length, so the whole sampler - four calls of the UNet and the Euler updates -
is exported as one graph: noise (B, 1, 28, 28) and labels (B,) in, digits (B, 1, 28, 28) in [-1, 1]
out. Whatever runs ONNX (ONNX Runtime in Python, onnxruntime-web in a browser, a phone's runtime)
then needs no Python and no sampler code of its own: only noise and the digits wanted.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from diffedu.course.device import randn
from diffedu.flow import TIME_SCALE, flow_times

INPUT_NAMES = ("noise", "labels")
OUTPUT_NAME = "images"


class FewStepSampler(nn.Module):
    """The Euler sampler of a velocity UNet (eq. (8.5)) unrolled over `steps` steps, as one module.

    forward(noise (B, C, H, W), labels (B,) int64) -> samples (B, C, H, W), clamped to [-1, 1],
    exactly what `diffedu.generate.generate(model, n, "euler", steps, clip_x0=None)` returns.
    """

    def __init__(self, unet: nn.Module, steps: int = 4):
        super().__init__()
        self.unet = unet.eval()
        self.times = [float(t) for t in flow_times(steps)]  # 1 -> 0: the grid `generate` uses

    @property
    def steps(self) -> int:
        return len(self.times) - 1

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = noise  # (B, C, H, W), x_1 = eps
        for t, t_next in zip(self.times[:-1], self.times[1:]):
            time_input = torch.full((x.shape[0],), t * TIME_SCALE, dtype=x.dtype, device=x.device)  # (B,)
            velocity = self.unet(x, time_input, labels)  # v_theta(x_t, t), (B, C, H, W)
            x = x + (t_next - t) * velocity  # eq. (8.5)
        return x.clamp(-1, 1)


def export_sampler(unet: nn.Module, path: str | Path, steps: int = 4) -> Path:
    """Write `FewStepSampler(unet, steps)` to `path` as one self-contained ONNX file (weights inside),
    with a free batch size. Uses PyTorch's exporter (torch.export, then ONNX); takes some seconds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sampler = FewStepSampler(unet, steps).cpu().eval()
    size = unet.config.image_size
    example = (torch.zeros(2, unet.config.image_channels, size, size), torch.zeros(2, dtype=torch.long))
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        torch.onnx.export(sampler, example, path, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_shapes=({0: batch}, {0: batch}), dynamo=True, external_data=False,
                          verbose=False)
    return path


def quantize_int8(source: str | Path, target: str | Path, operators: tuple[str, ...] | None = None) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of `source`, eq. (11.4): each weight tensor stored as int8
    with one float scale, activations quantised on the fly, batch by batch. `operators` limits it to
    those node types (e.g. ("MatMul", "Gemm"): the attention and linear layers, not the convolutions);
    default: every type ONNX Runtime can quantise. Returns `target`."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(target)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # its advice to pre-process first concerns static quantisation
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(operators) if operators else None)
    finally:
        root.setLevel(level)
    return target


class OnnxSampler:
    """An exported sampler run by ONNX Runtime on the CPU.

    Args:
        path: the .onnx file (`export_sampler` or `quantize_int8` wrote it).
        threads: ONNX Runtime's intra-op threads (default: torch's thread count, so comparisons are fair).
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file at {path}: write one with diffedu.deploy.export_sampler(model, '{path}')")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep, leaving the CPU to others
        self.path = path
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.image_shape = tuple(self.session.get_inputs()[0].shape[1:])  # (C, H, W)

    def __call__(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Samples (B, C, H, W) from noise (B, C, H, W) and labels (B,), as FewStepSampler.forward."""
        if tuple(noise.shape[1:]) != self.image_shape or labels.shape != noise.shape[:1]:
            raise ValueError(f"noise must have shape (B, {', '.join(map(str, self.image_shape))}) and labels (B,), "
                             f"got {tuple(noise.shape)} and {tuple(labels.shape)}")
        feed = {"noise": noise.detach().cpu().float().numpy(), "labels": labels.detach().cpu().long().numpy()}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])

    def generate(self, labels: torch.Tensor, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
        """Digits `labels` (n,) from the noise `generate` draws for `seed`: the same pictures as PyTorch."""
        return draw_digits(self, labels, seed, batch_size, self.image_shape)


def draw_digits(sampler, labels: torch.Tensor, seed: int = 0, batch_size: int = 500, image_shape=(1, 28, 28)) -> torch.Tensor:
    """Digits `labels` (n,) through any sampler(noise, labels) (FewStepSampler, OnnxSampler, ...), in batches,
    from the noise `diffedu.generate.generate` draws for `seed`: every x_1 in one draw on the CPU."""
    noise = randn((len(labels), *image_shape), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return torch.cat([sampler(noise[i: i + batch_size], labels[i: i + batch_size])
                          for i in range(0, len(labels), batch_size)])


def file_megabytes(path: str | Path) -> float:
    """The size of a file in MB (10^6 bytes)."""
    return os.path.getsize(path) / 1e6
