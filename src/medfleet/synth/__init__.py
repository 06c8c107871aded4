"""Controllable synthesis of image-annotation pairs (latent diffusion + mask ControlNet).

Modules: ``config`` (settings), ``captions`` (captions and word vocabulary), ``pairs``
(images, condition masks, layouts), ``model`` (networks, save/load), ``train``,
``sample`` (generation, synthetic task tables), ``quality`` (FID, MS-SSIM, PSNR/MAE),
``reader`` (reader-study kit and scoring), ``augment`` (downstream augmentation study).
Importing this package loads no deep-learning library; see docs/synthesis.md.

Example:
    >>> from medfleet.synth.config import SynthConfig
    >>> SynthConfig().prediction
    'epsilon'
"""
