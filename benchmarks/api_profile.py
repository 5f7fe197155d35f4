"""In-process profile of the API's intake and list: Python CPU and SQL statements per request.

    .venv/bin/python benchmarks/api_profile.py [--requests 300] [--cprofile 30]

The deployment of ``api_load.py`` (a database and a Redis of its own, production settings), but the
requests go through Django's test client in this process, one at a time, so the numbers are the
application's own (intake, a list page of 50, and the institutions list: the floor of an
authenticated API request with its throttle and one small query): CPU per request (Django, DRF,
psycopg and the Redis client in this process; PostgreSQL's and Redis's own CPU not included), SQL
statements per request (BEGIN and COMMIT included), and the statements an intake sends from taking
the audit chain's head-row lock to its COMMIT, both included. With ``--cprofile N`` it prints the N
functions with the most cumulative time of each phase. Writes ``bench-out/api_profile.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable

from api_load import REPO, deployment, intake_body

OUT = REPO / "bench-out" / "api_profile.json"
CREATE = "/api/v1/forget-requests"


def _head_lock_statements(sql: list[str]) -> int:
    """Statements from the head-row lock to the end of the request (its COMMIT), both included."""
    locks = [index for index, text in enumerate(sql) if "audithead" in text and "FOR UPDATE" in text]
    return len(sql) - locks[0] if locks else 0


def _phase(call: Callable[[int], int], expected: int, requests: int, top: int) -> dict[str, object]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for number in range(20):  # warm-up: imports, caches, connections
        assert call(number) == expected
    with CaptureQueriesContext(connection) as captured:
        assert call(20) == expected
    sql = [query["sql"] for query in captured.captured_queries]
    profiler = cProfile.Profile(time.process_time) if top else None  # CPU, not waits
    started = time.process_time()
    if profiler:
        profiler.enable()
    for number in range(21, 21 + requests):
        assert call(number) == expected
    if profiler:
        profiler.disable()
    cpu_ms = 1000 * (time.process_time() - started) / requests
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
    return {"cpu_ms": round(cpu_ms, 2), "queries": len(sql),
            "head_lock_statements": _head_lock_statements(sql), "sql": sql}


def run(args: argparse.Namespace) -> dict[str, dict]:
    with deployment(args.postgres) as bench:
        from django.test import Client

        client = Client(HTTP_AUTHORIZATION=f"Bearer {bench.token}", HTTP_X_FORWARDED_PROTO="https",
                        HTTP_HOST="127.0.0.1")

        def intake(number: int) -> int:
            return client.post(CREATE, intake_body(bench.subjects, number), content_type="application/json",
                               HTTP_IDEMPOTENCY_KEY=f"profile-{number}").status_code

        def listing(number: int) -> int:
            return client.get(CREATE).status_code

        def institutions(number: int) -> int:  # the floor: authentication, throttle, one small query
            return client.get("/api/v1/institutions").status_code

        top = args.cprofile
        results = {"intake": _phase(intake, 201, args.requests, top)}
        results["list"] = _phase(listing, 200, args.requests, top)
        results["institutions"] = _phase(institutions, 200, args.requests, top)
        for name in ("list", "institutions"):
            results[name].pop("head_lock_statements")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per phase")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="print the top N functions")
    parser.add_argument("--show-sql", action="store_true", help="print the statements of one request")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL database URL with the right to create databases")
    args = parser.parse_args()
    results = run(args)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    for name, result in results.items():
        if args.show_sql:
            print(f"--- {name}", *result["sql"], sep="\n")
        print(f"{name}: {result['cpu_ms']} ms CPU, {result['queries']} statements"
              + (f", {result['head_lock_statements']} from the audit head lock to COMMIT"
                 if "head_lock_statements" in result else ""))


if __name__ == "__main__":
    sys.exit(main())
