"""Classifier-free guidance (Ho & Salimans 2022), eq. (3.3):

    eps = eps_uncond + w (eps_cond - eps_uncond)

w = 0 ignores the label, w = 1 is the plain conditional model, w > 1 pushes samples towards
what makes them look like their class (sharper, less varied).
"""

from __future__ import annotations

import torch


def guided_predictor(model, labels: torch.Tensor, guidance: float = 1.0):
    """Wrap a class-conditional model(x_t, time_input, labels) into model(x_t, time_input) for the samplers; the
    model may predict noise or a velocity (eq. (3.3) is affine, so it guides either).

    Args:
        model: a conditional noise (or velocity) predictor whose `null_class` label means "no label".
        labels: (B,) the class of each sample to draw.
        guidance: w in eq. (3.3). For w == 1 one forward pass suffices; otherwise the
            conditional and unconditional passes run as one batch of 2B.
    """
    null_class = getattr(model, "null_class", None)
    if null_class is None:
        raise ValueError("guidance needs a class-conditional model (one with a null_class)")
    if guidance < 0:
        raise ValueError(f"guidance must be >= 0, got {guidance}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")

    def predict(x_t: torch.Tensor, time_input: torch.Tensor, **inputs) -> torch.Tensor:
        """inputs: further per-sample inputs of the model (B,), e.g. MeanFlow's interval_input."""
        cond_labels = labels.to(x_t.device)
        if guidance == 1.0:
            return model(x_t, time_input, cond_labels, **inputs)
        if guidance == 0.0:
            return model(x_t, time_input, torch.full_like(cond_labels, null_class), **inputs)
        both = torch.cat([cond_labels, torch.full_like(cond_labels, null_class)])  # (2B,)
        doubled = {name: torch.cat([value, value]) for name, value in inputs.items()}
        cond, uncond = model(torch.cat([x_t, x_t]), torch.cat([time_input, time_input]), both, **doubled).chunk(2)
        return uncond + guidance * (cond - uncond)  # eq. (3.3), for eps or a velocity alike

    return predict
