"""fit: the latent-space atlas (P-norm PCA, mixtures)."""
from __future__ import annotations

from ...atlas import Atlas, describe, fit_atlas, parse_clusters, parse_level_ranges
from ...defaults import LEARNED_STEPS
from ...errors import LatentAtlasError
from ...spaces.diagnostics import normality_table, plot_marginals, space_samples
from ..options import add_model_options, add_ray, emit, kv_line, load_model, number_option, pool_for, positive_int, seed_int


def add_fit(sub, common):
    s = sub.add_parser("fit", parents=[common], help="fit the latent-space atlas (P-norm PCA, mixtures)",
                       description="Map N latents, fit the Gaussian of P space and its PCA whitening "
                                   "(P-norm), the EM mixture per level, and save everything with the "
                                   "model's weights hash to an .npz atlas. Prints W/P/P-norm normality "
                                   "diagnostics.")
    s.add_argument("--model", help="bundled model name or checkpoint path")
    s.add_argument("--n", type=positive_int, default=100_000, help="latents to map (default 100000)")
    s.add_argument("--seed", type=seed_int, default=0)
    s.add_argument("--out", help="atlas file (.npz)")
    s.add_argument("--inspect", metavar="ATLAS", help="print what an atlas file records (N, seed, levels, "
                                                       "clusters, steps, versions, timings) and exit")
    s.add_argument("--clusters", default=None, help="clusters per level, e.g. coarse=8,medium=8,fine=8 (all 0: the P-norm statistics only, no mixture)")
    s.add_argument("--levels", default=None, help="W+ rows per level, e.g. coarse=0:3,medium=3:6,fine=6:8")
    s.add_argument("--plots", default=None, metavar="PNG", help="also write marginal histograms / joint plots")
    s.add_argument("--learned-steps", type=number_option(0, 10 ** 6, integer=True), default=LEARNED_STEPS,
                   help="training steps of the learned multi-level mixture per level (default %(default)s; 0 = EM "
                        "baseline only)")
    add_ray(s, "the mapping and moments (shards summed exactly; the mixtures are fitted here)")
    add_model_options(s)
    s.set_defaults(fn=run_fit)


def run_fit(args):
    if args.inspect:
        info = describe(Atlas.load(args.inspect))
        emit(args, info, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
        return 0
    if not args.model or not args.out:
        raise LatentAtlasError("fit needs --model and --out (or --inspect ATLAS.npz)")
    model = load_model(args)
    model.require_mapping("fit")
    clusters = parse_clusters(args.clusters)
    levels = parse_level_ranges(args.levels, model.num_ws)
    with pool_for(args, model) as pool:
        atlas = fit_atlas(model, n=args.n, seed=args.seed, clusters=clusters, level_ranges=levels,
                          learned_steps=args.learned_steps, progress=not args.json,
                          pool=pool)
    path = atlas.save(args.out)
    table = normality_table(space_samples(model, atlas.pnorm, n=min(args.n, 20000), seed=args.seed + 1))
    res = {"atlas": str(path), "meta": atlas.meta, "level_ranges": atlas.level_ranges, "normality": table}
    if atlas.em is not None:
        res["em_mixture_quality"] = atlas.em.quality(model)
    if atlas.learned is not None:
        res["learned_mixture_quality"] = atlas.learned.quality()
    if args.plots:
        res["plot"] = str(plot_marginals(space_samples(model, atlas.pnorm, n=10000, seed=args.seed + 1), args.plots))

    def fmt(d):
        head = f"atlas written to {d['atlas']} (N={d['meta']['n']}, timings {d['meta']['timings']})"
        lines = [head] + [kv_line(r, ".3f") for r in d["normality"]]
        for kind in ("em", "learned"):
            for level, q in (d.get(f"{kind}_mixture_quality") or {}).items():
                pi = f"  pi={','.join(f'{v:.2f}' for v in q['pi'])}" if "pi" in q else ""
                lines.append(f"{kind} {level}: MMD2={q['mmd2']:.4f} (floor {q['mmd2_floor']:.4f})  "
                             f"classifier accuracy={q['classifier_accuracy']:.3f}  "
                             f"real w per cluster={q['real_w_cluster_sizes']}{pi}")
        return "\n".join(lines)
    emit(args, res, fmt)
    return 0
