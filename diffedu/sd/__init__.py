"""Stable Diffusion helpers (chapter 05): the course-trained mini model, the online model registry, and GPU memory settings."""
