"""TensorFlow-era network pickles (NVlabs/stylegan, NVlabs/stylegan2, NVlabs/stylegan2-ada TF),
read without TensorFlow and without executing anything.

Such a file is a pickle of ``dnnlib.tflib.network.Network`` objects, usually the tuple
``(G, D, Gs)``. Each network's pickled state is a dict: ``version``, ``name``,
``static_kwargs`` (its build arguments), ``components`` (sub-networks: ``mapping``,
``synthesis``), ``build_module_src`` (the build code *as text*: never executed, never
imported), ``build_func_name`` and ``variables``, a list of ``(name, numpy array)``. The
restricted unpickler of :mod:`.nvidia` resolves ``Network`` to :class:`TFNetworkRecord` and
numpy arrays to plain numeric arrays; every other global is refused.

``Gs`` (the moving average of G) is the generator, as upstream uses it; ``D`` where present.
TF layouts differ from ours in the usual ways: dense weights are ``[in, out]``, convolutions
``[k, k, in, out]``, an up-sampling convolution's kernel is stored for a transposed
convolution (spatially flipped), modulation biases are stored minus one, and the noise
inputs are variables ``noise{i}`` of the synthesis network.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import LatentAtlasError
from ...validate import number
from ..interface import ModelInfo, StyleGANModel
from ..state import build_checked
from ..stylegan1 import StyleGAN1Config, StyleGAN1Discriminator, StyleGAN1Generator
from ..stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator
from .nvidia import NDArrayRecord, read_network_pickle

FAMILY = "TensorFlow network pickle"
MAX_VARIABLES = 100_000
_SCALARS = (str, int, float, bool, type(None))


@dataclass
class TFNetworkRecord:
    """What one pickled ``dnnlib.tflib.network.Network`` holds (its ``__getstate__`` dict)."""
    version: int = 0
    name: str = ""
    static_kwargs: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)
    build_func_name: str = ""
    build_module_src: str = field(default="", repr=False)
    variables: dict = field(default_factory=dict, repr=False)

    def __setstate__(self, state):
        if not isinstance(state, dict) or "variables" not in state or "static_kwargs" not in state:
            raise LatentAtlasError("a TensorFlow Network in the pickle has no variables/static_kwargs state")
        self.version = number(state.get("version", 0), "TF network 'version'", 0, 100, integer=True)
        self.name = str(state.get("name", ""))
        self.build_func_name = str(state.get("build_func_name", ""))
        self.build_module_src = str(state.get("build_module_src", ""))     # text; never executed
        kw = state["static_kwargs"]
        if not isinstance(kw, dict):
            raise LatentAtlasError(f"TF network {self.name}: static_kwargs is a {type(kw).__name__}, not a dict")
        self.static_kwargs = {str(k): _plain_kwarg(v, f"{self.name}.static_kwargs[{k!r}]") for k, v in kw.items()}
        comps = state.get("components") or {}
        if not isinstance(comps, dict) or not all(isinstance(c, TFNetworkRecord) for c in comps.values()):
            raise LatentAtlasError(f"TF network {self.name}: its components are not networks")
        self.components = {str(k): v for k, v in comps.items()}
        var = state["variables"]
        if not isinstance(var, (list, tuple)) or len(var) > MAX_VARIABLES:
            raise LatentAtlasError(f"TF network {self.name}: variables is not a list of (name, array)")
        out = {}
        for item in var:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise LatentAtlasError(f"TF network {self.name}: a variable is not a (name, array) pair")
            v = item[1]
            arr = v.array if isinstance(v, NDArrayRecord) else np.asarray(v) if isinstance(v, (int, float, np.generic)) else None
            if arr is None or arr.dtype.kind not in "biuf":
                raise LatentAtlasError(f"TF network {self.name}: variable {item[0]!r} is not a numeric array")
            out[item[0]] = arr
        self.variables = out

    def all_variables(self, prefix: str = "") -> dict:
        """Own variables and the components', named ``component/name`` as TF scopes them."""
        out = {prefix + k: v for k, v in self.variables.items()}
        for name, comp in self.components.items():
            out.update(comp.all_variables(f"{prefix}{name}/"))
        return out

    def kwarg(self, name, default=None):
        v = self.static_kwargs.get(name)
        return default if v is None else v


def _plain_kwarg(v, where: str, depth: int = 0):
    if isinstance(v, NDArrayRecord):
        v = v.array.tolist() if v.array.size <= 64 else None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, _SCALARS):
        return v
    if isinstance(v, (list, tuple)) and depth < 4 and len(v) <= 1024:
        return [_plain_kwarg(x, where, depth + 1) for x in v]
    if isinstance(v, dict) and depth < 4 and len(v) <= 1024:
        return {str(k): _plain_kwarg(x, where, depth + 1) for k, x in v.items()}
    raise LatentAtlasError(f"{where}: a {type(v).__name__} value, not a plain build argument")


ALLOWED = {("dnnlib.tflib.network", "Network"): TFNetworkRecord}


def read(path_or_bytes, source: str):
    """The pickle's top-level object, TF networks as :class:`TFNetworkRecord`."""
    return read_network_pickle(path_or_bytes, source, extra=ALLOWED)


def detect(obj) -> bool:
    nets = obj if isinstance(obj, (tuple, list)) else (obj,)
    return bool(nets) and all(isinstance(n, TFNetworkRecord) for n in nets)


def networks(obj, source: str) -> tuple[TFNetworkRecord, TFNetworkRecord | None]:
    """(generator, discriminator) of a TF pickle: ``Gs`` of ``(G, D, Gs)``; a lone network is
    taken as the generator."""
    nets = list(obj) if isinstance(obj, (tuple, list)) else [obj]
    if len(nets) == 3:
        return nets[2], nets[1]
    if len(nets) == 1:
        return nets[0], None
    raise LatentAtlasError(f"{source}: a TF pickle of {len(nets)} networks (expected G, D, Gs)")


# ----------------------------------------------------------------------------- StyleGAN2 (TF)

def _t(a, *perm):
    return torch.from_numpy(np.array(np.asarray(a, np.float32).transpose(*perm), order="C"))


def _dense(sd, ours: str, var: dict, scope: str):
    sd[f"{ours}.weight"] = _t(var[f"{scope}/weight"], 1, 0)
    if f"{scope}/bias" in var:
        sd[f"{ours}.bias"] = _t(var[f"{scope}/bias"], 0)


def _conv(sd, ours: str, var: dict, scope: str, flip: bool = False):
    w = np.asarray(var[f"{scope}/weight"], np.float32)
    if flip:        # stored for a transposed convolution
        w = w[::-1, ::-1]
    sd[f"{ours}.weight"] = _t(w, 3, 2, 0, 1)
    if f"{scope}/bias" in var:
        sd[f"{ours}.bias"] = _t(var[f"{scope}/bias"], 0)


def _need(var: dict, names, source: str, what: str):
    missing = [n for n in names if n not in var]
    if missing:
        raise LatentAtlasError(f"{source}: {what}: variable {missing[0]!r} missing")


def _sg2_mapping(Gs: TFNetworkRecord, var: dict, sd: dict, source: str) -> dict:
    if "mapping/LabelConcat/weight" in var:
        raise LatentAtlasError(f"{source}: a conditional NVlabs/stylegan2 generator (LabelConcat labels) is not "
                               f"supported; StyleGAN2-ADA's conditional files are")
    n = 0
    while f"mapping/Dense{n}/weight" in var:
        _dense(sd, f"mapping.fc{n}", var, f"mapping/Dense{n}")
        n += 1
    if n == 0:
        raise LatentAtlasError(f"{source}: the mapping network has no Dense0 layer")
    _need(var, ["dlatent_avg"], source, "generator")
    sd["mapping.w_avg"] = _t(np.asarray(var["dlatent_avg"]).reshape(-1), 0)
    embed = None
    if "mapping/LabelEmbed/weight" in var:
        _dense(sd, "mapping.embed", var, "mapping/LabelEmbed")
        embed = int(var["mapping/LabelEmbed/weight"].shape[1])
    act = Gs.kwarg("mapping_nonlinearity", "lrelu")
    if act not in ("lrelu", "linear"):
        raise LatentAtlasError(f"{source}: mapping activation {act!r} is not supported (lrelu or linear)")
    c_dim = int(var["mapping/LabelEmbed/weight"].shape[0]) if embed else 0
    z_dim = int(var["mapping/Dense0/weight"].shape[0]) - (embed or 0)
    return dict(z_dim=z_dim, w_dim=int(var[f"mapping/Dense{n - 1}/weight"].shape[1]), c_dim=c_dim,
                mapping_layers=n, mapping_activation=act,
                mapping_lr_mul=number(Gs.kwarg("mapping_lrmul", 0.01), "mapping_lrmul", 1e-6, 100.0, where=source),
                embed_features=embed, layer_features=int(var["mapping/Dense0/weight"].shape[1]) if n > 1 else None)


def _modconv(sd, ours: str, var: dict, scope: str, noise: str | None, flip: bool = False):
    _conv(sd, ours, var, scope, flip)
    sd[f"{ours}.affine.weight"] = _t(var[f"{scope}/mod_weight"], 1, 0)
    sd[f"{ours}.affine.bias"] = _t(var[f"{scope}/mod_bias"], 0) + 1      # TF adds the 1 at run time
    if noise is not None:
        if f"{scope}/noise_strength" in var:
            sd[f"{ours}.noise_strength"] = torch.tensor(float(np.asarray(var[f"{scope}/noise_strength"]).reshape(())))
            sd[f"{ours}.noise_const"] = _t(np.asarray(var[noise])[0, 0], 0, 1)
        else:                                            # use_noise=False: no noise at all
            res = int(scope.split("x")[0].split("/")[-1])
            sd[f"{ours}.noise_strength"] = torch.zeros(())
            sd[f"{ours}.noise_const"] = torch.zeros(res, res)


def _sg2_synthesis(Gs: TFNetworkRecord, var: dict, sd: dict, source: str) -> dict:
    if any(re.match(r"synthesis/ToRGB_lod\d+/", k) for k in var):
        raise LatentAtlasError(f"{source}: a StyleGAN2 'revised' synthesis (configs A-D, ToRGB_lod layers) is not "
                               f"supported; configs E/F (G_synthesis_stylegan2) and StyleGAN2-ADA are")
    _need(var, ["synthesis/4x4/Const/const", "synthesis/4x4/Conv/weight"], source, "synthesis")
    top = 2
    while f"synthesis/{2 ** (top + 1)}x{2 ** (top + 1)}/Conv1/weight" in var:
        top += 1
    res = 2 ** top
    declared = Gs.kwarg("resolution", res)
    if int(declared) != res:
        raise LatentAtlasError(f"{source}: static_kwargs say resolution {declared}, the variables go to {res}")
    sd["synthesis.b4.const"] = _t(np.asarray(var["synthesis/4x4/Const/const"])[0], 0, 1, 2)
    _modconv(sd, "synthesis.b4.conv1", var, "synthesis/4x4/Conv", "synthesis/noise0")
    rgb = {r for r in [2 ** i for i in range(2, top + 1)] if f"synthesis/{r}x{r}/ToRGB/weight" in var}
    skip_conv = any(f"synthesis/{2 ** i}x{2 ** i}/Skip/weight" in var for i in range(3, top + 1))
    arch = "resnet" if skip_conv else "skip" if 4 in rgb else "orig"
    for r in rgb:
        _modconv(sd, f"synthesis.b{r}.torgb", var, f"synthesis/{r}x{r}/ToRGB", None)
    channels = {4: int(var["synthesis/4x4/Conv/weight"].shape[3])}
    for i in range(3, top + 1):
        r, s = 2 ** i, f"synthesis/{2 ** i}x{2 ** i}"
        _need(var, [f"{s}/Conv0_up/weight", f"{s}/Conv1/weight"], source, "synthesis")
        _modconv(sd, f"synthesis.b{r}.conv0", var, f"{s}/Conv0_up", f"synthesis/noise{2 * i - 5}", flip=True)
        _modconv(sd, f"synthesis.b{r}.conv1", var, f"{s}/Conv1", f"synthesis/noise{2 * i - 4}")
        if arch == "resnet":
            _conv(sd, f"synthesis.b{r}.skip", var, f"{s}/Skip", flip=True)
        channels[r] = int(var[f"{s}/Conv1/weight"].shape[3])
    if Gs.kwarg("nonlinearity", "lrelu") != "lrelu":
        raise LatentAtlasError(f"{source}: synthesis nonlinearity {Gs.kwarg('nonlinearity')!r} is not supported")
    fir = Gs.kwarg("resample_kernel", [1, 3, 3, 1])
    clamp = Gs.kwarg("conv_clamp")
    return dict(img_resolution=res, img_channels=int(var[f"synthesis/{res}x{res}/ToRGB/weight"].shape[3]),
                channels=channels, architecture=arch, fir=tuple(fir or (1, 1)),
                conv_clamp=float(clamp) if clamp is not None else None)


def _sg2_discriminator(D: TFNetworkRecord, res: int, source: str) -> tuple[dict, dict]:
    var, sd = D.all_variables(), {}
    top = int(math.log2(res))
    has_rgb = {2 ** i for i in range(2, top + 1) if f"{2 ** i}x{2 ** i}/FromRGB/weight" in var}
    if any(re.match(r"FromRGB_lod\d+/", k) for k in var):
        raise LatentAtlasError("a StyleGAN (v1-style) progressive discriminator (FromRGB_lod layers)")
    resnet = any(f"{2 ** i}x{2 ** i}/Skip/weight" in var for i in range(3, top + 1))
    arch = "resnet" if resnet else "skip" if 4 in has_rgb else "orig"
    ch = {}
    for r in has_rgb:
        _conv(sd, f"b{r}.fromrgb" if r > 4 else "b4.fromrgb", var, f"{r}x{r}/FromRGB")
    for i in range(top, 2, -1):
        r, s = 2 ** i, f"{2 ** i}x{2 ** i}"
        _need(var, [f"{s}/Conv0/weight", f"{s}/Conv1_down/weight"], source, "discriminator")
        _conv(sd, f"b{r}.conv0", var, f"{s}/Conv0")
        _conv(sd, f"b{r}.conv1", var, f"{s}/Conv1_down")
        if resnet:
            _conv(sd, f"b{r}.skip", var, f"{s}/Skip")
        ch[r] = int(var[f"{s}/Conv0/weight"].shape[3])
    _need(var, ["4x4/Conv/weight", "4x4/Dense0/weight", "Output/weight"], source, "discriminator")
    _conv(sd, "b4.conv", var, "4x4/Conv")
    _dense(sd, "b4.fc", var, "4x4/Dense0")
    _dense(sd, "b4.out", var, "Output")
    ch[4] = int(var["4x4/Conv/weight"].shape[3])
    mbstd = int(var["4x4/Conv/weight"].shape[2]) - ch[4]
    ada = D.build_func_name.endswith("D_main")
    group = D.kwarg("mbstd_group_size", None if ada else 4)     # D_main's default: the whole batch
    kw = dict(d_channels=ch, d_architecture=arch, mbstd_channels=mbstd, mbstd_group=int(group or 0),
              d_conv_clamp=float(D.kwarg("conv_clamp")) if D.kwarg("conv_clamp") is not None else None)
    if "LabelEmbed/weight" in var:
        _dense(sd, "mapping.embed", var, "LabelEmbed")
        n = 0
        while f"Mapping{n}/weight" in var:
            _dense(sd, f"mapping.fc{n}", var, f"Mapping{n}")
            n += 1
        kw.update(d_cmap_dim=int(var["Output/weight"].shape[1]), d_mapping_layers=n,
                  d_mapping_lr_mul=float(D.kwarg("mapping_lrmul", 0.1)))
    elif int(var["Output/weight"].shape[1]) != 1:
        raise LatentAtlasError("a conditional NVlabs/stylegan2 discriminator (one output per label)")
    return kw, sd


def load_stylegan2(Gs: TFNetworkRecord, D: TFNetworkRecord | None, path) -> StyleGANModel:
    source = str(path)
    var, sd = Gs.all_variables(), {}
    kw = {**_sg2_mapping(Gs, var, sd, source), **_sg2_synthesis(Gs, var, sd, source)}
    warnings, d_sd = [], None
    if D is not None:
        try:
            d_kw, d_sd = _sg2_discriminator(D, kw["img_resolution"], source)
            kw.update(d_kw)
        except LatentAtlasError as e:
            warnings.append(f"discriminator not loaded: {e}")
            d_sd = None
    if d_sd is None:
        kw["d_conv_clamp"] = kw["conv_clamp"]
    cfg = StyleGAN2Config(**kw)
    G, Dm = _build(cfg, StyleGAN2Generator, StyleGAN2Discriminator, sd, d_sd, path, warnings)
    return StyleGANModel(_info(path, Gs, "stylegan2", warnings), G, Dm)


def _build(cfg, g_cls, d_cls, sd: dict, d_sd: dict | None, path, warnings: list):
    """The generator from ``sd`` and, when its tensors were read, the discriminator (one that does
    not build is dropped with a warning, never blocking the generator)."""
    G = build_checked(lambda: g_cls(cfg), sd, f"{path} (Gs)")
    D = None
    if d_sd is not None:
        try:
            D = build_checked(lambda: d_cls(cfg), d_sd, f"{path} (D)")
        except LatentAtlasError as e:
            warnings.append(f"discriminator not loaded: {e}")
    return G, D


# ----------------------------------------------------------------------------- StyleGAN (v1, TF)

# G_style's own sampling defaults (NVlabs/stylegan), recorded when the file does not set them
V1_TRUNCATION = {"psi": 0.7, "cutoff": 8}


def _v1_refuse(net: TFNetworkRecord, source: str, checks: dict):
    for name, (want, why) in checks.items():
        have = net.kwarg(name, want)
        if have != want:
            raise LatentAtlasError(f"{source}: StyleGAN (v1) with {name}={have!r} is not supported ({why})")


def _v1_epilogue(sd, ours: str, var: dict, scope: str, noise: str | None):
    if f"{scope}/Noise/weight" in var:
        sd[f"{ours}.noise_weight"] = _t(var[f"{scope}/Noise/weight"], 0)
        sd[f"{ours}.noise_const"] = _t(np.asarray(var[noise])[0, 0], 0, 1)
    sd[f"{ours}.bias"] = _t(var[f"{scope}/bias"], 0)
    _dense(sd, f"{ours}.affine", var, f"{scope}/StyleMod")


def _fused_min_res(net: TFNetworkRecord) -> int:
    fused = net.kwarg("fused_scale", "auto")
    return {"auto": 128, True: 8, False: 1 << 20}.get(fused, 128)


def _v1_discriminator(D: TFNetworkRecord, top: int, source: str) -> tuple[dict, dict, float]:
    _v1_refuse(D, source, {"nonlinearity": ("lrelu", "LeakyReLU only"), "use_wscale": (True, "equalised lr only"),
                           "label_size": (0, "conditional D_basic")})
    var, sd = D.all_variables(), {}
    ch = {}
    for i in range(2, top + 1):
        r, lod = 2 ** i, top - i
        _need(var, [f"FromRGB_lod{lod}/weight"], source, "discriminator")
        _conv(sd, f"fromrgb{r}.conv", var, f"FromRGB_lod{lod}")
        ch[r] = int(var[f"FromRGB_lod{lod}/weight"].shape[3])
        if i > 2:
            _need(var, [f"{r}x{r}/Conv0/weight", f"{r}x{r}/Conv1_down/weight"], source, "discriminator")
            _conv(sd, f"b{r}.conv0", var, f"{r}x{r}/Conv0")
            _conv(sd, f"b{r}.conv1", var, f"{r}x{r}/Conv1_down")
    _need(var, ["4x4/Conv/weight", "4x4/Dense0/weight", "4x4/Dense1/weight"], source, "discriminator")
    _conv(sd, "conv", var, "4x4/Conv")
    _dense(sd, "fc", var, "4x4/Dense0")
    _dense(sd, "out", var, "4x4/Dense1")
    group = int(D.kwarg("mbstd_group_size", 4))
    mb = int(var["4x4/Conv/weight"].shape[2]) - ch[4]
    kw = dict(d_channels=ch, d_fc=int(var["4x4/Dense0/weight"].shape[1]), mbstd_channels=mb if group > 1 else 0,
              mbstd_group=group)
    lod = float(np.asarray(var.get("lod", 0.0)).reshape(()))
    return kw, sd, lod


def load_stylegan1(Gs: TFNetworkRecord, D: TFNetworkRecord | None, path) -> StyleGANModel:
    """NVlabs/stylegan's ``G_style`` (mapping + synthesis) and ``D_basic``."""
    source = str(path)
    syn = Gs.components["synthesis"]
    _v1_refuse(syn, source, {"use_styles": (True, "styles are what W+ means"),
                             "const_input_layer": (True, "a dense input layer"),
                             "use_pixel_norm": (False, "pixel norm in synthesis"),
                             "use_instance_norm": (True, "AdaIN needs instance norm"),
                             "nonlinearity": ("lrelu", "LeakyReLU only"), "use_wscale": (True, "equalised lr only")})
    _v1_refuse(Gs.components["mapping"], source, {"mapping_nonlinearity": ("lrelu", "P space needs LeakyReLU"),
                                                  "normalize_latents": (True, "un-normalised z"),
                                                  "use_wscale": (True, "equalised lr only")})
    var, sd = Gs.all_variables(), {}
    if "mapping/LabelConcat/weight" in var:
        raise LatentAtlasError(f"{source}: a conditional StyleGAN (v1) generator (LabelConcat) is not supported")
    n = 0
    while f"mapping/Dense{n}/weight" in var:
        _dense(sd, f"mapping.fc{n}", var, f"mapping/Dense{n}")
        n += 1
    _need(var, ["mapping/Dense0/weight", "dlatent_avg", "synthesis/4x4/Const/const"], source, "generator")
    sd["mapping.w_avg"] = _t(np.asarray(var["dlatent_avg"]).reshape(-1), 0)
    top = 2
    while f"synthesis/{2 ** (top + 1)}x{2 ** (top + 1)}/Conv1/weight" in var:
        top += 1
    res = 2 ** top
    if int(Gs.kwarg("resolution", res)) != res:
        raise LatentAtlasError(f"{source}: static_kwargs say resolution {Gs.kwarg('resolution')}, the variables go "
                               f"to {res}")
    s = "synthesis/"
    sd["synthesis.b4.const"] = _t(np.asarray(var[s + "4x4/Const/const"])[0], 0, 1, 2)
    _v1_epilogue(sd, "synthesis.b4.conv0", var, s + "4x4/Const", s + "noise0")
    _conv(sd, "synthesis.b4.conv1", var, s + "4x4/Conv")
    _v1_epilogue(sd, "synthesis.b4.conv1", var, s + "4x4/Conv", s + "noise1")
    channels = {4: int(var[s + "4x4/Conv/weight"].shape[3])}
    for i in range(3, top + 1):
        r, sc = 2 ** i, f"{s}{2 ** i}x{2 ** i}"
        _need(var, [f"{sc}/Conv0_up/weight", f"{sc}/Conv1/weight"], source, "synthesis")
        _conv(sd, f"synthesis.b{r}.conv0", var, f"{sc}/Conv0_up")
        _v1_epilogue(sd, f"synthesis.b{r}.conv0", var, f"{sc}/Conv0_up", f"{s}noise{2 * i - 4}")
        _conv(sd, f"synthesis.b{r}.conv1", var, f"{sc}/Conv1")
        _v1_epilogue(sd, f"synthesis.b{r}.conv1", var, f"{sc}/Conv1", f"{s}noise{2 * i - 3}")
        channels[r] = int(var[f"{sc}/Conv1/weight"].shape[3])
    for i in range(2, top + 1):
        _need(var, [f"{s}ToRGB_lod{top - i}/weight"], source, "synthesis")
        _conv(sd, f"synthesis.b{2 ** i}.torgb", var, f"{s}ToRGB_lod{top - i}")
    lod = float(np.asarray(var.get("lod", var.get(s + "lod", 0.0))).reshape(()))
    if syn.kwarg("structure", "auto") == "fixed":
        lod = 0.0
    lod = number(lod, "the snapshot's lod", 0.0, float(top - 2), where=source)
    blur = syn.kwarg("blur_filter", [1, 2, 1])
    kw = dict(z_dim=int(var["mapping/Dense0/weight"].shape[0]), w_dim=int(var[f"mapping/Dense{n - 1}/weight"].shape[1]),
              img_resolution=res, img_channels=int(var[f"{s}ToRGB_lod0/weight"].shape[3]), channels=channels,
              mapping_layers=n, layer_features=int(var["mapping/Dense0/weight"].shape[1]) if n > 1 else None,
              mapping_lr_mul=number(Gs.components["mapping"].kwarg("mapping_lrmul", 0.01), "mapping_lrmul", 1e-6,
                                    100.0, where=source),
              blur=tuple(blur or ()), fused_min_res=_fused_min_res(syn), lod=lod,
              use_noise=f"{s}4x4/Conv/Noise/weight" in var)
    warnings, d_sd = [], None
    if D is not None:
        try:
            d_kw, d_sd, d_lod = _v1_discriminator(D, top, source)
            if abs(d_lod - lod) > 1e-6:
                raise LatentAtlasError(f"its lod {d_lod} differs from the generator's {lod}")
            kw.update(d_kw)
        except LatentAtlasError as e:
            warnings.append(f"discriminator not loaded: {e}")
            d_sd = None
    cfg = StyleGAN1Config(**kw)
    G, Dm = _build(cfg, StyleGAN1Generator, StyleGAN1Discriminator, sd, d_sd, path, warnings)
    info = _info(path, Gs, "stylegan1", warnings, default_truncation=V1_TRUNCATION)
    if lod:
        info.extra["lod"] = lod
    return StyleGANModel(info, G, Dm)


def _info(path, Gs: TFNetworkRecord, arch: str, warnings: list, default_truncation: dict | None = None) -> ModelInfo:
    extra = {"format": "tf-pkl", "family": arch, "tf_build": Gs.build_func_name}
    d = default_truncation or {}
    psi, cutoff = Gs.kwarg("truncation_psi", d.get("psi")), Gs.kwarg("truncation_cutoff", d.get("cutoff"))
    if psi is not None:        # the file's own sampling default, recorded (our methods choose their own)
        extra["tf_truncation"] = {"psi": psi, "cutoff": cutoff}
    if warnings:
        extra["warnings"] = warnings
    return ModelInfo(name=Path(path).stem, arch=arch, source=f"{path} ({FAMILY}, Gs)", extra=extra)


def _is_stylegan1(Gs: TFNetworkRecord) -> bool:
    syn = Gs.components.get("synthesis")
    return syn is not None and any("/StyleMod/" in k for k in syn.variables)


def load(path, obj) -> StyleGANModel:
    source = str(path)
    Gs, D = networks(obj, source)
    if Gs.version < 2:
        raise LatentAtlasError(f"{source}: TF network pickle version {Gs.version} is too old")
    if "mapping" not in Gs.components or "synthesis" not in Gs.components:
        raise LatentAtlasError(f"{source}: the TF network {Gs.name!r} ({Gs.build_func_name}) has no mapping and "
                               f"synthesis components: not a StyleGAN generator")
    if _is_stylegan1(Gs):
        return load_stylegan1(Gs, D, path)
    return load_stylegan2(Gs, D, path)


def inspect(path) -> dict:
    obj = read(path, str(path))
    out = {"format": FAMILY}
    for role, net in zip(("G", "D", "Gs"), obj if isinstance(obj, (tuple, list)) else [obj]):
        n = sum(int(np.prod(v.shape)) for v in net.all_variables().values())
        out[role] = f"{net.build_func_name} ({n:,} values) {net.static_kwargs}"
    return out
