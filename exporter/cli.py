"""The command line: flags (with environment fallbacks), logging, exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from exporter import __version__
from exporter.app import Runtime, serve
from exporter.cognito.clients import profile_problems
from exporter.collect.storage import StorageError
from exporter.config.load import load
from exporter.config.problems import ConfigError
from exporter.logs import LEVELS, configure
from exporter.web.serve import ListenAddressError, parse_listen_address
from exporter.web.webconfig import load_web_config

DEFAULT_LISTEN_ADDRESS = ":10209"
ENV_PREFIX = "COGNITO_IMPORT_EXPORTER_"

log = logging.getLogger("exporter")


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds < 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600 seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cognito-import-exporter",
        description="Prometheus exporter for Amazon Cognito user pool import jobs.",
        epilog=f"Every flag can also be set from the environment: {ENV_PREFIX}<FLAG>, "
        f"e.g. {ENV_PREFIX}CONFIG_FILE, {ENV_PREFIX}WEB_LISTEN_ADDRESS.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=_env("CONFIG_FILE", "config.yaml"),
        help="YAML file with pools, credentials and scrape settings",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration file, print its problems and exit (no AWS calls)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=_env("WEB_LISTEN_ADDRESS", DEFAULT_LISTEN_ADDRESS),
        help="address to serve metrics on, HOST:PORT",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=_env("WEB_CONFIG_FILE", ""),
        help="exporter-toolkit web configuration (TLS, basic auth, headers); empty: plain HTTP",
    )
    parser.add_argument(
        "--web.timeout-offset",
        dest="timeout_offset",
        type=_seconds,
        default=_env("WEB_TIMEOUT_OFFSET", "0.5"),
        help="seconds subtracted from Prometheus' scrape timeout to answer in time",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        default=_env("STORAGE_PATH", ""),
        help="folder to keep each pool's history in across restarts (a restart then costs "
        "about one call a pool); empty: nothing kept",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=sorted(LEVELS),
        default=_env("LOG_LEVEL", "info"),
        help="only log messages of this level or above",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        choices=("logfmt", "json"),
        default=_env("LOG_FORMAT", "logfmt"),
        help="log line format",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against a built-in simulated Cognito endpoint; no AWS account needed",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level not in LEVELS or args.log_format not in ("logfmt", "json"):
        parser.error("--log.level and --log.format: see --help for the allowed values")
    try:
        parse_listen_address(args.listen_address)
    except ListenAddressError as error:
        parser.error(f"--web.listen-address: {error}")
    try:
        if args.config_check:
            return check_config(args.config_file, args.web_config_file)
        configure(args.log_level, args.log_format)
        reload_asked = _reload_asked_early()
        if args.demo:
            from exporter.demo.world import run_demo

            return _exit_now(
                run_demo(
                    args.listen_address, args.timeout_offset, reload_asked, args.web_config_file
                )
            )
        return _exit_now(
            serve_config(
                args.config_file,
                args.web_config_file,
                args.listen_address,
                args.timeout_offset,
                reload_asked,
                args.storage_path,
            )
        )
    except Exception as error:  # one line, never a traceback, whatever went wrong
        # the type only: the text of an error nobody foresaw could quote anything
        print(f"{parser.prog}: unexpected {type(error).__name__}", file=sys.stderr)
        return 1


def _reload_asked_early() -> threading.Event:
    """SIGHUP's default is to end the process; until the server takes signals over (a large
    config takes seconds to load), one only marks that a reload was asked for."""
    asked = threading.Event()
    signal.signal(signal.SIGHUP, lambda signum, frame: asked.set())
    return asked


def _exit_now(code: int) -> int:
    """End the process as soon as the server has stopped. A collection still waiting on a
    slow Cognito answer would otherwise hold the exit (interpreter shutdown joins worker
    threads) for up to the read timeout; nothing it could still produce is needed."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _print_problems(problems: list[str]) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1


def check_config(path: str, web_config_path: str = "") -> int:
    """Every problem the files have that can be found without calling AWS, both files'."""
    problems: list[str] = []
    try:
        config = load(path)
    except ConfigError as error:
        problems += error.problems
    else:
        problems += profile_problems(config.credentials)
    try:
        load_web_config(web_config_path or None)
    except ConfigError as error:
        problems += error.problems
    if problems:
        return _print_problems(problems)
    print(f"{path}: valid, {len(config.pools)} pools, {len(config.credentials)} credential sets")
    return 0


def serve_config(
    path: str,
    web_config_path: str,
    listen_address: str,
    timeout_offset: float,
    reload_asked: threading.Event | None = None,
    storage_path: str = "",
) -> int:
    try:
        runtime = Runtime(
            lambda: load(path), lambda: load_web_config(web_config_path or None), storage_path
        )
        runtime.start()
    except ConfigError as error:
        return _print_problems(error.problems)
    except StorageError as error:
        return _print_problems([str(error)])
    return serve(runtime, listen_address, timeout_offset, reload_asked=reload_asked)
