"""The report's sections, one module each (importing them registers them), and the page's order:
later sections read what earlier ones computed (the latent-space section's atlas, the sampling and
inversion rows that the method table and the claims use)."""
from . import (  # noqa: F401
    claims,
    editing,
    inversion,
    latent_space,
    model,
    overview,
    quality,
    samples,
    sampling,
    walks,
)

ORDER = ("model", "samples", "quality", "latent-space", "sampling", "inversion", "walks", "editing", "overview",
         "claims")
