"""The ``dicomnode`` command line (also ``python -m dicomnode``).

    dicomnode serve [--grace S]                  run the node (receiver, workers, scheduler, dispatcher)
    dicomnode echo PEER                          C-ECHO a configured peer
    dicomnode send FILES... --to PEER            C-STORE files to a configured peer over one association
    dicomnode process FILES... --out DIR         offline: write SR/SC/GSPS files, print one JSON line per image
    dicomnode jobs list [--state S] | show ID | retry ID
    dicomnode deliveries list [--state S] | retry [--peer P]
    dicomnode check-config                       print the validated configuration, or the error (exit 2)

Every command takes ``--config FILE`` (default ``./config.yaml``; without that file, the built-in defaults
plus ``DICOMNODE__*`` environment overrides). Exit codes: 0 success, 1 failure, 2 configuration error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from dicomnode.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    NodeConfig,
    apply_env_overrides,
    load_config,
)
from dicomnode.process.logsetup import configure_logging
from model.weights import WeightsError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
ALL_OUTPUTS = ("sr", "landmarks", "sc", "gsps")


def load(path: str | None) -> NodeConfig:
    """The configuration from ``path``; with no path and no ./config.yaml, the defaults (+ environment)."""
    if path is None and not DEFAULT_CONFIG_PATH.exists():
        data: dict[str, Any] = {}
        apply_env_overrides(data, os.environ)
        try:
            return NodeConfig.model_validate(data, context={"base_dir": Path.cwd()})
        except ValueError as exc:
            raise ConfigError(f"(defaults + environment): {exc}") from None
    return load_config(path)


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line, default=float), flush=True)


# -- commands ------------------------------------------------------------------------------------------
def cmd_serve(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.service import serve

    return serve(config, grace_seconds=args.grace)


def cmd_check_config(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.db import redact_url

    data = config.model_dump(mode="json")
    data["database"]["url"] = redact_url(config.database.url)
    print(f"# configuration OK: {config.source or 'built-in defaults'}")
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return EXIT_OK


def _peer(config: NodeConfig, name: str):
    try:
        return config.peer_by_name(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def cmd_echo(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.scu import echo

    peer = _peer(config, args.peer)
    result = echo(peer, config)
    where = f"{peer.name} ({peer.ae_title}@{peer.host}:{peer.port})"
    if result.ok:
        print(f"C-ECHO {where}: success in {result.elapsed_s * 1000:.0f} ms")
        return EXIT_OK
    print(f"C-ECHO {where}: FAILED: {result.reason}", file=sys.stderr)
    return EXIT_FAILED


def cmd_send(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.scu import DeliveryError, StoreSession

    peer = _peer(config, args.to)
    try:
        with StoreSession(peer, config, args.files) as session:
            results = session.send_all()
    except DeliveryError as exc:
        print(f"send to {peer.name} failed: {exc}", file=sys.stderr)
        results = exc.results
        failed = True
    except (OSError, ValueError) as exc:
        print(f"cannot send: {exc}", file=sys.stderr)
        return EXIT_FAILED
    else:
        failed = False
    for result in results:
        status = f"0x{result.status:04X}" if result.status is not None else "-"
        print(f"{'OK' if result.ok else 'FAILED'} {status} {result.sop_instance_uid} {result.source or ''}"
              + (f" ({result.error})" if result.error else ""))
    failed = failed or len(results) < len(args.files) or not all(r.ok for r in results)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_process(config: NodeConfig, args: argparse.Namespace) -> int:
    import pydicom

    from dicomnode.process.analysis import STATUS_ERROR, analyse, output_kind
    from dicomnode.process.output_files import write_durably
    from dicomnode.process.worker import load_predictor

    kinds = [k.strip() for k in args.outputs.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(ALL_OUTPUTS))
    if unknown or not kinds:
        raise ConfigError(f"--outputs: expected a comma-separated subset of {','.join(ALL_OUTPUTS)}, got {args.outputs!r}")
    updates: dict[str, Any] = {}
    if args.weights:
        updates["weights"] = Path(args.weights).resolve()
    config = config.model_copy(update={"model": config.model.model_copy(update=updates)}) if updates else config
    if args.device:
        config.processing.device = args.device
    configure_logging(config.logging.level)
    predictor = load_predictor(config)
    out_dir = Path(args.out).resolve()
    errors = 0
    for name in args.files:
        try:
            ds = pydicom.dcmread(name)
            analysis = analyse(ds, predictor, kinds)
            line = {"file": name, **analysis.summary()}
            for ds_out, entry in zip(analysis.outputs, line.get("outputs", []), strict=True):
                path = out_dir / f"{analysis.sop_instance_uid}.{output_kind(ds_out)}.dcm"
                entry["path"] = str(write_durably(ds_out, path))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            errors += 1
            line = {"file": name, "sop_instance_uid": None, "status": STATUS_ERROR,
                    "reason": f"{type(exc).__name__}: {exc}"}
        _emit(line)
    return EXIT_FAILED if errors else EXIT_OK


def _database(config: NodeConfig):
    from dicomnode.db import Database

    return Database(config.database.url)


def cmd_jobs(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.db.jobs import list_jobs, retry_job
    from dicomnode.db.report import describe_job, job_row

    db = _database(config)
    try:
        if args.jobs_command == "list":
            rows = [job_row(job) for job in list_jobs(db, args.state, args.limit)]
            if args.json:
                for row in rows:
                    _emit(row)
            else:
                print(f"{'ID':>6} {'KIND':<16} {'STATE':<8} {'TRY':>5} {'NEXT ATTEMPT (UTC)':<21} LAST ERROR")
                for r in rows:
                    print(f"{r['id']:>6} {r['kind']:<16} {r['state']:<8} {r['attempts']:>2}/{r['max_attempts']:<2} "
                          f"{r['next_attempt_at'] or '':<21} {(r['last_error'] or '')[:80]}")
            return EXIT_OK
        try:
            if args.jobs_command == "show":
                print(json.dumps(describe_job(db, args.id), indent=2, default=float))
            else:
                job = retry_job(db, args.id)
                print(f"job {job.id} queued again ({job.max_attempts} attempts)")
        except (LookupError, ValueError) as exc:
            print(str(exc.args[0]), file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    finally:
        db.dispose()


def cmd_deliveries(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.db.deliveries import retry_dead_deliveries
    from dicomnode.db.report import list_deliveries

    db = _database(config)
    try:
        if args.deliveries_command == "list":
            for row in list_deliveries(db, args.state, args.limit):
                _emit(row)
        else:
            print(f"{retry_dead_deliveries(db, args.peer)} dead delivery(ies) queued again")
        return EXIT_OK
    finally:
        db.dispose()


# -- parser --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="configuration file (default ./config.yaml, else built-in defaults)")
    parser = argparse.ArgumentParser(prog="dicomnode", description="KneeAlign DICOM node: knee alignment "
                                     "(aTFA) on AP knee radiographs, results back as SR and overlay.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[NodeConfig, argparse.Namespace], int], text: str):
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(handler=handler)
        return p

    p = command("serve", cmd_serve, "run the node until SIGTERM/SIGINT")
    p.add_argument("--grace", type=float, default=30.0, metavar="S",
                   help="seconds running jobs get to finish at shutdown (default 30)")
    command("check-config", cmd_check_config, "validate the configuration and print it")
    p = command("echo", cmd_echo, "C-ECHO a configured peer")
    p.add_argument("peer", metavar="PEER", help="peer name from the configuration")
    p = command("send", cmd_send, "C-STORE DICOM files to a configured peer")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--to", required=True, metavar="PEER", help="peer name from the configuration")
    p = command("process", cmd_process, "measure images offline; one JSON line per image on stdout")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the SR/SC/GSPS files")
    p.add_argument("--outputs", default=",".join(ALL_OUTPUTS), help="comma-separated: sr,landmarks,sc,gsps (default all)")
    p.add_argument("--weights", metavar="W", help="model weights (default: model.weights of the configuration)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override processing.device")

    p = command("jobs", cmd_jobs, "inspect and requeue processing jobs")
    jobs = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    p = jobs.add_parser("list", parents=[common], help="most recent jobs first")
    p.add_argument("--state", choices=("queued", "running", "done", "failed", "dead"))
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = jobs.add_parser("show", parents=[common], help="a job with its instances, results and deliveries")
    p.add_argument("id", type=int)
    p = jobs.add_parser("retry", parents=[common], help="queue a dead or failed job again")
    p.add_argument("id", type=int)

    p = command("deliveries", cmd_deliveries, "inspect and requeue deliveries of results")
    deliveries = p.add_subparsers(dest="deliveries_command", required=True, metavar="ACTION")
    p = deliveries.add_parser("list", parents=[common], help="most recent deliveries first, as JSON lines")
    p.add_argument("--state", choices=("pending", "delivered", "dead"))
    p.add_argument("--limit", type=int, default=50)
    p = deliveries.add_parser("retry", parents=[common], help="give dead deliveries a fresh set of attempts")
    p.add_argument("--peer", help="only deliveries to this peer")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load(getattr(args, "config", None))
        return args.handler(config, args)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except WeightsError as exc:  # missing or mismatched model weights: say which file and why
        print(f"model weights error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # e.g. `dicomnode jobs show 1 | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter quiet at exit
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
