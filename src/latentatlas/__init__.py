"""latentatlas: map a pretrained GAN's latent space and sample, truncate, invert, walk and edit
where the good latents are."""
__version__ = "0.1.0"
