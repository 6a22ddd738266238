"""serve: the explorer in the browser."""
from __future__ import annotations

import logging

from ...inversion.refine import load_refined
from ...serve.server import serve
from ..options import add_model_options, atlas_option, load_model, number_option, positive_int

log = logging.getLogger("latentatlas")


def add_serve(sub, common):
    s = sub.add_parser("serve", parents=[common], help="explore the latent space in the browser",
                       description="Serve the explorer page on http://127.0.0.1:PORT/: sample grids, sliders along "
                                   "direction sets (GANSpace, SeFa, and any --directions file such as DP-LaSE), "
                                   "sampling strategies side by side, walks with playback, and upload-and-edit "
                                   "(inversion as a background job, latent download and re-upload). Nothing is "
                                   "fetched from outside the machine; uploads are size- and pixel-limited and kept "
                                   "in a temporary directory removed at exit.")
    s.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    s.add_argument("--atlas", default=None, help="atlas .npz for the strategies that need one (default: the cached one)")
    s.add_argument("--directions", action="append", default=None, metavar="FILE.npz",
                   help="extra direction set for the sliders and walks (repeatable)")
    s.add_argument("--report", default=None, metavar="DIR", help="a report directory to link (its files are served)")
    s.add_argument("--refined", default=None, metavar="NAME.refine.safetensors",
                   help="explore the generator refined for one image ('refine' / 'invert --refine'): every sample, "
                        "edit and walk then uses it; upload that image's NAME.npz to edit it")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    s.add_argument("--port", type=number_option(0, 65535, integer=True), default=8000, help="port (default %(default)s; 0 = any free port)")
    s.add_argument("--max-jobs", type=positive_int, default=8,
                   help="inversions queued or running at once; more are answered 429 (default %(default)s)")
    add_model_options(s)
    s.set_defaults(fn=run_serve)


def run_serve(args):
    model = load_model(args)
    if args.refined:
        model = load_refined(model, args.refined)
    atlas = atlas_option(args, model, model.has_mapping, "the model has no W space")   # None: the cached one, when needed
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the explorer (no authentication)",
                    args.host)
    serve(model, host=args.host, port=args.port, atlas=atlas, directions=args.directions, report_dir=args.report,
          max_jobs=args.max_jobs, on_ready=lambda url: print(f"latentatlas explorer on {url} (Ctrl-C stops)",
                                                              flush=True))
    return 0
