"""Latent directions, registered by name, saved as ``.npz`` with metadata.

* ``ganspace`` — PCA of sampled w (Härkönen et al.); with ``layer`` set, PCA of that layer's
  activations, mapped back to latent directions by least-squares regression of the latents on
  the activation PCA coordinates (GANSpace's recipe for networks without a mapping).
* ``sefa`` — closed form (Shen & Zhou): top eigenvectors of AᵀA, A = the (row-normalised) style
  affine weights of the chosen synthesis layers (default: the first).
* ``dplase`` — Γ learned jointly with the density model and correction (``walks.density``).
* ``mean-diff`` — mean w of samples the feature network assigns to class a minus that of class b
  (or of all other classes), one direction per class by default.
* ``linear-classifier`` — weight vector of a logistic-regression probe on w per class.
* ``diamond`` — the Z direction from a sample toward the mean protoimage (Diamond in the rough).

Every direction set is ``[K, D]`` unit rows in space ``w`` or ``z``, with ``sigmas`` [K] (the
standard deviation of sampled latents' projections, so edits are given in σ units).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import torch

from ..data.fashion import CLASSES, fashion_format
from ..diamond import cached_mean_protoimage, resolve_settings
from ..errors import LatentAtlasError
from ..imageio import atomic_path
from ..metrics.attributes import ClassifierAttributes
from ..metrics.features import FashionFeatures
from ..validate import read_npz
from .density import DPConfig, DPWalkModel, train_dp_lase


@dataclass
class Directions:
    vectors: torch.Tensor            # [K, D], unit rows
    space: str                       # "w" or "z"
    method: str
    sigmas: torch.Tensor             # [K]
    meta: dict = field(default_factory=dict)
    dp_state: dict | None = None     # DP-LaSE's trained density F and correction C (tensors), saved along

    def dp_walk_model(self):
        """The DP-LaSE model (F, C) trained with these directions, rebuilt from the file; None
        when the set carries none (then ``walk --kind dp`` trains a correction for it)."""
        if not self.dp_state:
            return None
        st = self.dp_state
        try:
            dim, hidden = int(st["F.loc"].shape[0]), int(st["C.net.0.weight"].shape[0])
            dp = DPWalkModel(dim, 0, loc=st["F.loc"], scale=st["F.scale"], hidden=hidden)
            dp.load_state_dict(st)
        except (KeyError, RuntimeError) as e:
            raise LatentAtlasError(f"the directions file's DP-LaSE model does not fit ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0]})") from None
        if dim != self.vectors.shape[1]:
            raise LatentAtlasError(f"the directions file's DP-LaSE model is {dim}-d, its directions "
                                   f"{self.vectors.shape[1]}-d")
        return dp.eval()

    def __len__(self):
        return self.vectors.shape[0]

    def save(self, path) -> Path:
        """Write the set as .npz: unit ``vectors`` [K, D], ``sigmas`` [K], space, method, metadata."""
        path = Path(path)
        if path.suffix != ".npz":
            raise LatentAtlasError(f"directions file {path}: use a .npz name")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                dp = {f"dp.{k}": v.detach().cpu().numpy() for k, v in (self.dp_state or {}).items()}
                np.savez(fh, vectors=self.vectors.cpu().numpy(), sigmas=self.sigmas.cpu().numpy(),
                         space=np.asarray(self.space), method=np.asarray(self.method),
                         meta_json=np.asarray(json.dumps(self.meta, default=str)), **dp)
        return path

    @classmethod
    def load(cls, path) -> "Directions":
        """Read a directions .npz (validated: shapes, finite values, no pickle)."""
        z = read_npz(path, "directions", {"vectors": ("f", 2), "space": ("U", 0), "method": ("U", 0),
                                          "sigmas": ("f", 1), "meta_json": ("U", 0)})
        try:
            meta = json.loads(str(z["meta_json"]))
        except ValueError:
            raise LatentAtlasError(f"{path}: directions metadata is not valid JSON") from None
        if z["sigmas"].shape[0] != z["vectors"].shape[0]:
            raise LatentAtlasError(f"{path}: {z['vectors'].shape[0]} directions but {z['sigmas'].shape[0]} sigmas")
        if not isinstance(meta, dict):
            raise LatentAtlasError(f"{path}: directions metadata is not a JSON object")
        dp = {k[3:]: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in z.items()
              if k.startswith("dp.") and v.dtype.kind == "f"}
        return cls(torch.from_numpy(z["vectors"]).float(), str(z["space"]), str(z["method"]),
                   torch.from_numpy(z["sigmas"]).float(), meta, dp or None)

    def index(self, ref: int | str) -> int:
        """The index of direction ``ref``: an index, or a name the set records (``meta['names']``)."""
        if isinstance(ref, int):
            if not 0 <= ref < len(self):
                raise LatentAtlasError(f"direction index {ref} out of range (the set has {len(self)})")
            return ref
        names = [str(x) for x in self.meta.get("names") or []]
        if ref not in names:
            raise LatentAtlasError(f"no direction named {ref!r} in the set (its names: {', '.join(names) or 'none'})")
        return names.index(ref)

    def check_model(self, model):
        """Raise LatentAtlasError unless the set was computed for this model (weights, latent size)."""
        h = self.meta.get("weights_hash")
        # a generator refined for one image (pivotal tuning) keeps its base model's directions
        if h and h != model.weights_hash() and h != (model.info.extra or {}).get("base_weights_hash"):
            raise LatentAtlasError(f"directions were computed for weights {h}, not for model '{model.name}'")
        dim = model.w_dim if self.space == "w" else model.z_dim
        if self.vectors.shape[1] != dim:
            raise LatentAtlasError(f"directions have dimension {self.vectors.shape[1]}, model's {self.space} has {dim}")


def parse_direction_ref(ref: str) -> tuple[str, int | str]:
    """'dirs.npz:3' -> ('dirs.npz', 3); 'dirs.npz:Sneaker' -> ('dirs.npz', 'Sneaker') (a direction's
    name, resolved by ``Directions.index``)."""
    path, sep, idx = ref.rpartition(":")
    if not sep or not idx or not path.endswith(".npz"):
        raise LatentAtlasError(f"--direction {ref!r}: expected FILE.npz:INDEX or FILE.npz:NAME")
    return path, int(idx) if idx.isdigit() else idx


@torch.no_grad()
def _samples(model, n, seed, space="w"):
    z = model.sample_z(n, seed)
    return model.mapping(z) if space == "w" else z


def _sigmas(vectors, x):
    return ((x - x.mean(0)) @ vectors.t()).std(0)


def _finish(model, vectors, space, method, x, **meta) -> Directions:
    v = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return Directions(v.float().cpu(), space, method, _sigmas(v.float().cpu(), x.float().cpu()),
                      {"model": model.name, "weights_hash": model.weights_hash(), **meta})


def ganspace(model, *, k: int = 10, n: int = 20000, seed: int = 0, layer: str | None = None) -> Directions:
    """GANSpace: the k principal components of n mapped codes w (or of the named layer's
    activations for models without a mapping network), sigma = each component's standard deviation."""
    if layer is None:
        model.require_mapping("GANSpace in W (use --layer for Z-only models)")
        w = _samples(model, n, seed)
        c = w - w.mean(0)
        _, s, vt = torch.linalg.svd(c.double(), full_matrices=False)
        return _finish(model, vt[:k].float(), "w", "ganspace", w, n=n, seed=seed,
                       explained_variance=(s[:k] ** 2 / (n - 1)).tolist())
    space = "w" if model.has_mapping else "z"
    n = min(n, 5000)      # activations are large ([n, C*H*W]); randomized PCA on a subsample
    with torch.no_grad():
        lat = _samples(model, n, seed, space)
        acts = model.features_flat(layer, lat, batch_size=250)
    mu = acts.mean(0)
    _, _, V = torch.pca_lowrank(acts - mu, q=min(k + 10, min(acts.shape)), center=False, niter=4)
    coords = ((acts - mu) @ V[:, :k]).double()                          # [n, k]
    del acts
    coords = coords / coords.std(0)
    # least squares: latent ≈ mean + coords @ B  ->  direction j = B[j]
    B = torch.linalg.lstsq(coords, (lat.double() - lat.double().mean(0))).solution   # [k, D]
    return _finish(model, B.float(), space, "ganspace", lat, n=n, seed=seed, layer=layer)


def style_layers(model) -> list[str]:
    """Names of the synthesis layers that have a style affine (SeFa's ``layers``), from the input
    side to the output side; toRGB layers left out."""
    model.require_mapping("style layers")
    return [name for name, mod in model.G.synthesis.named_modules()
            if name and hasattr(mod, "affine") and "torgb" not in name.lower()]


def sefa(model, *, k: int = 10, layers: list[str] | None = None) -> Directions:
    """Closed-form factorisation over the style affine weights of the named synthesis layers
    (e.g. 'b4.conv1', 'b8.conv0'); default the first layer."""
    model.require_mapping("SeFa (style affine weights)")
    layers = layers or ["b4.conv1" if "b4" in model.layer_names else model.layer_names[0]]
    mats = []
    for name in layers:
        mod = model.G.synthesis
        try:
            for part in name.split("."):
                mod = getattr(mod, part)
            A = mod.affine.weight * mod.affine.weight_gain                  # [C_in, w_dim]
        except AttributeError:
            raise LatentAtlasError(f"SeFa: no style layer {name!r} (e.g. b4.conv1, b8.conv0, b8.torgb)") from None
        mats.append(A.detach() / A.detach().norm(dim=1, keepdim=True))
    A = torch.cat(mats).double()
    evals, evecs = torch.linalg.eigh(A.t() @ A)
    order = torch.argsort(evals, descending=True)[:k]
    w = _samples(model, 5000, 0)
    return _finish(model, evecs[:, order].t().float(), "w", "sefa", w, layers=layers,
                   eigenvalues=evals[order].tolist())


def _class_scores(model, n, seed, space, attributes=None):
    """Latents of n samples and their labels: the Fashion-MNIST classifier's predictions, or the
    most probable attribute of ``attributes`` (a ``metrics.attributes.Attributes``)."""
    if attributes is None:
        if not fashion_format(model):
            raise LatentAtlasError(f"supervised directions use the Fashion-MNIST classifier's predictions as labels; "
                                   f"model '{model.name}' is not a 32x32 grayscale model (give an attribute estimator)")
        classify = FashionFeatures(model.device).classify
    else:
        classify = attributes.classify
    lat, cls = [], []
    with torch.no_grad():
        for i in range(0, n, 500):
            z = model.sample_z(min(500, n - i), seed + i)
            x = model.mapping(z) if space == "w" else z
            imgs = model(z)
            lat.append(x.cpu())
            cls.append(classify(imgs).cpu())
    return torch.cat(lat), torch.cat(cls)


def mean_diff(model, *, n: int = 20000, seed: int = 0, class_a: int | None = None, class_b: int | None = None,
              attributes=None) -> Directions:
    """One direction per Fashion-MNIST class (class mean − mean of the rest), or a single
    class_a − class_b direction. Classes are the feature network's predictions, or the most
    probable attribute of ``attributes`` (then class indices index ``attributes.names``)."""
    space = "w" if model.has_mapping else "z"
    x, c = _class_scores(model, n, seed, space, attributes)
    labels = attributes.names if attributes is not None else CLASSES
    if class_a is not None:
        if (c == class_a).sum() < 10 or (class_b is not None and (c == class_b).sum() < 10):
            want = [labels[k] for k in (class_a, class_b) if k is not None and (c == k).sum() < 10]
            raise LatentAtlasError(f"mean-diff: fewer than 10 of {n} samples are read as {' or '.join(want)}")
        rest = x[c == class_b] if class_b is not None else x[c != class_a]
        v = (x[c == class_a].mean(0) - rest.mean(0))[None]
        names = [f"{labels[class_a]} - {labels[class_b] if class_b is not None else 'rest'}"]
    else:
        keep = [k for k in range(len(labels)) if (c == k).sum() >= 10]
        v = torch.stack([x[c == k].mean(0) - x[c != k].mean(0) for k in keep])
        names = [f"{labels[k]} - rest" for k in keep]
    classes = [class_a, class_b] if class_a is not None else None
    return _finish(model, v, space, "mean-diff", x, names=names, n=n, seed=seed, classes=classes)


def _logistic(xs: torch.Tensor, y: torch.Tensor, steps: int, l2: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest L2 logistic regression (LBFGS) of targets ``y`` [N, K] on standardised ``xs``:
    weights [K, D] and biases [K]."""
    W = torch.zeros(y.shape[1], xs.shape[1], requires_grad=True)
    b = torch.zeros(y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ W.t() + b, y) + l2 * W.square().sum()
        loss.backward()
        return loss
    opt.step(closure)
    return W.detach(), b.detach()


@dataclass
class Whitening:
    """The model's latent distribution as an affine map to isotropic coordinates:
    ``white = (x - mean) @ inv_sqrt``, ``x - mean = white @ sqrt`` (Σ^∓½ from the samples'
    covariance, eigenvalues floored at 1e-6 of the largest)."""
    mean: torch.Tensor
    sqrt: torch.Tensor
    inv_sqrt: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor) -> "Whitening":
        x = x.double()
        mu = x.mean(0)
        evals, evecs = torch.linalg.eigh(torch.cov((x - mu).t()))
        evals = evals.clamp_min(float(evals.max()) * 1e-6)
        return cls(mu.float(), (evecs * evals.sqrt()) @ evecs.t(), (evecs * evals.rsqrt()) @ evecs.t())

    def __call__(self, x):
        return ((x.double() - self.mean.double()) @ self.inv_sqrt).float()

    def displacement(self, normal_white: torch.Tensor) -> torch.Tensor:
        """A step along a normal found in the isotropic coordinates, in latent units (Σ^½ n)."""
        return (normal_white.double() @ self.sqrt).float()


L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def _boundary_fit(xw: torch.Tensor, y: torch.Tensor, steps: int, seed: int, holdout: float = 0.2):
    """The logistic boundary in isotropic coordinates with the strongest L2 of ``L2_GRID`` whose
    held-out accuracy is within one standard error of the best (labelled latents are often
    separable, and a barely regularised boundary then follows whichever narrow gap separates them;
    in the limit of a strong L2 the normal tends to the classes' mean difference). Returns the
    weights [K, D], biases [K], the held-out accuracy per boundary and the L2 chosen."""
    g = torch.Generator().manual_seed(seed + 77)
    perm = torch.randperm(len(xw), generator=g)
    n_test = max(int(len(xw) * holdout), 1)
    test, train = perm[:n_test], perm[n_test:]
    fits = []
    for l2 in L2_GRID:
        W, b = _logistic(xw[train], y[train], steps, l2)
        acc = (((xw[test] @ W.t() + b) > 0).float() == y[test]).float().mean(0)
        fits.append((l2, acc))
    best = max(float(a.mean()) for _, a in fits)
    se = (best * (1 - best) / n_test) ** 0.5
    l2, acc = [f for f in fits if float(f[1].mean()) >= best - se][-1]
    W, b = _logistic(xw, y, steps, l2)                       # refitted on every labelled latent
    return W, b, acc, l2


def linear_classifier(model, *, n: int = 20000, seed: int = 0, steps: int = 300) -> Directions:
    """Logistic-regression probe (one-vs-rest, L2) per class on standardised latents; the
    direction is the weight vector mapped back to latent units."""
    space = "w" if model.has_mapping else "z"
    x, c = _class_scores(model, n, seed, space)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    keep = [k for k in range(10) if (c == k).sum() >= 10]
    y = torch.stack([(c == k).float() for k in keep], 1)
    W, b = _logistic(xs, y, steps)
    acc = (((xs @ W.t() + b) > 0).float() == y).float().mean(0)
    return _finish(model, (W / sd), space, "linear-classifier", x,
                   names=[f"{CLASSES[k]} vs rest" for k in keep], train_accuracy=acc.tolist(), n=n, seed=seed)


def bundled_attributes(model):
    """The bundled Fashion-MNIST classifier as an attribute estimator, for models of that format;
    None for any other model (which needs the user's labels)."""
    return ClassifierAttributes(FashionFeatures(model.device)) if fashion_format(model) else None


@torch.no_grad()
def _attribute_probs(model, n, seed, space, attributes):
    """Latents of n samples and the estimator's attribute probabilities [n, A]."""
    lat, probs = [], []
    for i in range(0, n, 500):
        z = model.sample_z(min(500, n - i), seed + i)
        lat.append((model.mapping(z) if space == "w" else z).cpu())
        probs.append(attributes.probs(model(z).clamp(-1, 1)).float().cpu())
    return torch.cat(lat), torch.cat(probs)


def boundary(model, *, attributes=None, n: int = 20000, seed: int = 0, steps: int = 300,
             condition_on: list[str] | None = None, extreme: float = 0.1, holdout: float = 0.2) -> Directions:
    """InterFaceGAN's boundaries: per attribute, the samples the estimator scores highest and
    lowest for it (the top and bottom ``extreme`` share of n by the logit of its probability — the
    paper's selection, which keeps the labels clear) are separated by a linear boundary in W (Z for
    Z-only models) whitened by the n samples' covariance (isotropic, as InterFaceGAN's Z), an L2
    logistic regression whose L2 is chosen on a ``holdout`` share (its accuracy saved); the
    normal, as a displacement Σ^½ n in latent units, is the direction, named by the attribute. ``attributes``: any attribute estimator (a
    ``LinearProbe`` fitted on the user's labelled images; the Fashion-MNIST classifier when None).
    ``condition_on``: attribute names every other direction is made orthogonal to (InterFaceGAN's
    conditional manipulation: moving along it leaves those boundaries' sides unchanged)."""
    space = "w" if model.has_mapping else "z"
    if attributes is None:
        attributes = bundled_attributes(model)
        if attributes is None:
            raise LatentAtlasError(f"boundary: model '{model.name}' has no built-in attribute estimator: give "
                                   "labelled images (--labels labels.csv)")
        source = "fashion classifier"
    else:
        source = "labels probe"
    if not 0 < extreme <= 0.5:
        raise LatentAtlasError(f"boundary: extreme share {extreme} must lie in (0, 0.5]")
    x, p = _attribute_probs(model, n, seed, space, attributes)
    names = list(attributes.names)
    m = max(int(n * extreme), 10)
    white = Whitening.of(x)
    normals, acc, used, l2s = [], [], [], []
    for k in range(p.shape[1]):
        score = torch.logit(p[:, k].clamp(1e-6, 1 - 1e-6))
        order = score.argsort()
        idx = torch.cat([order[-m:], order[:m]])
        y = torch.cat([torch.ones(m), torch.zeros(m)])
        W, b, a, l2 = _boundary_fit(white(x[idx]), y[:, None], steps, seed + k, holdout)
        acc.append(float(a[0]))
        l2s.append(l2)
        # the normal found in isotropic coordinates, as a displacement in latent units (Σ^½ n):
        # a step moves the latent in proportion to the distribution's own spread. (The hyperplane's
        # normal in raw latent units points along W's narrowest directions, which barely change
        # the image: on fashion-stylegan2 its +2..16 sigma edits flipped 0-2% of Sneaker/Sandal
        # test inversions)
        d = white.displacement(W[0])
        normals.append(d / d.norm().clamp_min(1e-12))
        used.append(m)
    normals = torch.stack(normals)
    cond = [s for s in (condition_on or []) if s]
    unknown = [s for s in cond if s not in names]
    if unknown:
        raise LatentAtlasError(f"--condition-on {', '.join(unknown)}: not among the attributes ({', '.join(names)})")
    if cond:
        basis = []                                      # orthonormal basis of the conditions' normals
        for s in cond:
            v = normals[names.index(s)].clone()
            for u in basis:
                v = v - (v @ u) * u
            if v.norm() > 1e-6:
                basis.append(v / v.norm())
        rows = []
        for i, name in enumerate(names):
            v = normals[i].clone()
            if name not in cond:
                for u in basis:
                    v = v - (v @ u) * u
            rows.append(v)
        normals = torch.stack(rows)
    return _finish(model, normals, space, "boundary", x, names=names, heldout_accuracy=acc, per_side=used,
                   extreme=extreme, n=n, seed=seed, condition_on=cond or None, attributes=source, l2=l2s,
                   coordinates="whitened by the model's latent covariance")


def from_labelled_codes(model, codes: torch.Tensor, labels: list[str], *, method: str = "mean-diff",
                        steps: int = 300, seed: int = 0) -> Directions:
    """Directions from the user's labelled images *inverted* (the issue's second source of
    labelled latents): ``codes`` [N, w_dim] (W+ inversions averaged over their rows; z for Z-only
    models) with their ``labels``. Per label: ``mean-diff`` (its codes' mean minus the rest's) or
    ``boundary`` (L2 logistic regression in coordinates whitened by the model's latent covariance,
    its L2 chosen on held-out codes, the normal as a displacement Σ^½ n). σ is the spread of the
    model's own samples along each direction, as for every set."""
    space = "w" if model.has_mapping else "z"
    names = sorted(set(labels))
    if len(names) < 2:
        raise LatentAtlasError(f"directions from labelled images need at least two labels, got {names}")
    y = torch.tensor([[float(lab == n) for n in names] for lab in labels])
    small = [n for n, c in zip(names, y.sum(0).tolist()) if c < 5]
    if small:
        raise LatentAtlasError(f"directions from labelled images: fewer than 5 images labelled {', '.join(small)}")
    codes = codes.float().cpu()
    x = _samples(model, 20000 if method == "boundary" else 5000, seed, space).cpu()
    if method == "mean-diff":
        vectors = torch.stack([codes[y[:, k] == 1].mean(0) - codes[y[:, k] == 0].mean(0) for k in range(len(names))])
        extra = {}
    elif method == "boundary":
        white = Whitening.of(x)
        W, b, acc, l2 = _boundary_fit(white(codes), y, steps, seed)
        vectors = white.displacement(W)
        extra = {"heldout_accuracy": acc.tolist(), "l2": l2, "coordinates": "whitened by the model's latent covariance"}
    else:
        raise LatentAtlasError(f"directions from labelled images: method {method!r} is mean-diff or boundary")
    return _finish(model, vectors, space, method, x, names=names, source="inverted labelled images",
                   images=len(labels), per_label=[int(v) for v in y.sum(0).tolist()], **extra)


def dplase(model, *, k: int = 5, layer: str | None = None, steps: int = 1500, seed: int = 0, progress=False):
    """DP-LaSE: k directions learned with a density model F and a correction C, the generator split
    at ``layer`` (default the second named layer) for the variation term, so walks stay where the
    generator's samples are. F and C are saved with the directions (``walk --kind dp`` uses them)."""
    layer = layer or (model.layer_names[1] if len(model.layer_names) > 1 else None)
    if layer is None:
        raise LatentAtlasError(f"DP-LaSE needs a named split layer; model '{model.name}' has none")
    space = "w" if model.has_mapping else "z"
    cfg = DPConfig(steps=steps, n_directions=k, layer=layer, seed=seed)
    dp, log = train_dp_lase(model, cfg, space=space, progress=progress)
    G = dp.Gamma.detach().t()
    x = _samples(model, 5000, seed, space)
    d = _finish(model, G, space, "dplase", x, layer=layer, steps=steps, lam=cfg.lam, zeta=cfg.zeta,
                var_batch=cfg.var_batch, var_pool=cfg.var_pool,
                orthogonality_error=float((dp.Gamma.t() @ dp.Gamma - torch.eye(k)).norm().detach()),
                train_seconds=round(log.seconds, 1), final_losses=log.losses[-1])
    d.dp_state = {k_: v.detach().cpu() for k_, v in dp.state_dict().items() if not k_.startswith("Gamma")}
    d.dp_model, d.log = dp, log
    return d


def diamond_direction(model, *, n_proto: int = 64, seed: int = 0) -> Directions:
    """The realism direction in Z: from the mean of the samples toward the mean protoimage."""
    zp = cached_mean_protoimage(model, n_proto, 200, resolve_settings(model), 100, seed)
    z = model.sample_z(5000, seed)
    return _finish(model, zp[None].cpu(), "z", "diamond", z, n_proto=n_proto)


METHODS = {"ganspace": ganspace, "sefa": sefa, "dplase": dplase, "mean-diff": mean_diff,
           "linear-classifier": linear_classifier, "boundary": boundary, "diamond": diamond_direction}


def compute_directions(model, method: str, **kw) -> Directions:
    """Directions by a registered ``method`` (see ``METHODS``: ganspace, sefa, dplase, mean-diff,
    linear-classifier, diamond) with that method's keyword options."""
    if method not in METHODS:
        raise LatentAtlasError(f"unknown direction method {method!r}; choose from {', '.join(METHODS)}")
    return METHODS[method](model, **kw)


WEAK_EFFECT = 0.05      # a largest probability change below this names the direction "weak: ..."


@torch.no_grad()
def name_directions(model, dirs: Directions, attributes, *, n: int = 500, seed: int = 0, amount: float = 2.0,
                    source: str = "attribute estimator") -> Directions:
    """Names for unsupervised directions (GANSpace, SeFa, DP-LaSE ...) from what they do: ``n``
    of the model's samples moved to ±``amount`` σ along each direction and read by the attribute
    estimator (the user's labels probe, or the bundled classifier); the effect of a direction is
    each attribute's mean probability at +amount minus at −amount. The name is the attribute that
    rises most and the one that falls most ("Sandal+ Sneaker-"), prefixed "weak: " when no
    probability moves by ``WEAK_EFFECT``; the effects are kept with the set (``meta['effects']``,
    ``directions --show``)."""
    space = dirs.space
    want = "w" if model.has_mapping else "z"
    if space != want:
        raise LatentAtlasError(f"naming reads {want} directions on model '{model.name}', the set holds {space}")
    z = model.sample_z(n, seed + 4_321)
    base = model.mapping(z) if space == "w" else z
    names, effects = [], []
    for i in range(len(dirs)):
        v = dirs.vectors[i].to(model.device) * float(dirs.sigmas[i]) * amount
        p = []
        for sign in (1, -1):
            lat = base + sign * v
            probs = [attributes.probs((model.synthesis(lat[j:j + 250]) if space == "w" else
                                       model(lat[j:j + 250])).clamp(-1, 1)).float().cpu()
                     for j in range(0, n, 250)]
            p.append(torch.cat(probs).mean(0))
        eff = p[0] - p[1]
        up, down = int(eff.argmax()), int(eff.argmin())
        weak = "weak: " if float(eff.abs().max()) < WEAK_EFFECT else ""
        names.append(weak + f"{attributes.names[up]}+ {attributes.names[down]}-" if eff[up] > 0 > eff[down]
                     else f"{attributes.names[up if abs(eff[up]) >= abs(eff[down]) else down]}"
                          f"{'+' if abs(eff[up]) >= abs(eff[down]) else '-'}")
        effects.append({a: round(float(e), 4) for a, e in zip(attributes.names, eff)})
    meta = {**dirs.meta, "names": names, "effects": effects, "named_with": source, "named_at_sigma": amount,
            "named_on": n, "component_names": [f"{dirs.method} {i}" for i in range(len(dirs))]}
    return Directions(dirs.vectors, dirs.space, dirs.method, dirs.sigmas, meta, dirs.dp_state)


def effects_table(dirs: Directions, top: int = 3) -> str:
    """The set's directions, their names and measured effects (``directions --show``)."""
    names = dirs.meta.get("names") or [f"{dirs.method} {i}" for i in range(len(dirs))]
    effects = dirs.meta.get("effects")
    lines = [f"{len(dirs)} {dirs.method} directions in {dirs.space}"
             + (f", named with the {dirs.meta.get('named_with')} at ±{dirs.meta.get('named_at_sigma')} sigma "
                f"on {dirs.meta.get('named_on')} samples" if effects else "")]
    for i, name in enumerate(names):
        line = f"{i:>3}  {name:<28} sigma {float(dirs.sigmas[i]):.3f}"
        if effects:
            e = sorted(effects[i].items(), key=lambda kv: -abs(kv[1]))[:top]
            line += "  " + ", ".join(f"{a} {v:+.3f}" for a, v in e)
        lines.append(line)
    return "\n".join(lines)


def direction_set(model, method: str, kw: dict, dp_steps: int) -> tuple:
    """A direction set and the DP-LaSE density model its walks use (DP-LaSE's own discovery
    trains one; for the others one is trained along the set's directions): (Directions, model)."""
    d = compute_directions(model, method, **kw)
    dp_model = getattr(d, "dp_model", None)
    if dp_model is None:
        dp_model, _ = train_dp_lase(model, DPConfig(steps=dp_steps), space=d.space, directions=d.vectors,
                                    sigmas=d.sigmas)
    return d, dp_model


def direction_set_task(worker, method: str, kw: dict, dp_steps: int):
    """Pool task: ``direction_set`` on the worker's model; a refusal comes back as its message."""
    try:
        return direction_set(worker.model, method, kw, dp_steps)
    except LatentAtlasError as e:
        return str(e)


def direction_sets(model, plans: list, dp_steps: int, *, pool=None) -> dict:
    """``direction_set`` for each (method, kwargs) of ``plans``, one task per set on ``pool``'s
    workers when given (the results do not depend on where they ran): {method: (Directions,
    density model)}, or {method: LatentAtlasError} for a set the model refuses."""
    tasks = ((method, (method, kw, dp_steps), {}) for method, kw in plans)
    runs = pool.imap(direction_set_task, tasks) if pool is not None else \
        ((meta, direction_set_task(SimpleNamespace(model=model), *a)) for meta, a, _ in tasks)
    return {method: LatentAtlasError(r) if isinstance(r, str) else r for method, r in runs}
