"""latentatlas: map a pretrained GAN's latent space and sample, truncate, invert, walk and edit
where the good latents are.

The names a newcomer reaches for first are importable from here (loaded on first use)::

    from latentatlas import load_generator, save_grid
    G = load_generator("fashion-stylegan2")
"""
__version__ = "0.1.0"

_EXPORTS = {
    "load_generator": ("latentatlas.models.registry", "load_generator"),
    "export_model": ("latentatlas.models.registry", "export_model"),
    "export_onnx": ("latentatlas.models.onnx_export", "export_onnx"),
    "wrap_generator": ("latentatlas.models.interface", "wrap_generator"),
    "capabilities": ("latentatlas.models.inspect", "capabilities"),
    "Atlas": ("latentatlas.atlas", "Atlas"),
    "fit_atlas": ("latentatlas.atlas", "fit_atlas"),
    "invert": ("latentatlas.inversion", "invert"),
    "invert_many": ("latentatlas.inversion", "invert_many"),
    "InversionConfig": ("latentatlas.inversion", "InversionConfig"),
    "get_atlas": ("latentatlas.atlas", "get_atlas"),
    "sample_images": ("latentatlas.sampling.generate", "sample_images"),
    "compute_directions": ("latentatlas.walks.directions", "compute_directions"),
    "Directions": ("latentatlas.walks.directions", "Directions"),
    "evaluate_model": ("latentatlas.metrics.suite", "evaluate_model"),
    "build_report": ("latentatlas.report.build", "build_report"),
    "save_grid": ("latentatlas.imageio", "save_grid"),
    "LatentAtlasError": ("latentatlas.errors", "LatentAtlasError"),
    "tune_allocator": ("latentatlas.runtime", "tune_allocator"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        mod, attr = _EXPORTS[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'latentatlas' has no attribute {name!r}")
