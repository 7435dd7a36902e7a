"""The ``crowdstream`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import gzip
import logging
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from config import Settings, load_settings
from pipelines.logs import configure as configure_logs
from pipelines.topology import Topology, TopologyError, load_topology, render_graph

if TYPE_CHECKING:
    from pipelines.broker import EmbeddedBroker
    from pipelines.pushwatch import PushReport

__all__ = ["main"]

log = logging.getLogger("crowdstream")


def _settings_args(parser: argparse.ArgumentParser, *, worker: bool = False) -> None:
    parser.add_argument("--broker", help="broker URL, kafka://host:port [env: CROWDSTREAM_BROKER]")
    if worker:
        parser.add_argument("--http-host", help="HTTP address [env: CROWDSTREAM_HTTP_HOST]")
        parser.add_argument(
            "--http-port",
            type=int,
            help="HTTP port, 0 for any free one [env: CROWDSTREAM_HTTP_PORT]",
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crowdstream",
        description="Crowdsourced stream processing on Kafka: classify a stream, "
        "let a crowd label a well-chosen sample, keep learning.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    broker = sub.add_parser(
        "broker", help="run the embedded broker (Apache Kafka) in the foreground"
    )
    broker.add_argument(
        "--port", type=int, help="port on 127.0.0.1 [env: CROWDSTREAM_EMBEDDED_BROKER_PORT]"
    )
    broker.add_argument(
        "--fetch", action="store_true", help="only fetch the pinned Kafka release, then exit"
    )

    encoders = sub.add_parser(
        "encoders", help="where the sentence encoders' ONNX models are, and whether fetched"
    )
    encoders.add_argument(
        "--fetch",
        action="store_true",
        help="fetch the pinned models from Maven Central (or CROWDSTREAM_MAVEN_REPOSITORY)",
    )

    up = sub.add_parser("up", help="start a pipeline's processing elements")
    up.add_argument("pipeline", nargs="?", help="pipeline name or topology YAML [default: crisis]")
    up.add_argument("--embedded", action="store_true", help="start the embedded broker too")
    up.add_argument("--broker-port", type=int, help="port of the embedded broker [default: 9092]")
    up.add_argument(
        "--crowd",
        metavar="CROWD",
        help="crowd behind the annotator: simulated, web, none, or package.module:factory "
        "for an adapter of your own (docs/crowd.md) [env: CROWDSTREAM_CROWD]",
    )
    up.add_argument(
        "--pe",
        nargs="+",
        metavar="NAME",
        help="run only these of the topology's PEs (`crowdstream topology` lists them)",
    )
    up.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PE.PARAM=VALUE",
        help="override a topology parameter, e.g. annotator.speed=20",
    )
    up.add_argument("--partitions", type=int, help="partitions of data-flow topics")
    up.add_argument(
        "--log-format", choices=["text", "json"], help="log lines [env: CROWDSTREAM_LOG_FORMAT]"
    )
    _settings_args(up, worker=True)

    push = sub.add_parser("push", help="push JSON lines into <pipeline>.items.raw")
    push.add_argument("file", help="a JSON-lines file (.gz too), or - for standard input")
    push.add_argument(
        "--rate", type=float, help="items per second at most (default: as the pipeline takes them)"
    )
    push.add_argument(
        "--max-lag",
        type=int,
        default=5000,
        help="hold back while the pipeline's readers are more records behind than this "
        "[default: 5000]; 0 pushes regardless (a burst, which load shedding may cut)",
    )
    push.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="then wait up to this many seconds to report what became of the items "
        "(classified, rejected, shed) [default: 120]; 0 does not wait",
    )
    push.add_argument("--pipeline", help="pipeline name [default: crisis]")
    _settings_args(push)

    tail = sub.add_parser("tail", help="read classified items")
    tail.add_argument("--pipeline", help="pipeline name [default: crisis]")
    tail.add_argument("--classifier", help="only items with a tag from this classifier")
    tail.add_argument("--tag", help="only items with this tag (needs --classifier)")
    tail.add_argument(
        "--source",
        choices=["model", "crowd", "propagated"],
        help="only items whose tag came from the model, the crowd (the item was labeled) "
        "or a labeled near-duplicate (needs --classifier)",
    )
    tail.add_argument("--count", type=int, help="stop after this many items")
    tail.add_argument("--json", action="store_true", help="print records as JSON lines")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest item instead of new ones"
    )
    tail.add_argument("--timeout", type=float, help="stop after this many idle seconds")
    _settings_args(tail)

    job = sub.add_parser("job", help="submit, inspect and cancel jobs")
    job_sub = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    submit = job_sub.add_parser("submit", help="submit a job file (YAML or JSON)")
    submit.add_argument("file", help="the job file (docs/jobs.md)")
    submit.add_argument("--wait", action="store_true", help="follow the job until it ends")
    status = job_sub.add_parser("status", help="a job's latest status (all jobs without ID)")
    status.add_argument("job_id", nargs="?", help="the job's id")
    status.add_argument("--wait", action="store_true", help="follow the job until it ends")
    cancel = job_sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id", help="the job's id")
    for action in (submit, status, cancel):
        action.add_argument("--pipeline", help="pipeline name or topology YAML [default: crisis]")
        action.add_argument("--timeout", type=float, help="--wait at most this many seconds")
        _settings_args(action)

    clf = sub.add_parser(
        "classifier", help="add, pause, resume, retire and list classifiers; promote gold"
    )
    clf_sub = clf.add_subparsers(dest="classifier_command", required=True, metavar="ACTION")
    add = clf_sub.add_parser("add", help="add a classifier to the running pipeline")
    add.add_argument("name", help="its name: lower case letters, digits and _")
    add.add_argument("--question", required=True, help="what the crowd is asked")
    add.add_argument("--tags", nargs="+", required=True, help="its tags (at least two)")
    add.add_argument(
        "--gold", help="gold questions: a JSON lines file of {id, text, tag} (docs/console.md)"
    )
    add.add_argument(
        "--no-na", action="store_true", help="workers may not answer N/A: every answer is a tag"
    )
    add.add_argument(
        "--examples", help="examples shown to workers: a JSON lines file of {text, tag} (at most 5)"
    )
    listing = clf_sub.add_parser("list", help="every classifier and its state")
    listing.add_argument("--json", action="store_true", help="print records as JSON lines")
    gold = clf_sub.add_parser("gold", help="promote an item to a classifier's gold questions")
    gold.add_argument("name", help="the classifier")
    gold.add_argument("--id", required=True, help="the item's id")
    gold.add_argument("--text", required=True, help="the item's text")
    gold.add_argument("--tag", required=True, help="its known tag")
    changes = [add, listing, gold]
    for verb, what in (
        ("pause", "stop its crowd tasks and retrains; it is still classified"),
        ("resume", "make a paused classifier active again"),
        ("retire", "stop classifying on it for good (its labels and models stay)"),
    ):
        change = clf_sub.add_parser(verb, help=what)
        change.add_argument("name", help="the classifier")
        changes.append(change)
    for action in changes:
        action.add_argument("--pipeline", help="pipeline name or topology YAML [default: crisis]")
        _settings_args(action)

    status = sub.add_parser("status", help="a live view of running workers, from their metrics")
    status.add_argument(
        "--url",
        action="append",
        help="a worker's HTTP address; repeat for each worker [default: this host's "
        "http_host:http_port]",
    )
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    status.add_argument("--once", action="store_true", help="show one view and exit")
    status.add_argument("--json", action="store_true", help="print each view as a JSON line")

    topo = sub.add_parser("topology", help="print a pipeline's PEs and topics as a graph")
    topo.add_argument(
        "pipeline", nargs="?", help="pipeline name or topology YAML [default: crisis]"
    )
    topo.add_argument("--partitions", type=int, help="partitions of data-flow topics")

    demo = sub.add_parser("demo", help="run the crisis pipeline end to end with a simulated crowd")
    demo.add_argument(
        "--items", type=int, help="messages to stream, lap after lap [default: all 13,000]"
    )
    demo.add_argument("--rate", type=float, default=60.0, help="items per second [default: 60]")
    demo.add_argument(
        "--prefill",
        type=int,
        default=10_000,
        help="the crowd starts once the learner's teacher has embedded this many "
        "streamed items; 0: at once [default: 10000]",
    )
    demo.add_argument(
        "--answers", type=int, default=1000, help="crowd answers per classifier [default: 1000]"
    )
    demo.add_argument(
        "--holdout",
        type=int,
        default=3000,
        # 3,000 rather than 1,000: an AUC near 0.82 on 1,000 messages has a standard
        # error of about 0.014, more than the gap a run is meant to show.
        help="messages held out and scored [default: 3000]",
    )
    demo.add_argument("--reports", default="reports", help="where to write the report")
    return parser


def _topology(name: str | None, settings: Settings, overrides: Sequence[str] = ()) -> Topology:
    topology = load_topology(name or settings.pipeline)
    if not overrides:
        return topology
    data = topology.model_dump(mode="json")
    for item in overrides:
        key, sep, value = item.partition("=")
        pe_name, *path = key.split(".")
        if not (sep and path and all([pe_name, *path])):
            raise TopologyError(f"--set {item!r}: expected PE.PARAM=VALUE")
        if pe_name not in data["params"]:
            raise TopologyError(f"--set {item!r}: unknown PE {pe_name!r}")
        # A dotted PARAM reaches into a group of parameters (annotator.quality.threshold).
        node = data["params"][pe_name]
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TopologyError(f"--set {item!r}: {part!r} is not a group of parameters")
        node[path[-1]] = yaml.safe_load(value)
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(f"invalid --set: {exc}") from None


def _embedded_broker(settings: Settings) -> EmbeddedBroker:
    from pipelines.broker import EmbeddedBroker

    return EmbeddedBroker(
        settings.embedded_broker_port,
        settings.data_dir / "kafka",
        heap_mb=settings.embedded_broker_heap_mb,
        cache_dir=settings.kafka_cache_dir,
    )


def _cmd_encoders(args: argparse.Namespace) -> int:
    from pe.common.encoder_files import FETCH, MINILM

    if args.fetch:
        MINILM.fetch()
    state = "fetched" if MINILM.ready else f"not fetched ({FETCH})"
    print(f"{MINILM.artifact} {MINILM.version}: {state}, {MINILM.folder}", flush=True)
    return 0 if MINILM.ready else 1


def _cmd_broker(args: argparse.Namespace) -> int:
    from pipelines.kafka.dist import KafkaDist, default_cache_dir

    settings = load_settings(embedded_broker_port=args.port)
    if args.fetch:
        libs = KafkaDist(settings.kafka_cache_dir or default_cache_dir()).fetch()
        print(f"Apache Kafka jars in {libs}", flush=True)
        return 0
    broker = _embedded_broker(settings)
    # SIGTERM stops the broker as Ctrl-C does: a controlled shutdown that flushes it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        broker.start()
        print(
            f"embedded broker (Apache Kafka) on {broker.url}, data in {broker.data_dir}, "
            f"log in {broker.log_file}; Ctrl-C stops it",
            flush=True,
        )
        code = broker.wait()
        print(f"the embedded broker exited with code {code}; see {broker.log_file}")
        return code or 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


def _cmd_up(args: argparse.Namespace) -> int:
    import uvloop

    from pipelines.app import build_worker
    from pipelines.logs import logging_config
    from pipelines.web import check_port_free
    from runtime import closed_writes
    from runtime.admin import declare_topics

    overrides = {
        "broker": args.broker,
        "crowd": args.crowd,
        "http_host": args.http_host,
        "http_port": args.http_port,
        "partitions": args.partitions,
        "embedded_broker_port": args.broker_port,
        "log_format": args.log_format,
    }
    settings = load_settings(**overrides)
    topology = _topology(args.pipeline, settings, args.set)
    configure_logs(settings.log_format, settings.log_level, topology.name)
    check_port_free(settings.http_host, settings.http_port)
    broker: EmbeddedBroker | None = None
    if args.embedded:
        broker = _embedded_broker(settings)
        broker.start()
        broker.supervise()
        settings = load_settings(**{**overrides, "broker": broker.url})
    try:
        created = asyncio.run(
            declare_topics(
                settings.bootstrap_servers,
                topology.topics(settings.partitions).values(),
                settings.topic_policy(),
                settings.broker_wait_s,
                settings.security(),
            )
        )
        if created:
            log.info("declared topics: %s", ", ".join(created))
        worker = build_worker(settings, topology, pes=args.pe, embedded=broker is not None)
        print(f"crowdstream {topology.name}: PEs {', '.join(worker.pes)}", flush=True)
        where = f" (embedded Apache Kafka, data in {broker.data_dir})" if broker else ""
        print(f"broker: {settings.broker}{where}", flush=True)
        base = f"http://{settings.http_host}:{settings.http_port}"
        print(f"http: {base} (POST /items, GET /metrics, GET /healthz)", flush=True)
        if settings.crowd == "web" and "annotator" in worker.pes:
            print(
                f"crowd: workers open {base}/work; API and its OpenAPI document at "
                f"{base}/api/v1/openapi.json",
                flush=True,
            )
        # uvloop's event loop costs less per callback than asyncio's; the data plane
        # runs thousands of them a second.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        closed_writes.install()  # uvloop's error for a closed connection, for aiokafka
        worker.runner(
            loglevel=settings.log_level,
            logging_config=logging_config(settings.log_format, settings.log_level, topology.name),
            quiet=True,
            redirect_stdouts=False,
        ).execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from pipelines.client import push_and_follow

    settings = load_settings(broker=args.broker)
    pipeline = args.pipeline or settings.pipeline
    if args.max_lag < 0 or args.wait < 0:
        print("crowdstream push: --max-lag and --wait must not be negative", file=sys.stderr)
        return 2

    def push(lines: Iterable[bytes]) -> PushReport:
        return asyncio.run(
            push_and_follow(
                settings.bootstrap_servers,
                pipeline,
                lines,
                args.rate,
                max_lag=args.max_lag or None,
                wait_s=args.wait,
                security=settings.security(),
            )
        )

    if args.file == "-":
        report = push(line.encode() for line in sys.stdin)
    else:
        path = Path(args.file)
        if not path.is_file():
            print(f"crowdstream push: no file {args.file!r}", file=sys.stderr)
            return 2
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            report = push(handle)
    print(report.describe(f"{pipeline}.items.raw"), flush=True)
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from pipelines.client import tail_classified

    for given in ("tag", "source"):
        if getattr(args, given) and not args.classifier:
            print(f"crowdstream tail: --{given} needs --classifier", file=sys.stderr)
            return 2
    settings = load_settings(broker=args.broker)
    pipeline = args.pipeline or settings.pipeline
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            tail_classified(
                settings.bootstrap_servers,
                pipeline,
                classifier=args.classifier,
                tag=args.tag,
                source=args.source,
                count=args.count,
                as_json=args.json,
                from_beginning=args.from_beginning,
                idle_timeout_s=args.timeout,
                security=settings.security(),
            )
        )
    return 0


def _cmd_job(args: argparse.Namespace) -> int:
    from pipelines.jobclient import cancel_job, show_status, submit_job

    settings = load_settings(broker=args.broker)
    name = args.pipeline or settings.pipeline
    classifiers = None
    try:
        topology = _topology(name, settings)
        pipeline, classifiers = topology.name, {c.name: c for c in topology.classifiers}
    except TopologyError:
        if Path(name).suffix in {".yaml", ".yml"} or "/" in name:
            raise
        # A pipeline deployed from a topology file kept elsewhere: its name is enough
        # (as for `push`); its jobs PE checks the spec and fails the job with a reason.
        pipeline = name
        print(
            f"no topology file for pipeline {name!r} here: the pipeline checks the job",
            file=sys.stderr,
        )
    if args.job_command == "submit":
        path = Path(args.file)
        return asyncio.run(
            submit_job(settings, pipeline, classifiers, path, args.wait, args.timeout)
        )
    if args.job_command == "cancel":
        return asyncio.run(cancel_job(settings, pipeline, args.job_id))
    return asyncio.run(show_status(settings, pipeline, args.job_id, args.wait, args.timeout))


def _cmd_classifier(args: argparse.Namespace) -> int:
    from pe.common.catalog import ClassifierRecord
    from pe.params import ClassifierSpec, GoldQuestion, TagExample
    from pipelines.classifierclient import read_catalog, state_change, write_change

    settings = load_settings(broker=args.broker)
    name = args.pipeline or settings.pipeline
    try:
        topology = _topology(name, settings)
        pipeline, seed = topology.name, list(topology.classifiers)
    except TopologyError:
        if Path(name).suffix in {".yaml", ".yml"} or "/" in name:
            raise
        pipeline, seed = name, []  # as for `job`: the workers check the change too
    catalog = asyncio.run(read_catalog(settings, pipeline, seed))
    if args.classifier_command == "list":
        for record in catalog.records():
            if args.json:
                print(record.model_dump_json())
            else:
                spec = record.spec
                print(
                    f"{spec.name:<24} {record.state:<8} {'/'.join(spec.tags):<24} {spec.question}"
                )
        return 0
    if args.classifier_command == "add":

        def json_lines(path: str | None) -> list[str]:
            lines = Path(path).read_text().splitlines() if path else []
            return [line for line in lines if line.strip()]

        spec = ClassifierSpec(
            name=args.name,
            question=args.question,
            tags=args.tags,
            gold=[GoldQuestion.model_validate_json(line) for line in json_lines(args.gold)],
            na_allowed=not args.no_na,
            examples=[TagExample.model_validate_json(line) for line in json_lines(args.examples)],
        )
        change = ClassifierRecord(spec=spec, by="cli")
    elif args.classifier_command == "gold":
        current = catalog.get(args.name)
        if current is None:
            raise ValueError(f"no classifier {args.name!r}")
        question = GoldQuestion(id=args.id, text=args.text, tag=args.tag)
        change = current.with_gold(question, "cli")
    else:
        change = state_change(catalog, args.name, args.classifier_command)
    asyncio.run(write_change(settings, pipeline, catalog, change))
    done = "gold question added" if change.change == "gold_added" else change.state
    print(f"classifier {change.name} {done} on {pipeline} (workers apply it within a second)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from pipelines.status import run_status

    if args.interval <= 0:
        raise ValueError("--interval must be positive")
    settings = load_settings()
    urls = args.url or [f"http://{settings.http_host}:{settings.http_port}"]
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(
            run_status(urls, interval_s=args.interval, once=args.once, as_json=args.json)
        )
    return 0


def _cmd_topology(args: argparse.Namespace) -> int:
    settings = load_settings(partitions=args.partitions)
    print(render_graph(_topology(args.pipeline, settings), settings.partitions))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    for name in ("items", "rate", "answers", "holdout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SystemExit(f"crowdstream demo: --{name} must be positive, not {value}")
    if args.prefill < 0:
        raise SystemExit(f"crowdstream demo: --prefill must not be negative, not {args.prefill}")
    try:
        return run_demo(
            items=args.items,
            rate=args.rate,
            prefill=args.prefill,
            answers=args.answers,
            holdout=args.holdout,
            reports_dir=Path(args.reports),
        )
    except ValueError as error:
        raise SystemExit(f"crowdstream demo: {error}") from None


COMMANDS = {
    "broker": _cmd_broker,
    "encoders": _cmd_encoders,
    "up": _cmd_up,
    "push": _cmd_push,
    "tail": _cmd_tail,
    "job": _cmd_job,
    "classifier": _cmd_classifier,
    "status": _cmd_status,
    "topology": _cmd_topology,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A process that hangs or crashes (SIGABRT, SIGSEGV...) writes every thread's stack
    # to stderr, where its log is: what held a stuck worker is then on record. (The
    # process's own stderr: a caller may have replaced sys.stderr with no file.)
    if sys.__stderr__ is not None:
        faulthandler.enable(file=sys.__stderr__)
    try:
        settings = load_settings()
        configure_logs(settings.log_format, settings.log_level)
        return COMMANDS[args.command](args)
    except (TopologyError, ValidationError, ValueError, ConnectionError, FileNotFoundError) as exc:
        print(f"crowdstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # BrokerError and friends: say what failed, no traceback
        print(f"crowdstream {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
