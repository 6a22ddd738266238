"""Attribute estimators: what reads an edit's effect (II2S §4 reads a pose estimator and a gender
classifier; METHODS.md §5).

An estimator maps images [N, C, H, W] in [-1, 1] to probabilities [N, K] over ``names``. Three
kinds:

* ``ClassifierAttributes`` — the Fashion-MNIST feature network's class probabilities (the
  default for Fashion-MNIST models);
* ``FunctionAttributes`` — any user function ``images -> probabilities`` (API);
* ``LinearProbe`` — a multinomial logistic regression on a feature extractor's features of the
  user's labelled images (``probe_from_csv``: a CSV of ``path,label`` rows; the CLI's
  ``--attribute-probe labels.csv``).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Callable

import torch

from ..data.fashion import CLASSES
from ..data.folder import list_images, load_image
from ..errors import LatentAtlasError
from .suite import features_of_images

log = logging.getLogger("latentatlas")

MIN_PER_LABEL = 5


class Attributes:
    """``probs(images) -> [N, K]`` over ``names``; ``classify`` is the most probable attribute."""

    names: list[str] = []

    def probs(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.probs(images).argmax(1)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise LatentAtlasError(f"attribute {name!r} not known to the estimator; it knows {', '.join(self.names)}")
        return self.names.index(name)


class ClassifierAttributes(Attributes):
    """The Fashion-MNIST feature network's class probabilities."""

    def __init__(self, ext):
        self.ext, self.names = ext, list(CLASSES)

    def probs(self, images):
        return torch.softmax(self.ext.logits(images), 1)


class FunctionAttributes(Attributes):
    """A user function ``images [N, C, H, W] in [-1, 1] -> probabilities [N, len(names)]``."""

    def __init__(self, fn: Callable, names: list[str]):
        if len(names) < 2:
            raise LatentAtlasError("an attribute function needs at least two attribute names")
        self.fn, self.names = fn, list(names)

    def probs(self, images):
        p = torch.as_tensor(self.fn(images))
        if p.shape != (images.shape[0], len(self.names)) or not torch.isfinite(p).all():
            raise LatentAtlasError(f"the attribute function returned {list(p.shape)} (or non-finite values); "
                                   f"expected [{images.shape[0]}, {len(self.names)}] probabilities")
        return p.float()


class LinearProbe(Attributes):
    """Multinomial logistic regression (L2, LBFGS) on standardised features of labelled images.
    ``train_accuracy`` and ``heldout_accuracy`` (every fifth image held out when each label has
    ≥ 10 images) are recorded so a reader can tell whether the probe reads its attribute at all."""

    def __init__(self, ext, names, mu, sd, W, b, train_accuracy: float, heldout_accuracy: float | None):
        self.ext, self.names = ext, list(names)
        self.mu, self.sd, self.W, self.b = mu, sd, W, b
        self.train_accuracy, self.heldout_accuracy = train_accuracy, heldout_accuracy

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        return ((feats.float().cpu() - self.mu) / self.sd) @ self.W.t() + self.b

    def probs(self, images):
        with torch.no_grad():
            return torch.softmax(self.logits(self.ext(images)), 1)

    def state(self) -> dict:
        """Everything but the extractor, as plain values (to send the probe to a Ray worker)."""
        return {"names": self.names, "mu": self.mu, "sd": self.sd, "W": self.W, "b": self.b, "features": self.ext.name,
                "train_accuracy": self.train_accuracy, "heldout_accuracy": self.heldout_accuracy}

    @classmethod
    def from_state(cls, state: dict, ext) -> "LinearProbe":
        if ext.name != state["features"]:
            raise LatentAtlasError(f"the attribute probe was fitted on {state['features']} features, not {ext.name}")
        return cls(ext, state["names"], state["mu"], state["sd"], state["W"], state["b"], state["train_accuracy"],
                   state["heldout_accuracy"])

    @classmethod
    def fit(cls, ext, images: torch.Tensor, labels: list[str], *, l2: float = 1e-3, steps: int = 200,
            batch_size: int = 250) -> "LinearProbe":
        names = sorted(set(labels))
        if len(names) < 2:
            raise LatentAtlasError(f"an attribute probe needs at least two labels; got {names}")
        few = [n for n in names if labels.count(n) < MIN_PER_LABEL]
        if few:
            raise LatentAtlasError(f"an attribute probe needs at least {MIN_PER_LABEL} images per label; too few for {few}")
        with torch.no_grad():
            f = torch.from_numpy(features_of_images(images, ext, batch_size=batch_size))
        y = torch.tensor([names.index(v) for v in labels])
        held = torch.zeros(len(y), dtype=torch.bool)
        if min(labels.count(n) for n in names) >= 10:
            held[4::5] = True
        mu, sd = f[~held].mean(0), f[~held].std(0) + 1e-6
        W = torch.zeros(len(names), f.shape[1], requires_grad=True)
        b = torch.zeros(len(names), requires_grad=True)
        xs = (f - mu) / sd
        opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xs[~held] @ W.t() + b, y[~held]) + l2 * W.square().sum()
            loss.backward()
            return loss
        opt.step(closure)
        with torch.no_grad():
            pred = (xs @ W.t() + b).argmax(1)
            train_acc = float((pred[~held] == y[~held]).float().mean())
            held_acc = float((pred[held] == y[held]).float().mean()) if held.any() else None
        log.info("attribute probe: %d images, labels %s; accuracy %.3f on its images%s", len(y), names, train_acc,
                 f", {held_acc:.3f} held out" if held_acc is not None else "")
        return cls(ext, names, mu, sd, W.detach(), b.detach(), train_acc, held_acc)


MAX_LABEL_ROWS = 100_000            # labelled images one probe is fitted on
MAX_LABELS_BYTES = 64 * 2 ** 20      # a labels CSV larger than this is refused before it is read


def read_labels_csv(path) -> list[tuple[Path, str]]:
    """Rows ``path,label`` (an optional header row naming ``path`` and ``label``); image paths are
    relative to the CSV's folder. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise LatentAtlasError(f"{path}: no such labels file")
    if path.stat().st_size > MAX_LABELS_BYTES:
        raise LatentAtlasError(f"{path}: {path.stat().st_size / 2 ** 20:.0f} MiB, more than a labels file holds "
                               f"(limit {MAX_LABELS_BYTES // 2 ** 20} MiB)")
    rows, i = [], 0
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for i, rec in enumerate(csv.reader(fh), 1):
                if not rec or all(not c.strip() for c in rec):
                    continue
                if len(rows) >= MAX_LABEL_ROWS:
                    raise LatentAtlasError(f"{path}: more than {MAX_LABEL_ROWS:,} labelled images; use fewer")
                if i == 1 and [c.strip().lower() for c in rec[:2]] == ["path", "label"]:
                    continue
                if len(rec) != 2 or not rec[0].strip() or not rec[1].strip():
                    raise LatentAtlasError(f"{path}, line {i}: expected 'path,label', got {','.join(rec)[:80]!r}")
                p = Path(rec[0].strip())
                rows.append((p if p.is_absolute() else path.parent / p, rec[1].strip()))
    except UnicodeDecodeError:
        raise LatentAtlasError(f"{path}: not a UTF-8 CSV file") from None
    except csv.Error as e:                 # e.g. a field over csv's 128 KiB limit
        raise LatentAtlasError(f"{path}, line {i + 1}: not a 'path,label' CSV row ({e})") from None
    if not rows:
        raise LatentAtlasError(f"{path}: no 'path,label' rows")
    return rows


def read_labelled_folders(path) -> list[tuple[Path, str]]:
    """Rows (image, label) of a folder of class sub-folders: each sub-folder's name is the label of
    the images in it (``labels/smiling/*.png``, ``labels/neutral/*.png``)."""
    path = Path(path)
    subs = sorted(p for p in path.iterdir() if p.is_dir())
    if len(subs) < 2:
        raise LatentAtlasError(f"{path}: labelled images as class sub-folders need at least two sub-folders "
                               f"(found {len(subs)}); or give a labels CSV (path,label)")
    rows = [(img, sub.name) for sub in subs for img in list_images(sub)]
    if len(rows) > MAX_LABEL_ROWS:
        raise LatentAtlasError(f"{path}: {len(rows):,} labelled images, more than {MAX_LABEL_ROWS:,}")
    return rows


def read_labelled_images(path, model) -> tuple[list, dict]:
    """The rows (image path, label) of the labels CSV ``path`` — or of a folder of class
    sub-folders — and each listed image, read once however often it is listed (converted to
    ``model``'s channels and resolution). Unreadable images are an error: a fit on fewer images
    than the user listed would misreport itself."""
    rows = read_labelled_folders(path) if Path(path).is_dir() else read_labels_csv(path)
    loaded: dict = {}
    for p, _ in rows:
        if p in loaded:
            continue
        if not p.is_file():
            raise LatentAtlasError(f"{path}: listed image {p} does not exist")
        got = load_image(p, size=model.img_resolution, channels=model.img_channels)
        if got.tensor is None:
            raise LatentAtlasError(f"{path}: listed image {p} cannot be read ({got.note})")
        loaded[p] = got.tensor
    return rows, loaded


def probe_from_csv(path, model, ext) -> LinearProbe:
    """Fit a ``LinearProbe`` in ``ext``'s feature space on the labelled images listed in ``path``
    (``read_labelled_images``)."""
    rows, loaded = read_labelled_images(path, model)
    return LinearProbe.fit(ext, torch.stack([loaded[p] for p, _ in rows]), [lab for _, lab in rows])


def estimator_for(model, ext, probe: "LinearProbe | dict | Attributes | None" = None) -> Attributes:
    """The attribute estimator of an evaluation: ``probe`` when given (a fitted probe, its
    ``state()``, or any ``Attributes``), else the feature network's classes for Fashion-MNIST
    models; other models need one."""
    if isinstance(probe, Attributes):
        return probe
    if isinstance(probe, dict):
        return LinearProbe.from_state(probe, ext)
    if hasattr(ext, "logits"):
        return ClassifierAttributes(ext)
    raise LatentAtlasError(f"model '{model.name}' has no built-in attribute estimator (only Fashion-MNIST models do): "
                           "give labelled images with --attribute-probe labels.csv (rows 'path,label')")
