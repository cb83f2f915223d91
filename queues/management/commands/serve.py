"""``manage.py serve``: run haraqa's HTTP API under gunicorn on the given volumes."""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import resource
import signal
import socket
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.urls import get_resolver
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.http.message import MAX_HEADERS
from gunicorn.http.message import Request as GunicornRequest
from gunicorn.http.parser import RequestParser

from haraqa_site.environment import LIMIT, PORT, POSITIVE, SECONDS, choice, from_environment
from queues import metrics
from queues.api import deadlines, errors, watch
from queues.conf import conf
from queues.storage import Store, VolumeError
from queues.storage.report import counted

from .recover import recover_at_startup

MAX_DESCRIPTORS = 1 << 16
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameters (malloc.h)
FREED_BYTES_KEPT = 32 << 20  # freed memory each malloc arena keeps for reuse
OWN_MAPPING_BYTES = 8 << 20  # allocations this large get a mapping of their own
MAX_HEADER_FIELD_BYTES = 1 << 20  # an X-Sizes of 1 MiB: all the head Go's server (haraqa's) takes
MAX_HEAD_BYTES = MAX_HEADER_FIELD_BYTES + (64 << 10)  # that header, the request line and the others
# haraqa's boolean flags: (flag, setting and environment variable, what it turns on)
SWITCHES = [
    ("cors", "HARAQA_CORS", "Access-Control-Allow-Origin: * on every answer"),
    ("docs", "HARAQA_DOCS", "/docs/ (Swagger UI, Redoc, swagger.yaml) and /api/schema/"),
    ("prometheus", "HARAQA_PROMETHEUS", "/metrics: request and queue metrics summed over all workers"),
]


class GunicornApplication(BaseApplication):
    """gunicorn embedded in the command: options come from flags, not a config file."""

    def __init__(self, wsgi_app, options: dict):
        self.wsgi_app = wsgi_app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.wsgi_app


class BoundedHeadRequest(GunicornRequest):
    """gunicorn's HTTP/1 request with bounds on its whole head: ``MAX_HEAD_BYTES``, and
    ``--client-timeout`` for each read of it (and the connection's other waits on its client).

    gunicorn bounds a head only by its number of fields times the size of one, 100 MiB once a
    field may hold a long X-Sizes, and rescans all it holds after each 8 KiB read: refusing
    16 MiB of junk headers took 36 s of CPU (measured). Here a head is refused with 431 as
    soon as more than ``MAX_HEAD_BYTES`` of it has arrived. And gunicorn waits for ever for
    the rest of a head once part of it came: a client that stopped there held a worker thread
    until the server stopped (measured); now its connection is dropped after the client timeout.
    """

    def parse(self, unreader):
        self.max_buffer_headers = MAX_HEAD_BYTES  # gunicorn set its own just before calling parse
        sock = getattr(unreader, "sock", None)
        if self.req_number == 1:  # the connection's first request: the bound lasts its life
            deadlines.limit_connection_waits(sock, conf.client_timeout)
        try:
            return super().parse(unreader)
        except BlockingIOError:  # the client timeout ran out
            # gunicorn's close would wait 2 s for the client's end of the connection, on the loop
            # that serves every connection of the worker (measured: a request meanwhile took 2 s)
            deadlines.shut_down(sock, socket.SHUT_RDWR)
            raise


class Command(BaseCommand):
    requires_system_checks: list = []  # the volumes are checked in handle(), by Store.prepare_volumes
    help = (
        "Serve the haraqa API on VOLUME [VOLUME ...] (default: $HARAQA_VOLUMES). Writes go to every "
        "volume in order; reads come from the last."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("volumes", nargs="*", metavar="VOLUME", help="volume directories (created if missing)")
        parser.add_argument(
            "--port", type=PORT, default=from_environment("HARAQA_PORT", 4353, PORT), help="HTTP port (haraqa -http); $HARAQA_PORT"
        )
        parser.add_argument("--bind", default=os.environ.get("HARAQA_BIND", "127.0.0.1"), help="address to listen on; $HARAQA_BIND")
        parser.add_argument(
            "--workers", type=POSITIVE, default=from_environment("HARAQA_WORKERS", 4, POSITIVE),
            help="gunicorn worker processes; $HARAQA_WORKERS",
        )
        parser.add_argument(
            "--threads", type=POSITIVE, default=from_environment("HARAQA_THREADS", 4, POSITIVE),
            help="threads per worker; $HARAQA_THREADS",
        )
        parser.add_argument("--entries", type=POSITIVE, default=settings.HARAQA_ENTRIES, help="messages per segment file; $HARAQA_ENTRIES")
        parser.add_argument("--limit", type=LIMIT, default=settings.HARAQA_LIMIT, help="default consume limit, -1 = none; $HARAQA_LIMIT")
        parser.add_argument(
            "--fsync", type=choice("never", "batch"), default=settings.HARAQA_FSYNC, metavar="{never,batch}",
            help="never (haraqa's behaviour) or batch: fdatasync every batch before answering; $HARAQA_FSYNC",
        )
        parser.add_argument(
            "--max-batch-bytes", type=POSITIVE, default=settings.HARAQA_MAX_BATCH_BYTES,
            help="largest accepted produce body (413 beyond); $HARAQA_MAX_BATCH_BYTES",
        )
        parser.add_argument(
            "--client-timeout", type=SECONDS, default=settings.HARAQA_CLIENT_TIMEOUT, metavar="SECONDS",
            help="a request whose head or body stalls this long is dropped or fails with 400 (freeing the topic "
            "and the thread), a consume whose client stops reading this long is cut off; 0: wait forever; "
            "$HARAQA_CLIENT_TIMEOUT",
        )
        for flag, name, what in SWITCHES:
            parser.add_argument(
                f"--{flag}", action=argparse.BooleanOptionalAction, default=getattr(settings, name),
                help=f"{what} (haraqa -{flag}); on unless ${name}=0",
            )
        parser.add_argument(
            "--recover", action=argparse.BooleanOptionalAction, default=True,
            help="before serving, repair every topic from the volumes that hold it intact (manage.py recover)",
        )
        parser.add_argument(
            "--full-recover", action="store_true",
            help="at startup also verify every message's checksum (reads all data) instead of the structure only",
        )
        parser.add_argument(
            "--access-log", action=argparse.BooleanOptionalAction, default=settings.HARAQA_ACCESS_LOG,
            help="one line per request on stderr: method, path, status, bytes, duration; on unless $HARAQA_ACCESS_LOG=0",
        )

    def run_from_argv(self, argv: list[str]) -> None:
        """With metrics on, re-execute once with a fresh PROMETHEUS_MULTIPROC_DIR: prometheus_client
        chooses per-process or shared counters when it is imported, which has happened by now."""
        self._called_from_command_line = True  # as Django's run_from_argv: bad flags print usage, exit 2
        options = self.create_parser(argv[0], argv[1]).parse_args(argv[2:])
        if options.prometheus and not metrics.multiprocess_dir_ready():
            metrics.prepare_multiprocess_dir()
            sys.stdout.flush()
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
        super().run_from_argv(argv)

    def handle(self, *args, **opts) -> None:
        volumes = [os.path.abspath(v) for v in (opts["volumes"] or settings.HARAQA_VOLUMES)]
        if not volumes:
            raise CommandError("no volume given: pass VOLUME arguments or set HARAQA_VOLUMES")
        self._apply_settings(volumes, opts)
        check_port_free(opts["bind"], opts["port"])
        raise_descriptor_limit()
        keep_freed_memory()
        RequestParser.mesg_class = BoundedHeadRequest  # the class gunicorn's HTTP/1 parser reads requests with
        gunicorn_util.write_error = errors.write_protocol_error  # how gunicorn answers a request it cannot parse
        try:
            Store(volumes, opts["entries"], opts["fsync"], opts["max_batch_bytes"]).prepare_volumes()
        except VolumeError as exc:
            raise CommandError(str(exc)) from None
        if opts["recover"]:
            metrics.record_recovery(recover_at_startup(volumes, opts["full_recover"], self.stdout))
        try:
            call_command("migrate", interactive=False, verbosity=0)
        except DatabaseError as exc:
            raise CommandError(
                f"the admin's database {settings.DATABASES['default']['NAME']} cannot be used ({exc}); "
                "make HARAQA_DATA_DIR writable or set DJANGO_DB_PATH"
            ) from None

        from haraqa_site.wsgi import application

        import_views()

        address = f"{opts['bind']}:{opts['port']}"
        self.stdout.write(
            f"haraqa serving http://{address}/topics with {counted(opts['workers'], 'worker')} x "
            f"{counted(opts['threads'], 'thread')}; "
            f"volumes {', '.join(volumes)} (reads from the last); fsync={opts['fsync']}"
        )
        self.stdout.write(_urls_line(address, opts))
        if resets_queued_connections():
            self.stdout.write(
                "note: net.ipv4.tcp_migrate_req is 0, so a reload (HUP) or a crashed worker resets the connections"
                " still waiting on that worker's socket; `sysctl -w net.ipv4.tcp_migrate_req=1` hands them to"
                " another worker"
            )
        # Everything loaded so far lives as long as the server: keep it out of the cyclic
        # GC's reach (measured: the GC's share of a request halves) and shared with workers.
        gc.freeze()
        GunicornApplication(application, self._gunicorn_options(address, opts)).run()

    @staticmethod
    def _apply_settings(volumes: list[str], opts: dict) -> None:
        """Make the flags the settings of this process and of the workers it forks."""
        values = {
            "HARAQA_VOLUMES": volumes,
            "HARAQA_ENTRIES": opts["entries"],
            "HARAQA_LIMIT": opts["limit"],
            "HARAQA_FSYNC": opts["fsync"],
            "HARAQA_MAX_BATCH_BYTES": opts["max_batch_bytes"],
            "HARAQA_CLIENT_TIMEOUT": opts["client_timeout"],
            **{name: opts[flag] for flag, name, _ in SWITCHES},
        }
        for name, value in values.items():
            setattr(settings, name, value)
            os.environ[name] = os.pathsep.join(value) if isinstance(value, list) else str(value)
        conf.reload()  # setting them directly sends no setting_changed

    @staticmethod
    def _gunicorn_options(address: str, opts: dict) -> dict:
        return {
            "bind": address,
            "workers": opts["workers"],
            # gthread keeps client connections alive (haraqa clients reuse them) and
            # still sends consume bodies with sendfile. Leave "sendfile" unset: gunicorn
            # treats any value of that setting, even True, as "disable".
            "worker_class": "gthread",
            "threads": opts["threads"],
            # A listening socket per worker, so the kernel spreads connections over the workers.
            # On one shared socket, the worker that wakes first takes them: a few keep-alive
            # clients can all land on one worker, which halves throughput (measured).
            "reuse_port": True,
            # Idle connections outlive Go's default client idle timeout (90 s), so haraqa's Go clients
            # close them first: a request sent just as the server closes its connection would fail.
            "keepalive": 120,
            "timeout": 120,
            "graceful_timeout": 30,
            "limit_request_field_size": MAX_HEADER_FIELD_BYTES,  # X-Sizes of a large batch is long
            "limit_request_fields": MAX_HEADERS,  # a watch has an X-Topics line per topic; MAX_HEAD_BYTES bounds all
            "control_socket_disable": True,  # several servers may run side by side
            "post_fork": die_with_master,
            # /ws/topics watches: see queues/api/watch.py
            "post_worker_init": watch.follow_worker,
            "worker_exit": watch.close_watches,
            **_logging_and_metrics_options(opts),
        }


def _urls_line(address: str, opts: dict) -> str:
    root = f"http://{address}"
    docs = f"docs {root}/docs/ (swagger {root}/docs/swagger, redoc {root}/docs/redocs)" if opts["docs"] else "docs off"
    prometheus = f"metrics {root}/metrics" if opts["prometheus"] else "metrics off"
    return f"{docs}; {prometheus}; cors {'on' if opts['cors'] else 'off'}"


def _logging_and_metrics_options(opts: dict) -> dict:
    options = {"logger_class": "queues.access_log.AccessLogger", "accesslog": "-" if opts["access_log"] else None}
    if opts["prometheus"] and metrics.MULTIPROC_ENV in os.environ:
        options.update(child_exit=metrics.mark_worker_dead, on_exit=metrics.remove_multiprocess_dir)
    return options


def import_views() -> None:
    """Import every view and its libraries (DRF, drf-spectacular, the admin) before the workers
    are forked: otherwise each worker's first request imports them, which took 150 ms."""
    get_resolver().resolve("/topics/any")


MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"


def resets_queued_connections(sysctl: str = MIGRATE_SYSCTL) -> bool:
    """Whether the kernel resets the connections queued on a worker's listening socket when the
    worker stops, though it could move them to another worker's (Linux 5.14 on). Measured with
    bench/reloads.py, 12 reloads under 16 connecting clients: 83 to 118 connections reset in four
    runs; 0 or 1 once the setting is 1."""
    try:
        with open(sysctl) as f:
            return f.read().strip() == "0"
    except OSError:  # not Linux, or a kernel that cannot move them
        return False


def check_port_free(bind: str, port: int) -> None:
    """Fail unless ``bind:port`` is free. The workers' listening sockets share the port
    (SO_REUSEPORT), so they would also share it with another server started there."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn: ignore TIME_WAIT
            probe.bind(address)
    except OSError as exc:
        raise CommandError(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for the next request instead of returning it to the system.

    Reading a large body allocates and frees megabyte buffers; by default glibc hands them back
    and the next request faults the pages in again (120 page faults per MiB received, measured).
    That doubled the CPU of a 1000 x 1 KiB produce (4.7 ms -> 2.8 ms per request with this), and of
    any large upload. The cost: each malloc arena (about one per thread) may keep up to
    ``FREED_BYTES_KEPT`` unused. Returns whether the C library took the settings (glibc only).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, OWN_MAPPING_BYTES) and libc.mallopt(M_TRIM_THRESHOLD, FREED_BYTES_KEPT))


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def die_with_master(server, worker) -> None:
    """In a new worker: have the kernel kill it as soon as the master dies.

    Otherwise, after a ``kill -9`` of the master, each worker keeps the port until it notices
    (gunicorn checks the parent once a loop) and its last request ends (a stalled upload: the
    client timeout), and a server restarted meanwhile is refused with "Address already in use".
    A kill -9 of haraqa's single process frees the port at once; so does this. Their requests
    in progress are cut, never acknowledged.
    """
    if not sys.platform.startswith("linux"):
        return
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        server.log.warning("workers will not stop with the master: prctl failed (errno %d)", ctypes.get_errno())
    elif os.getppid() != worker.ppid:  # the master died before the call
        os._exit(1)


def raise_descriptor_limit() -> None:
    """Let the server and its workers open as many files as the system allows them: every worker
    keeps the files of the topics it used last open, next to its connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_DESCRIPTORS if hard == resource.RLIM_INFINITY else min(hard, MAX_DESCRIPTORS)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass  # the system refuses: the kept files stay within a quarter of the lower limit
