"""train: train a bundled architecture on Fashion-MNIST."""
from __future__ import annotations

from ...errors import LatentAtlasError
from ...sampling.generate import parse_params
from ...train.run import HPARAMS, export_trained, train
from ..options import emit, finite_float, positive_int, seed_int


def add_train(sub, common):
    s = sub.add_parser("train", parents=[common], help="train a bundled architecture on Fashion-MNIST",
                       description="Train (or resume) stylegan2 or wgangp on Fashion-MNIST. Checkpoints "
                                   "go to OUT/checkpoint.pt every --ckpt-minutes with a sample grid; "
                                   "running the same command again resumes. --export FILE writes the "
                                   "EMA generator + discriminator from OUT in latentatlas format.")
    s.add_argument("arch", choices=["stylegan2", "wgangp"], help="architecture to train")
    s.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist"], help="training set")
    s.add_argument("--data-dir", help="directory with the idx files (default: Debian path or $LATENTATLAS_FASHION_MNIST)")
    s.add_argument("--out", required=True, help="run directory (checkpoints, grids, log)")
    s.add_argument("--batch", type=positive_int, default=32)
    s.add_argument("--kimg", type=finite_float, default=1000,
                   help="stop once the run (all sessions together) has seen this many thousand images "
                        "(default 1000; raise it to resume a run that reached it)")
    s.add_argument("--minutes", type=finite_float, default=None, help="stop after this many minutes")
    s.add_argument("--ckpt-minutes", type=finite_float, default=5.0)
    s.add_argument("--seed", type=seed_int, default=0)
    s.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    s.add_argument("--export", metavar="FILE", help="export the run in OUT to FILE and exit")
    s.add_argument("--init-from", metavar="FILE", default=None,
                   help="without a checkpoint in OUT, warm-start from an exported model (fresh optimisers)")
    s.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                   help="hyper-parameter of the recipe (stylegan2: lr, r1_gamma, r1_every, mixing_prob, ema_kimg, "
                        "precision=fp32|bf16|auto: G and D forward passes under bf16 autocast, fp32 master weights; "
                        "wgangp: lr, gp_weight, n_critic, ema_kimg); a resumed run keeps its own unless set, and "
                        "says what changed (branch a run by copying its checkpoint to a new --out first)")
    s.set_defaults(fn=run_train)


def run_train(args):
    if args.export:
        path = export_trained(args.arch, args.out, args.export)
        emit(args, {"exported": str(path)}, lambda d: f"exported {d['exported']}")
        return 0
    hp = parse_params(args.set)
    bad = sorted(set(hp) - set(HPARAMS[args.arch]))
    if bad:
        raise LatentAtlasError(f"--set: unknown hyper-parameter(s) {bad} for {args.arch} "
                               f"({', '.join(HPARAMS[args.arch])})")
    state = train(args.arch, args.out, data_dir=args.data_dir, batch=args.batch,
                  total_kimg=args.kimg, max_minutes=args.minutes, ckpt_minutes=args.ckpt_minutes,
                  seed=args.seed, threads=args.threads, init_from=args.init_from, **hp)
    done = state["nimg"] >= args.kimg * 1000
    emit(args, state, lambda d: f"stopped at step {d['step']} ({d['nimg'] / 1000:.1f} kimg, "
                                 f"{d['wall_s'] / 3600:.2f} h of training)"
                                 + (f": the run has reached --kimg {args.kimg:g}" if done else ""))
    return 0
