"""Mean/covariance + PCA (P-norm) from 1M mapped samples of fashion-stylegan2: wall time,
samples/s, the split between mapping and statistics, and peak memory (RSS); then the whole
atlas as `latentatlas fit --n 1000000` builds it (P-norm + EM 8/8/8 + learned mixture, 400
steps per level) with its time split and peak memory (targets: <= 3 min, <= 2 GiB)."""
from __future__ import annotations

import resource
import sys
import time


from latentatlas.models.registry import load_generator
from latentatlas.spaces import PNormSpace, mapped_moments


def main(n: int = 1_000_000):
    m = load_generator(sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    timings = {}
    mom = mapped_moments(m, n, seed=0, batch_size=20000, timings=timings)
    t1 = time.perf_counter()
    sp = PNormSpace().fit(moments=mom)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model {m.name}: {n} samples in {t2 - t0:.1f} s ({n / (t2 - t0):,.0f} samples/s)")
    print(f"  mapping {timings['mapping_s']:.1f} s, statistics {timings['statistics_s']:.1f} s, PCA {t2 - t1:.2f} s")
    print(f"  peak RSS {rss:.0f} MiB (before: {rss0:.0f} MiB)")
    print(f"  top-5 P-norm variances {sp.explained_variance_[:5].tolist()}")
    from latentatlas.atlas import fit_atlas
    t0 = time.perf_counter()
    atlas = fit_atlas(m, n=n, seed=0, clusters={"coarse": 8, "medium": 8, "fine": 8}, learned_steps=400)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"full atlas (fit --n {n}, EM 8/8/8, learned 400 steps/level): {dt:.1f} s, split {atlas.meta['timings']}")
    print(f"  peak RSS {rss:.0f} MiB")
    for level, q in atlas.learned.quality().items():
        print(f"  learned {level}: MMD2 {q['mmd2']:.4f} (floor {q['mmd2_floor']:.4f}) accuracy "
              f"{q['classifier_accuracy']:.3f} pi {q['pi']}")
    for level, q in atlas.em.quality(m).items():
        print(f"  em      {level}: MMD2 {q['mmd2']:.4f} (floor {q['mmd2_floor']:.4f}) accuracy "
              f"{q['classifier_accuracy']:.3f} sizes {q['real_w_cluster_sizes']}")


if __name__ == "__main__":
    main()
