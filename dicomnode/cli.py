"""The ``dicomnode`` command line (also ``python -m dicomnode``).

    dicomnode serve [--grace S]                  run the node (receiver, workers, scheduler, dispatcher)
    dicomnode echo PEER                          C-ECHO a configured peer
    dicomnode send FILES... --to PEER            C-STORE files to a configured peer over one association
    dicomnode process FILES... --out DIR         offline: write SR/SC/GSPS files, print one JSON line per image
    dicomnode jobs list [--state S] | show ID | retry ID | retry --dead [--since WHEN] [--reason TEXT] [--dry-run]
    dicomnode deliveries list [--state S] | retry [--dead] [--peer P] [--since WHEN] [--reason TEXT] [--dry-run]
    dicomnode audit [--since T] [--until T] [--event E]... [--outcome O] [--source IP] [--limit N] [--json]
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
    validate,
)
from dicomnode.filemodes import restrict_umask
from dicomnode.runtime.logsetup import configure_logging
from dicomnode.vocabulary import OUTPUT_KIND_NAMES
from model.weights import WeightsError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
ALL_OUTPUTS = OUTPUT_KIND_NAMES


def load(path: str | None) -> NodeConfig:
    """The configuration from ``path``; with no path and no ./config.yaml, the defaults (+ environment)."""
    if path is None and not DEFAULT_CONFIG_PATH.exists():
        data: dict[str, Any] = {}
        env_keys = apply_env_overrides(data, os.environ)
        return validate(data, Path.cwd(), "(defaults + environment)", env_keys)
    return load_config(path)


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line, default=float), flush=True)


# -- commands ------------------------------------------------------------------------------------------
def cmd_serve(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.service import serve

    return serve(config, grace_seconds=args.grace)


def cmd_check_config(config: NodeConfig, args: argparse.Namespace) -> int:
    print(f"# configuration OK: {config.source or 'built-in defaults'}")
    for warning in config.warnings:
        print(f"# WARNING {warning}")
    print(yaml.safe_dump(config.effective(), sort_keys=False), end="")
    return EXIT_OK


def _peer(config: NodeConfig, name: str):
    try:
        return config.peer_by_name(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def cmd_echo(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.dispatch.scu import echo

    peer = _peer(config, args.peer)
    result = echo(peer, config)
    where = f"{peer.name} ({peer.ae_title}@{peer.host}:{peer.port})"
    if result.ok:
        print(f"C-ECHO {where}: success in {result.elapsed_s * 1000:.0f} ms")
        return EXIT_OK
    print(f"C-ECHO {where}: FAILED: {result.reason}", file=sys.stderr)
    return EXIT_FAILED


def cmd_send(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.dispatch.scu import DeliveryError, StoreSession

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


def read_sop_instance_uid(path: str) -> str | None:
    """The file's SOP Instance UID from a header-only read, or None if it cannot be read."""
    import pydicom

    try:
        value = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).get(
            "SOPInstanceUID")
    except Exception:  # noqa: BLE001 - any unreadable file: the JSON line says so
        return None
    return str(value).strip() or None if value is not None else None


# ``dicomnode process`` traces the networks (about 4 s once, about 90 ms less per radiograph: model.traced) only for
# this many files or more, where it pays for itself
PROCESS_TRACED_FROM_FILES = 50


def cmd_process(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.pipeline.analysis import STATUS_ERROR
    from dicomnode.pipeline.failures import JobFailure
    from dicomnode.pipeline.task import Task, run_task
    from dicomnode.runtime.worker import load_predictor

    kinds = [k.strip() for k in args.outputs.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(ALL_OUTPUTS))
    if unknown or not kinds:
        raise ConfigError(f"--outputs: expected a comma-separated subset of {','.join(ALL_OUTPUTS)}, "
                          f"got {args.outputs!r}")
    updates: dict[str, Any] = {}
    if args.weights:
        updates["weights"] = Path(args.weights).resolve()
    config = config.model_copy(update={"model": config.model.model_copy(update=updates)}) if updates else config
    if args.device:
        config.processing.device = args.device
    configure_logging(config.logging.level)
    predictor = load_predictor(config, traced=len(args.files) >= PROCESS_TRACED_FROM_FILES)
    out_dir = Path(args.out).resolve()
    errors = 0
    for name in args.files:
        uid = read_sop_instance_uid(name)
        task = Task(path=name, study_instance_uid="", sop_instance_uid=uid or "", kinds=tuple(kinds),
                    outputs_dir=str(out_dir), max_decoded_bytes=config.processing.max_decoded_mb * 1024 * 1024,
                    flat=True)
        try:
            result = run_task(task, predictor)
        except JobFailure as failed:
            errors += 1
            _emit({"file": name, "sop_instance_uid": uid, "status": STATUS_ERROR,
                   "failure": failed.failure.category, "reason": failed.failure.text})
            continue
        line = {"file": name, "sop_instance_uid": uid}
        if result.summary:
            line.update(result.summary)
            for entry, written in zip(line.get("outputs", []), result.files, strict=True):
                entry["path"] = written.path
        else:
            line.update(status=result.status, reason=result.reason)
        _emit(line)
    return EXIT_FAILED if errors else EXIT_OK


def _operator_audit(config: NodeConfig, db, event: str, **fields: Any) -> None:
    """Audit an operator's action from the command line, naming the operating-system user."""
    import getpass

    from dicomnode.audit import AuditTrail

    trail = AuditTrail.for_config(config, db, synchronous=True)
    try:
        trail.record(event, reason=f"by operator {getpass.getuser()} (command line)", **fields)
    finally:
        trail.close()


def _database(config: NodeConfig):
    from dicomnode.db import Database

    return Database(config.database.url)


def cmd_jobs(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.db.jobs import list_jobs, retry_dead_jobs, retry_job
    from dicomnode.db.report import describe_job, job_row

    if args.jobs_command == "retry" and not args.dead and (args.since or args.reason or args.dry_run):
        print("--since, --reason and --dry-run go with --dead, not with a job id", file=sys.stderr)
        return EXIT_FAILED
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
            elif args.dead:
                ids = retry_dead_jobs(db, since=args.since, reason=args.reason, dry_run=args.dry_run)
                verb = "would be queued again" if args.dry_run else "queued again"
                if ids and not args.dry_run:
                    _operator_audit(config, db, "job-requeued", count=len(ids), reference=f"{len(ids)} dead job(s)")
                print(f"{len(ids)} dead job(s) {verb}" + (f": {', '.join(map(str, ids))}" if ids else ""))
            else:
                job = retry_job(db, args.id)
                _operator_audit(config, db, "job-requeued", reference=f"job {job.id}")
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
            count = retry_dead_deliveries(db, args.peer, since=args.since, reason=args.reason, dry_run=args.dry_run)
            if count and not args.dry_run:
                _operator_audit(config, db, "delivery-requeued", peer=args.peer, count=count,
                                reference=f"{count} delivery(ies)")
            print(f"{count} dead delivery(ies) {'would be queued again' if args.dry_run else 'queued again'}")
        return EXIT_OK
    finally:
        db.dispose()


def cmd_audit(config: NodeConfig, args: argparse.Namespace) -> int:
    from dicomnode.audit import EVENTS
    from dicomnode.db.audit import list_events

    unknown = sorted(set(args.event or []) - set(EVENTS))
    if unknown:
        raise ConfigError(f"--event: unknown event(s) {', '.join(unknown)}; known: {', '.join(EVENTS)}")
    db = _database(config)
    try:
        rows = list_events(db, since=args.since, until=args.until, events=args.event or (),
                           outcome=args.outcome, source=args.source, limit=args.limit)
    finally:
        db.dispose()
    fields = ("id", "at", "event", "outcome", "source", "calling_ae", "called_ae", "peer", "study_instance_uid",
              "sop_instance_uid", "sop_class_uid", "reference", "count", "reason")
    for row in rows:
        data = {name: getattr(row, name) for name in fields}
        data["at"] = row.at.isoformat(timespec="milliseconds") + "Z"
        if args.json:
            if row.details is not None:
                data["details"] = row.details
            _emit(data)
        else:
            who = " ".join(f"{k}={data[k]}" for k in ("source", "calling_ae", "called_ae", "peer") if data[k])
            what = " ".join(f"{k}={data[k]}" for k in ("study_instance_uid", "sop_instance_uid", "reference")
                            if data[k])
            count = f" x{row.count}" if row.count > 1 else ""
            print(f"{data['at']} {row.event}{count} {row.outcome} {who} {what}"
                  + (f" -- {row.reason}" if row.reason else ""))
    return EXIT_OK


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
    p.add_argument("--outputs", default=",".join(ALL_OUTPUTS),
                   help=f"comma-separated: {','.join(ALL_OUTPUTS)} (default all)")
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
    p = jobs.add_parser("retry", parents=[common], help="queue a dead or failed job again, or every dead one")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("id", type=int, nargs="?", help="the job to queue again")
    target.add_argument("--dead", action="store_true", help="every dead job (narrowed by --since, --reason)")
    _bulk_filters(p)

    p = command("deliveries", cmd_deliveries, "inspect and requeue deliveries of results")
    deliveries = p.add_subparsers(dest="deliveries_command", required=True, metavar="ACTION")
    p = deliveries.add_parser("list", parents=[common], help="most recent deliveries first, as JSON lines")
    p.add_argument("--state", choices=("pending", "delivered", "dead"))
    p.add_argument("--limit", type=int, default=50)
    p = deliveries.add_parser("retry", parents=[common], help="give dead deliveries a fresh set of attempts")
    p.add_argument("--dead", action="store_true", help="dead deliveries (the default; only those are retried)")
    p.add_argument("--peer", help="only deliveries to this peer")
    _bulk_filters(p)

    p = command("audit", cmd_audit, "read the audit trail, newest first")
    p.add_argument("--since", type=since_time, metavar="T", help="ISO time (UTC) or an age: 15m, 24h, 7d")
    p.add_argument("--until", type=since_time, metavar="T", help="ISO time (UTC) or an age")
    p.add_argument("--event", action="append", metavar="E", help="only this event (repeatable), e.g. "
                   "association-rejected, connection-refused, instance-received, result-sent")
    p.add_argument("--outcome", choices=("success", "minor-failure", "serious-failure", "major-failure"))
    p.add_argument("--source", metavar="IP", help="only events from this remote address")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="one JSON object per line, with details")
    return parser


def since_time(text: str):
    """``--since``: an ISO 8601 time (UTC unless it says otherwise) or an age such as 30m, 12h, 2d."""
    from datetime import UTC, datetime, timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    now = datetime.now(UTC).replace(tzinfo=None)
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time or an age (30m, 12h, 2d): {text!r}") from None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def _bulk_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=since_time, metavar="WHEN",
                   help="only those that died (last attempt) at or after WHEN: an ISO time (UTC) or an age (2h, 1d)")
    p.add_argument("--reason", metavar="TEXT", help="only those whose last error contains TEXT (case-insensitive)")
    p.add_argument("--dry-run", action="store_true", help="say how many, change nothing")


def main(argv: Sequence[str] | None = None) -> int:
    restrict_umask()  # results, spool and database files are not world-readable (see dicomnode.filemodes)
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
