"""``robust-paddle train|check-data|eval|export|compress|report|serve|list|demo``.

Errors a user can fix -- exactly :class:`~robust_paddle.errors.RobustPaddleError` (config, data, checkpoint,
compatibility, training) and ``OSError`` (a file that cannot be read or written, named) -- print one line
``robust-paddle: error: ...`` on stderr and exit 2; ``--debug`` shows the traceback instead. Every other
exception is a bug: it keeps its traceback and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from robust_paddle import __version__
from robust_paddle.errors import ConfigError, RobustPaddleError, TrainingError

logger = logging.getLogger("robust_paddle")



class CLIError(ConfigError):
    """A command-line usage problem (reported like every other user error)."""


def error_line(exc: BaseException) -> str:
    """The one line printed for a user error: the message's first line; an ``OSError`` names its path."""
    if isinstance(exc, OSError) and exc.filename is not None:
        where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        msg = f"{where}: {exc.strerror or type(exc).__name__}"
    else:
        msg = str(exc)
    msg = msg.strip()
    return msg.splitlines()[0] if msg else type(exc).__name__


def _add_config_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("-c", "--config", required=required, help="YAML config (with optional _base_ inheritance)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. -o train.epochs=5 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robust-paddle", description="Train classifiers on noisy labels with "
                                     "PaddlePaddle, report label issues, export, compress and serve.")
    parser.add_argument("--version", action="version", version=f"robust_paddle {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a config")
    _add_config_args(p, required=False)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint "
                   "(uses RUN_DIR/config.yaml; -o may change train.epochs, optimizer.lr, "
                   "train.early_stopping.patience and run options such as train.device; other keys are refused)")

    p = sub.add_parser("check-data", help="read every sample of every split and write data_report.json")
    _add_config_args(p)
    p.add_argument("--out", help="output folder for data_report.json (default: the config's output_dir)")

    p = sub.add_parser("eval", help="evaluate a checkpoint on the val/test splits")
    _add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="a .pdckpt file or a run folder")

    p = sub.add_parser("report", help="write the label-issue report for a checkpoint")
    _add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="a .pdckpt file or a run folder")
    p.add_argument("--out", help="output folder (default: the checkpoint's run folder)")

    p = sub.add_parser("export", help="export a checkpoint to Paddle Inference / ONNX / Serving")
    _add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="a .pdckpt file or a run folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default=None, help="comma-separated: paddle,onnx,serving (default: export.formats)")

    p = sub.add_parser("compress", help="prune / quantize a checkpoint with PaddleSlim (slim: config section)")
    _add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="a .pdckpt file or a run folder")
    p.add_argument("--out", required=True, help="output folder")

    p = sub.add_parser("serve", help="HTTP inference server on an exported model folder")
    p.add_argument("--model", required=True, help="folder written by `robust-paddle export`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-body-mb", type=float, default=10.0, help="reject request bodies larger than this")
    p.add_argument("--threads", type=int, default=4, help="server worker threads")
    p.add_argument("--max-megapixels", type=float, default=16.0,
                   help="decoded-pixel budget of one request's images, in millions (larger requests get 413)")
    p.add_argument("--decode-workers", type=int, default=2, help="requests decoding images at once")
    p.add_argument("--max-requests", type=int, default=None,
                   help="/predict requests in progress at once, more get 503 (default: threads - 1)")

    p = sub.add_parser("list", help="what a config can name: methods, losses, models, optimizers, schedulers, "
                       "with their parameters, defaults and papers")
    p.add_argument("kind", choices=["methods", "losses", "models", "optimizers", "schedulers"])
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser("demo", help="train the clean oracle, CE and robust methods on noisy digits; print a table")
    p.add_argument("-c", "--config", default=None, help="base config (default: configs/quickstart.yaml)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="folder for the demo runs (default: output/demo-<time>)")
    p.add_argument("--methods", default=None, help="comma-separated subset of the demo rows")
    p.add_argument("--task", default="image", choices=("image", "text"),
                   help="image: noisy digits (default); text: the embedded Chinese review corpus (needs [text])")
    p.add_argument("--jobs", type=int, default=None, help="rows trained at once, one process each (default: CPU count)")
    _add_label_workflow_parsers(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, ``compose down``) turned into an exception so the command stops at once."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def install_sigterm_handler() -> None:
    """Stop on SIGTERM like on Ctrl-C.

    A process started as a container's PID 1 (``docker run`` without ``--init``) gets no default action for
    SIGTERM: the kernel drops the signal unless the process installs a handler, so ``docker stop`` would wait
    its 10 s and kill it. With this handler the command unwinds (closing files; finished checkpoints are
    written atomically, so the last one stays resumable) and exits with status 143.
    """
    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
        signal.signal(signal.SIGTERM, _raise_terminated)


def check_writable_dir(path: str, flag: str) -> None:
    """Raise :class:`CLIError` (one line) unless ``path`` can be created and written by this user.

    Checked before any work, so a read-only or foreign-owned mount (e.g. a Docker volume owned by another uid)
    fails at once instead of after training. Walks up to the nearest existing ancestor, which must be a
    writable folder.
    """
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise CLIError(f"{flag} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {path}: {probe} is not writable by uid {os.getuid()}; choose a folder this user "
                       f"can write (in Docker: mount one owned by uid {os.getuid()}, or build with USER_UID=$(id -u))")


def _add_label_workflow_parsers(sub: Any) -> None:
    """sample-for-review, estimate, review, apply-review (robust_paddle.pipeline.label_workflow)."""
    p = sub.add_parser("sample-for-review", help="draw a stratified random sample of training labels to verify")
    _add_config_args(p)
    p.add_argument("--n", type=int, required=True, help="how many samples to verify (e.g. 200)")
    p.add_argument("--out", required=True, help="CSV to write (sample, given_label, given_name, verified_label)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the config's seed)")

    p = sub.add_parser("estimate", help="noise rate and transition matrix from a verified sample")
    _add_config_args(p)
    p.add_argument("--verified", required=True, help="CSV/TSV/JSONL with sample and verified_label columns")
    p.add_argument("--run", default=None, help="a trained run folder: combine with its report's model estimate")
    p.add_argument("--width", type=float, default=0.05, help="wanted 95%% interval width, for the sample size")
    p.add_argument("--out", default=None, help="folder for noise_estimate.json (default: output_dir)")

    p = sub.add_parser("review", help="web page to review the most suspect labels of a run")
    p.add_argument("--run", required=True, help="run folder with label_issues.csv")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--reviewer", default="", help="name recorded with each decision (default: $USER)")

    p = sub.add_parser("apply-review", help="write the reviewed labels for data.labels_override")
    p.add_argument("--run", required=True, help="run folder with review.jsonl")
    p.add_argument("--out", required=True, help="CSV of reviewed labels (sample, label) plus an .audit.csv")


def _load_cfg(args: argparse.Namespace) -> Any:
    from robust_paddle import config

    return config.load(args.config, args.override)


def cmd_train(args: argparse.Namespace) -> int:
    from robust_paddle import config
    from robust_paddle.pipeline.run import train

    if args.resume:
        run_cfg = os.path.join(args.resume, "config.yaml")
        if not os.path.isfile(run_cfg):
            raise CLIError(f"--resume {args.resume}: no config.yaml there; pass the folder of an earlier run")
        if args.config:
            logger.info("--resume uses %s; -c %s is ignored", run_cfg, args.config)
        cfg = config.load(run_cfg, args.override + [f"output_dir={args.resume}"])
    else:
        if not args.config:
            raise CLIError("train needs -c CONFIG (or --resume RUN_DIR)")
        cfg = config.load(args.config, args.override)
    check_writable_dir(cfg.output_dir, "output_dir")
    summary = train(cfg, resume=args.resume)
    if _rank() != 0:  # data parallel: rank 0 alone reports (every rank holds the same metrics)
        return 0
    final = {k: v for k, v in summary["final"].items() if k.startswith(("val/", "test/"))}
    print(json.dumps({"output_dir": cfg.output_dir, "epochs_run": summary["epochs_run"], **final}, indent=2))
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    import robust_paddle.data  # noqa: F401  (registers the DATASETS sources)
    from robust_paddle.data.check_data import check_data, format_summary

    cfg = _load_cfg(args)
    report = check_data(cfg, out_dir=args.out, progress=not args.quiet)
    print(format_summary(report))
    print(f"report: {report['path']}")
    if report["problems"]:
        raise CLIError(f"check-data found {len(report['problems'])} problem(s) that stop training, the first: "
                       f"{report['problems'][0]}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.run import evaluate

    res = evaluate(_load_cfg(args), args.checkpoint)
    print(json.dumps({s: {k: v for k, v in m.items() if k != "confusion"} for s, m in res.items()}, indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.commands import report_command

    print(json.dumps(report_command(_load_cfg(args), args.checkpoint, out_dir=args.out), indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.commands import export_command

    formats = None if args.format is None else [f.strip() for f in args.format.split(",") if f.strip()]
    check_writable_dir(args.out, "--out")
    print(json.dumps(export_command(_load_cfg(args), args.checkpoint, out_dir=args.out, formats=formats), indent=2))
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.commands import compress_command

    check_writable_dir(args.out, "--out")
    compress_command(_load_cfg(args), args.checkpoint, out_dir=args.out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from robust_paddle.deploy.serve import serve_command

    try:
        serve_command(args.model, host=args.host, port=args.port, max_batch_size=args.max_batch_size,
                      max_body_mb=args.max_body_mb, threads=args.threads,
                      max_megapixels=args.max_megapixels, decode_workers=args.decode_workers,
                      max_requests=args.max_requests)
    except OSError as e:
        if e.filename is not None:
            raise
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}; choose another --port "
                       "(0 picks a free one) or --host") from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.demo import run_demo

    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    check_writable_dir(args.out or "output", "--out")
    run_demo(config_path=args.config, overrides=args.override, out_dir=args.out, methods=methods, jobs=args.jobs,
             task=args.task)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from robust_paddle.catalog import describe, format_catalog

    entries = describe(args.kind)
    print(json.dumps(entries, indent=2) if args.json else format_catalog(entries))
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train, "eval": cmd_eval, "report": cmd_report, "export": cmd_export,
            "compress": cmd_compress, "check-data": cmd_check_data, "serve": cmd_serve, "demo": cmd_demo}


def cmd_sample_for_review(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.label_workflow import sample_for_review_command

    sample_for_review_command(_load_cfg(args), n=args.n, out=args.out, seed=args.seed)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.label_workflow import estimate_command

    est = estimate_command(_load_cfg(args), verified=args.verified, run_dir=args.run, width=args.width,
                           out_dir=args.out)
    lo, hi = est["interval"]
    print(f"noise rate {est['noise_rate']:.4f} (95% interval {lo:.4f}-{hi:.4f}) from {est['n_verified']} verified "
          f"samples, {est['n_wrong']} wrong; {est['more_samples_needed']} more for an interval "
          f"{est['wanted_width']:g} wide; wrote {est['path']}")
    if "combined" in est:
        c = est["combined"]
        print(f"combined with the model's estimate: {c['noise_rate']:.4f} ({c['interval'][0]:.4f}-{c['interval'][1]:.4f})")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.label_workflow import review_command

    review_command(args.run, host=args.host, port=args.port, reviewer=args.reviewer)
    return 0


def cmd_apply_review(args: argparse.Namespace) -> int:
    from robust_paddle.pipeline.label_workflow import apply_review_command

    s = apply_review_command(args.run, out=args.out)
    print(f"{s['verified']} reviewed labels ({s['changed']} changed, {s['unsure']} unsure left out) -> {s['labels']}; "
          f"audit {s['audit']}")
    return 0


COMMANDS.update({"sample-for-review": cmd_sample_for_review, "estimate": cmd_estimate, "review": cmd_review,
                 "apply-review": cmd_apply_review})


def _rank() -> int:
    """Rank set by ``paddle.distributed.launch`` (0 in a plain run), read without importing paddle."""
    return int(os.environ.get("PADDLE_TRAINER_ID", "0") or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # under paddle.distributed.launch only rank 0 logs progress; the other ranks' logs keep warnings and errors
    logging.basicConfig(level=logging.WARNING if args.quiet or _rank() != 0 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        force=True)  # paddle attaches a root handler on import; replace it
    previous = signal.getsignal(signal.SIGTERM)
    install_sigterm_handler()
    try:
        return COMMANDS[args.command](args)
    except (RobustPaddleError, OSError) as e:
        if args.debug:
            raise
        kind = "training failed" if isinstance(e, TrainingError) else "error"
        print(f"robust-paddle: {kind}: {error_line(e)}", file=sys.stderr)
        return 2
    except Terminated:
        print("robust-paddle: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("robust-paddle: interrupted", file=sys.stderr)
        return 130
    finally:  # an in-process caller (tests, notebooks) gets its own handler back
        if threading.current_thread() is threading.main_thread() and previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # python -m paddle.distributed.launch ... robust_paddle/cli.py train -c CFG
    sys.exit(main())
