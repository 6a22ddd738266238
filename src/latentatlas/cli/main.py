"""``latentatlas``: the command line. Each command family is a module of ``cli.commands`` (its
parsers and what they run); errors in the user's input end in one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import logging
import sys

from ..errors import LatentAtlasError
from ..runtime import tune_allocator
from ..validate import check_output
from .commands import evaluate, evaluate_inversion, fit, invert, models, report, sample, serve, train, walks
from .options import fill_help

# every command's parser, in the order 'latentatlas --help' lists them
PARSERS = (models.add_models, sample.add_sample, report.add_report, evaluate.add_evaluate,
           evaluate.add_evaluate_sampling, invert.add_invert, invert.add_refine, invert.add_train_encoder,
           walks.add_edit, walks.add_stylespace,
           walks.add_directions, sample.add_mix, walks.add_walk, evaluate.add_evaluate_directions,
           evaluate_inversion.add_evaluate_inversion, serve.add_serve, models.add_convert, fit.add_fit, train.add_train)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (exit code 2)."""

    def error(self, message):
        print(f"latentatlas: error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    def global_options(defaults: bool) -> argparse.ArgumentParser:
        # The same options before or after the subcommand; after it they default to SUPPRESS so
        # that a value given before the subcommand is not overwritten by the default.
        g = argparse.ArgumentParser(add_help=False)
        d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
        g.add_argument("--device", default=d("auto"), help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps "
                                                         "(default: auto)")
        g.add_argument("--json", action="store_true", default=d(False), help="machine-readable output on stdout")
        g.add_argument("--debug", action="store_true", default=d(False), help="show tracebacks and debug logging")
        return g

    common = global_options(False)
    p = _Parser(prog="latentatlas", parents=[global_options(True)],
                                description="Map the latent space of a pretrained GAN and sample, "
                                            "truncate, invert, walk and edit where the good latents are.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for add in PARSERS:
        add(sub, common)
    fill_help(p)
    return p


# options whose value may start with a minus sign (a list of signed numbers like -2,-1,0,1,2)
_SIGNED_LISTS = ("--amounts",)


def _join_signed(argv: list[str]) -> list[str]:
    """``--amounts -2,0,2`` -> ``--amounts=-2,0,2`` so argparse does not read the value as an option."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in _SIGNED_LISTS and i + 1 < len(argv) and argv[i + 1][:1] == "-" and argv[i + 1][1:2].isdigit():
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv=None) -> int:
    tune_allocator()
    parser = build_parser()
    try:
        args = parser.parse_args(_join_signed(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as e:      # --help (0) or a usage error (2, already printed in one line)
        return int(e.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        _check_outputs(args)
        return args.fn(args) or 0
    except LatentAtlasError as e:
        if args.debug:
            raise
        print(f"latentatlas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentatlas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:      # output piped into e.g. `head`
        return 0
    except MemoryError:
        if args.debug:
            raise
        print(f"latentatlas: error: {args.command}: out of memory (use a smaller --n or --batch-size)", file=sys.stderr)
        return 2
    except Exception as e:   # errors from dependencies (PIL, torch, numpy, zipfile): one line, no traceback
        if args.debug:
            raise
        what = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(f"latentatlas: error: {args.command}: {type(e).__name__}: {what} (--debug shows the traceback)",
              file=sys.stderr)
        return 2


# Output options and what they name: checked before any work starts. A command whose option of
# the same name means something else says so in _OUTPUTS_OF.
_OUTPUTS = {"out": None, "out_dir": "dir", "output": "file", "plots": "file", "video": "file"}


_OUTPUTS_OF = {"evaluate-inversion": {"plots": "dir"}}


def _check_outputs(args):
    for dest, kind in {**_OUTPUTS, **_OUTPUTS_OF.get(args.command, {})}.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and value:
            check_output(value, kind)
