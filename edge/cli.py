"""The ``edgecam`` command. Each subcommand imports its package only when called,
so ``edgecam run`` works where only ``edgecam[edge]`` (no TensorFlow) is installed."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from edge import cli_args, cli_flags
from edge.cli_args import MAX_SIDE, add_gpu_flags, gpu_settings, print_json
from edge.errors import ConfigError, EdgecamError

COMMANDS = {
    "demo": "generate maritime scenes, train, export, verify and run the runtime over a clip",
    "train": "fine-tune MobileNetV2 on a folder per class, a CSV or the synthetic scenes",
    "evaluate": "metrics of a model.keras or an exported artifact on a labelled folder",
    "export": "convert a trained run to TFLite / ONNX artifacts, each with a manifest",
    "verify": "parity report of every artifact against its Keras model; gates for CI",
    "robustness": "the model and its artifacts under noise, blur, fog, rain, spray, glare, low light, contrast, JPEG "
                  "and FGSM: accuracy, agreement and heatmap stability",
    "run": "run an artifact frame by frame on a video, camera, stream, folder or the synthetic clip",
    "bench": "latency / throughput of artifacts side by side on this machine",
    "devices": "list device profiles (Raspberry Pi, Jetson, x86); --check: what each one gets on this machine",
}
DELEGATED = {"bench": ("edge.bench", "main"), "devices": ("devices", "cli_main")}
# subcommand -> "module:function" run with the parsed arguments; imported only when that subcommand runs,
# so `edgecam run` on a device never imports training/ or export/ (nor TensorFlow)
HANDLERS = {
    "demo": "training.commands:cmd_demo",
    "train": "training.commands:cmd_train",
    "evaluate": "training.commands:cmd_evaluate",
    "export": "export.commands:cmd_export",
    "verify": "export.commands:cmd_verify",
    "robustness": "export.commands:cmd_robustness",
    "run": "edge.commands:cmd_run",
}


def handler(command: str):
    """The function that runs ``command`` (see HANDLERS)."""
    import importlib

    module, _, func = HANDLERS[command].partition(":")
    return getattr(importlib.import_module(module), func)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, once: help texts that already say "default" are left as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def version() -> str:
    """The installed distribution's version (the one pip reports)."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("edgecam")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed: pip install -e .)"


def _logging_flags(parser: argparse.ArgumentParser, default) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    g.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgecam", description="Explainable image classifiers from training to a camera on a small device.",
                                formatter_class=HelpFormatter)
    _logging_flags(p, False)
    p.add_argument("--version", action="version", version=f"edgecam {version()}")
    common = argparse.ArgumentParser(add_help=False)
    _logging_flags(common, argparse.SUPPRESS)  # also after the command; SUPPRESS keeps a flag given before it
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sp = {name: sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter,
                               parents=[] if name in DELEGATED else [common])
          for name, text in COMMANDS.items()}
    p.subcommands = sp  # type: ignore[attr-defined]  # _main applies a --config file to one of them

    cli_flags.add_demo_flags(sp["demo"])
    cli_flags.add_train_flags(sp["train"])
    cli_flags.add_evaluate_flags(sp["evaluate"])
    cli_flags.add_export_flags(sp["export"])
    cli_flags.add_verify_flags(sp["verify"])
    cli_flags.add_robustness_flags(sp["robustness"])
    cli_flags.add_run_flags(sp["run"])
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``edgecam``; as the program (``argv`` None), a run stopped by a signal ends by that signal.

    After a clean flush the process kills itself with the signal it was
    stopped by, as Python itself does for an uncaught KeyboardInterrupt: a
    shell then sees 130 / 143, and systemd counts the stop as clean (an exit
    status of 143 would mark the unit failed).
    """
    code = _main(argv)
    if argv is None and code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        sig = signal.SIGINT if code == 130 else signal.SIGTERM
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return code


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        parser = build_parser()
        lead = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))  # options before COMMAND
        if lead < len(argv) and argv[lead] in DELEGATED:
            import importlib

            _configure_logging(parser.parse_args(argv[:lead]))  # -v / -q count only before a delegated command
            module, func = DELEGATED[argv[lead]]
            return int(getattr(importlib.import_module(module), func)(argv[lead + 1:]) or 0)
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        _configure_logging(args)
        if args.command in ("run", "train"):
            args = _with_config(parser, args, argv)
            if args is None:
                return 0  # --print-config printed it
        command = handler(args.command)
        if not getattr(args, "json", False):
            return int(command(args) or 0)
        # --json: stdout carries the JSON document alone (print_json); anything else printed on the
        # way (progress, verdicts, a library's chatter) goes to stderr, so `... --json | jq` always parses
        cli_args.json_out, sys.stdout = sys.stdout, sys.stderr
        try:
            return int(command(args) or 0)
        finally:
            sys.stdout, cli_args.json_out = cli_args.json_out, None
    except EdgecamError as exc:
        print(f"edgecam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a socket, a child): a fault worth its traceback
        # the reader of stdout (head, grep -q) left early, on purpose: say nothing, as `yes | head` does,
        # and exit as a shell reports a process ended by SIGPIPE
        return 128 + signal.SIGPIPE


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when an embedding program configured logging first
    for noisy in ("tensorflow", "tf2onnx", "absl", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _with_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> argparse.Namespace | None:
    """``args`` with ``--config`` applied under the flags; None once ``--print-config`` has printed the result."""
    from edge.config import RUN_SETTINGS, apply_config, effective_config, load_config_file, secret_keys, to_toml

    sub = parser.subcommands[args.command]  # type: ignore[attr-defined]
    settings = RUN_SETTINGS if args.command == "run" else None
    if args.config:
        apply_config(sub, load_config_file(args.config), args.config, settings)
        args = parser.parse_args(argv)  # the file's values are now defaults: a flag given in argv still wins
    if args.print_config:
        hidden = secret_keys(args)
        header = f"edgecam {args.command} configuration (edgecam {version()})"
        header += "".join(f"\n{k} is set but not printed" for k in hidden)
        print(to_toml(effective_config(sub, args, settings), header=header), end="")
        return None
    missing = {"run": "model", "train": "data"}[args.command]
    if not getattr(args, missing):
        raise ConfigError(f"{args.command}: expected {missing.upper()} on the command line or '{missing}' in --config; "
                          "received neither")
    return args


def _stdout_closed() -> bool:
    """True if stdout is a pipe whose reader has gone; stdout then points at /dev/null so the exit flush is quiet."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        gone = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no real stdout: cannot tell
        return False
    if gone:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return gone


# print_json, gpu_settings and MAX_SIDE live in edge.cli_args; named here for code that imported them from edge.cli
__all__ = ["main", "build_parser", "COMMANDS", "HANDLERS", "DELEGATED", "MAX_SIDE", "add_gpu_flags", "gpu_settings", "print_json"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
