"""The report's sections, one module each (importing them registers them), and the page's order:
later sections read what earlier ones computed (the latent-space section's atlas, the sampling and
inversion rows that the method table and the claims use)."""
from . import claims, inversion, latent_space, model, overview, quality, samples, sampling, walks  # noqa: F401

ORDER = ("model", "samples", "quality", "latent-space", "sampling", "inversion", "walks", "overview", "claims")
