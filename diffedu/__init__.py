"""diffedu: the helper library of a course on diffusion models.

The math, one chapter each (diffedu/*.py):
    schedules   beta/alpha/alpha_bar/SNR and q_sample                        chapter 01
    samplers    DDPM and DDIM steps and their loops (generators of steps)     chapter 02
    toy         a 2-D Gaussian mixture with exact scores                      chapter 02
    losses      the noise-prediction objective, Min-SNR, label dropout        chapters 02-03
    guidance    classifier-free guidance                                      chapter 03
    train       the resumable training loop                                   chapter 03
    latents     encode, decode and scale a VAE's latents                      chapter 04
    metrics     accuracy, FID, PSNR/SSIM, KID, precision/recall, ...          chapters 03, 06, 10
    sde         scores, Langevin dynamics, the probability-flow ODE           chapter 07
    flow        flow matching: the straight path, its loss, conversions,      chapter 08
                Euler/Heun flow steps, the timestep shift
    distill     progressive distillation of a flow (guidance included)        chapter 08
    generate    the front door for every model: `generate` and the registry
                of samplers, SAMPLERS (the command line reads it)             chapters 02, 07, 08
    restoration restoration as posterior sampling: operators and their        chapter 10
                pseudo-inverses, SDEdit, DDNM, DPS, denoising, the upscaler;
                the front door `restore` and `upscale`
    editing     DDIM inversion and regeneration under another prompt          chapter 10
    classical   the classical baselines: bicubic, Gaussian, median,           chapter 10
                nearest-neighbour fill

The models:
    models/     networks, one file each (unet, vae, classifier, mlp, time_embedding), and
                checkpoints (safetensors + model card)
    zoo/        the named models, one module each, and their registry (`python -m diffedu models`)
    sd/         Stable Diffusion parts: the mini pipeline, real model ids, memory savers (chapter 05);
                a LoRA layer written by hand, bold/slanted/outlined digits and their measures,
                LoRA / textual inversion / ControlNet training (finetune, chapter 09)
    deploy/     from notebook to product (chapter 11): profiling and the roofline, the sampler as
                one ONNX graph and int8, dynamic batching, the FastAPI service, its load test,
                the in-browser page (onnxruntime-web), and their commands
    __main__    the command line: models, train, sample, evaluate, publish, restore
                (restore_command, chapter 10), serve, loadtest, web (deploy/commands, chapter 11)

The course's infrastructure (diffedu/course/, diffedu/exercises/):
    course/     paths, fast mode, checks, colab, online, report, widgets, captions,
                device, data, plotting, progress, trajectory (runs a sampler's steps)
    exercises/  the auto-checked exercises
"""

__version__ = "0.1.0"
