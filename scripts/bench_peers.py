"""Millrace side by side with the engines its users would pick instead, on the same data in the
same run: ingestion against chDB (ClickHouse) and DuckDB loading the same JSON lines, Druid
SQL latencies against the same questions in DuckDB and chDB, and the KSML efficient-processing
pipeline against its functions in a hand-written CPython loop with orjson.

Run by scripts/bench-peers, which makes the virtual environment (duckdb, chdb, orjson, PyYAML)
and builds the release binary. Prints each figure with the ratio ours/peer and writes all of
them as JSON. Every peer runs in a fresh child process, so its peak memory is its own.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

POSTS_COLUMNS = {
    "time": "TIMESTAMP",
    "username": "VARCHAR",
    "post_title": "VARCHAR",
    "views": "BIGINT",
    "upvotes": "BIGINT",
    "comments": "BIGINT",
    "edited": "VARCHAR",
}

# The questions, in the order `millrace bench druid` asks them, as each peer's SQL.
DUCKDB_QUERIES = [
    ("COUNT(*)", "SELECT COUNT(*) FROM posts"),
    (
        "GROUP BY username",
        "SELECT username, COUNT(*) AS posts, SUM(views) AS views FROM posts "
        "GROUP BY username ORDER BY posts DESC, username",
    ),
    (
        "TIME_FLOOR hourly",
        "SELECT date_trunc('hour', time) AS hour, COUNT(*) AS posts FROM posts "
        "GROUP BY 1 ORDER BY 1",
    ),
    (
        "WHERE username",
        "SELECT COUNT(*) AS posts, SUM(views) AS views FROM posts WHERE username = 'mia'",
    ),
]
CHDB_QUERIES = [
    ("COUNT(*)", "SELECT count() FROM b.posts"),
    (
        "GROUP BY username",
        "SELECT username, count() AS posts, sum(views) AS views FROM b.posts "
        "GROUP BY username ORDER BY posts DESC, username",
    ),
    (
        "TIME_FLOOR hourly",
        "SELECT toStartOfHour(time) AS hour, count() AS posts FROM b.posts "
        "GROUP BY hour ORDER BY hour",
    ),
    (
        "WHERE username",
        "SELECT count() AS posts, sum(views) AS views FROM b.posts WHERE username = 'mia'",
    ),
]

# The two forms of the efficient-processing pipeline: definition, predicate (None: the
# mapper filters by returning None), mapper, and the shape of the events it reads.
PIPELINES = [
    ("repository form", "examples/ksml/processor-efficient-processing.yaml",
     "is_interesting_event", "compute_event_score", "repo"),
    ("tutorial form", "examples/ksml/processor-efficient-processing-logging.yaml",
     None, "score_and_log_event", "tutorial"),
]


def median(values):
    """The upper middle value, as `millrace bench` takes it."""
    return sorted(values)[len(values) // 2]


def timed_queries(run, queries, runs):
    """Median milliseconds of each query over `runs` runs after one warm-up, and its rows."""
    out = []
    for name, sql in queries:
        timings = []
        rows = None
        for i in range(runs + 1):
            started = time.perf_counter()
            rows = run(sql)
            if i > 0:
                timings.append(time.perf_counter() - started)
        out.append({"name": name, "sql": sql, "median_ms": median(timings) * 1000, "answer": rows})
    return out


def peer_duckdb(path, runs):
    import duckdb

    con = duckdb.connect()
    columns = ", ".join(f"'{k}': '{v}'" for k, v in POSTS_COLUMNS.items())
    started = time.perf_counter()
    con.execute(
        f"CREATE TABLE posts AS SELECT * FROM read_json('{path}', "
        f"format = 'newline_delimited', columns = {{{columns}}})"
    )
    load = time.perf_counter() - started
    rows = con.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
    queries = timed_queries(lambda sql: con.execute(sql).fetchall(), DUCKDB_QUERIES, runs)
    return {"load_seconds": load, "rows": rows, "queries": queries,
            "version": duckdb.__version__, "threads": con.execute(
                "SELECT current_setting('threads')").fetchone()[0]}


def peer_chdb(path, runs):
    import chdb
    from chdb import session

    s = session.Session()
    s.query("CREATE DATABASE IF NOT EXISTS b")
    structure = (
        "time DateTime64(3, 'UTC'), username String, post_title String, views Int64, "
        "upvotes Int64, comments Int64, edited String"
    )
    s.query(f"CREATE TABLE b.posts ({structure}) ENGINE = MergeTree ORDER BY time")
    quoted = structure.replace("'", "\\'")
    started = time.perf_counter()
    s.query(
        f"INSERT INTO b.posts SELECT * FROM file('{path}', JSONEachRow, '{quoted}') "
        "SETTINGS date_time_input_format = 'best_effort'"
    )
    load = time.perf_counter() - started
    rows = int(str(s.query("SELECT count() FROM b.posts", "CSV")).strip())

    def run(sql):
        return [json.loads(line) for line in
                str(s.query(sql, "JSONCompactEachRow")).splitlines() if line]

    queries = timed_queries(run, CHDB_QUERIES, runs)
    return {"load_seconds": load, "rows": rows, "queries": queries, "version": chdb.__version__}


class QuietLog:
    """KSML's `log` as a hand-written script would have it: SLF4J-style "{}" arguments, at
    WARN level like the benchmarked runtime (MILLRACE_LOG=warn), so info lines cost a level
    check."""

    def __init__(self, level=3):
        self.level = level

    def _at(self, level, message, args):
        if level >= self.level:
            parts = str(message).split("{}")
            text = parts[0] + "".join(
                (str(args[i]) if i < len(args) else "{}") + part for i, part in enumerate(parts[1:]))
            print(text, file=sys.stderr)

    def info(self, message, *args):
        self._at(2, message, args)

    def warn(self, message, *args):
        self._at(3, message, args)


def ksml_functions(definition_path):
    """The definition's Python functions, each as a plain `def name(key, value)` whose body is
    the function's code and which returns its expression, with its globalCode run first in
    the module namespace, as KSML runs them."""
    import yaml

    with open(definition_path) as f:
        definition = yaml.safe_load(f)
    namespace = {"log": QuietLog()}
    functions = {}
    for name, spec in definition["functions"].items():
        if spec.get("globalCode"):
            exec(spec["globalCode"], namespace)
        body = spec.get("code") or ""
        lines = [f"def {name}(key, value):"]
        lines += ["    " + line for line in body.splitlines()]
        lines.append(f"    return {spec.get('expression', 'None')}")
        exec("\n".join(lines), namespace)
        functions[name] = namespace[name]
    return functions


def peer_orjson_loop(definition, predicate, mapper, events_path, runs):
    """`for line: value = orjson.loads(line); filter; result = mapper(...); orjson.dumps`,
    timed `runs` times over the events held in memory as bytes."""
    import orjson

    functions = ksml_functions(definition)
    keep = functions[predicate] if predicate else None
    transform = functions[mapper]
    with open(events_path, "rb") as f:
        lines = [line for line in f.read().split(b"\n") if line.strip()]
    loads, dumps = orjson.loads, orjson.dumps
    timings = []
    written = 0
    for _ in range(runs):
        out = []
        append = out.append
        started = time.perf_counter()
        for line in lines:
            value = loads(line)
            if keep is not None and not keep(None, value):
                continue
            result = transform(None, value)
            if result is not None:
                append(dumps(result))
        timings.append(time.perf_counter() - started)
        written = len(out)
    seconds = median(timings)
    return {"events": len(lines), "results": written, "runs_seconds": timings,
            "median_seconds": seconds, "messages_per_second": len(lines) / seconds,
            "version": orjson.__version__}


def write_events(path, count, shape, seed=7):
    """Events as examples/ksml/producer-high-volume.yaml (repo) or the KSML performance
    tutorial's producer (tutorial) makes them, from a fixed seed."""
    import orjson

    r = random.Random(seed)
    categories = ["electronics", "clothing", "books", "home", "sports"]
    with open(path, "wb") as f:
        for i in range(count):
            if shape == "repo":
                event = {
                    "event_id": f"evt_{i}", "user_id": f"user_{r.randint(1, 1000)}",
                    "event_type": r.choice(["click", "purchase", "view", "scroll", "hover"]),
                    "category": r.choice(categories), "value": round(r.uniform(1, 500), 2),
                    "timestamp": 1_700_000_000_000 + i,
                }
            else:
                kind = r.choice(["view", "click", "purchase", "search", "scroll", "hover"])
                event = {
                    "event_id": f"evt_{i:08}", "type": kind,
                    "user_id": f"user_{r.randint(1, 100):04}", "timestamp": 1_700_000_000_000 + i,
                    "product_id": f"prod_{r.randint(1, 1000):04}", "category": r.choice(categories),
                    "value": round(r.uniform(1, 100), 2) if kind == "purchase" else 0.0,
                    "session_id": f"sess_{r.randint(0, 49):03}",
                    "metadata": {"source": "web", "device": r.choice(["desktop", "mobile", "tablet"]),
                                 "browser": r.choice(["chrome", "firefox", "safari"])},
                }
            f.write(orjson.dumps(event))
            f.write(b"\n")


def touch_memory(leave_mib=2048):
    """Writes to all but `leave_mib` of the machine's available memory once, then lets it go.
    A fresh virtual machine's hypervisor backs guest memory on its first use, which here made
    writing a new file about 7x as slow (0.6 against 4.5 GB/s) until the guest had used its
    memory once: costs that would fall on whichever engine runs first."""
    with open("/proc/meminfo") as meminfo:
        available = next(int(line.split()[1]) for line in meminfo
                         if line.startswith("MemAvailable:")) // 1024
    chunk = 256
    chunks = max(available - leave_mib, 0) // chunk
    held = [bytearray(b"\x01") * (chunk << 20) for _ in range(chunks)]
    return {"touched_mib": len(held) * chunk}


def child(args):
    """Runs in a child process: one peer, its figures as JSON on stdout."""
    if args.peer == "warm":
        figures = touch_memory()
    elif args.peer == "duckdb":
        figures = peer_duckdb(args.file, args.query_runs)
    elif args.peer == "chdb":
        figures = peer_chdb(args.file, args.query_runs)
    else:
        figures = peer_orjson_loop(args.definition, args.predicate or None, args.mapper,
                                   args.file, args.runs)
    json.dump(figures, sys.stdout, default=str)


def run_child(command, env=None):
    """Runs a command; returns its stdout, seconds and peak memory (MiB, ru_maxrss)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"bench-peers: {' '.join(map(str, command))} failed ({process.returncode})")
    return out, time.perf_counter() - started, usage.ru_maxrss / 1024


def peer(kind, *extra):
    out, _, peak = run_child([sys.executable, __file__, "--peer", kind, *map(str, extra)])
    figures = json.loads(out)
    figures["peak_memory_mib"] = peak
    return figures


def ours(millrace, *args):
    """Runs `millrace bench ...` writing JSON; returns the figures and peak memory."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(os.environ, MILLRACE_LOG=os.environ.get("MILLRACE_LOG", "warn"))
        printed, _, peak = run_child([millrace, "bench", *map(str, args), "--json", out.name], env)
        sys.stdout.buffer.write(printed)
        figures = json.load(open(out.name))
    figures["process_peak_memory_mib"] = peak
    return figures


def normalized(rows):
    """Answer rows as lists of plain values (times as ISO-8601 text to the second), so the
    engines' answers compare."""
    out = []
    for row in rows:
        values = row.values() if isinstance(row, dict) else row
        cells = []
        for v in values:
            if hasattr(v, "isoformat"):
                v = v.isoformat()
            if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] in "T ":
                v = v[:10] + "T" + v[11:19]
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, str) and v.lstrip("-").isdigit():
                v = int(v)
            cells.append(v)
        out.append(cells)
    return out


def ratio(a, b):
    return a / b if b else float("nan")


def compare_posts(args, rows, work):
    path = os.path.join(work, f"posts-{rows}.json")
    subprocess.run([args.millrace, "datagen", "--config", "social/social_posts.json",
                    "--total-events", str(rows), "--start", "2025-01-01T00:00:00Z", "--seed", "1",
                    "--concurrency", "500", "--file", path], check=True,
                   env=dict(os.environ, MILLRACE_LOG="warn"))
    print(f"\n== {rows} social posts ({os.path.getsize(path) / 1e6:.0f} MB of JSON lines) ==",
          flush=True)
    mine = ours(args.millrace, "druid", "--file", path, "--tasks", args.tasks,
                "--query-runs", args.query_runs)
    chdb = peer("chdb", "--file", path, "--query-runs", args.query_runs)
    duck = peer("duckdb", "--file", path, "--query-runs", args.query_runs)
    for name, figures in (("chDB", chdb), ("DuckDB", duck)):
        if figures["rows"] != rows:
            sys.exit(f"bench-peers: {name} loaded {figures['rows']} rows of {rows}")
    result = {"rows": rows, "ours": mine, "chdb": chdb, "duckdb": duck, "ingestion": [],
              "queries": []}
    print(f"\ningestion of {rows} rows (rows/s; ours until queryable)     ours/chDB  ours/DuckDB")
    chdb_rate, duck_rate = rows / chdb["load_seconds"], rows / duck["load_seconds"]
    for ingestion in mine["ingestion"]:
        line = {"tasks": ingestion["tasks"], "ours_rows_per_second": ingestion["rows_per_second"],
                "chdb_rows_per_second": chdb_rate, "duckdb_rows_per_second": duck_rate,
                "ours_over_chdb": ratio(ingestion["rows_per_second"], chdb_rate),
                "ours_over_duckdb": ratio(ingestion["rows_per_second"], duck_rate),
                "ours_peak_memory_mib": ingestion["peak_memory_mib"]}
        result["ingestion"].append(line)
        print(f"  ours, {ingestion['tasks']} task(s): {ingestion['rows_per_second']:>10,.0f}"
              f"  (peak {ingestion['peak_memory_mib']:.0f} MiB)"
              f"          {line['ours_over_chdb']:5.2f}x     {line['ours_over_duckdb']:5.2f}x")
    print(f"  chDB:              {chdb_rate:>10,.0f}  (peak {chdb['peak_memory_mib']:.0f} MiB)")
    print(f"  DuckDB:            {duck_rate:>10,.0f}  (peak {duck['peak_memory_mib']:.0f} MiB)")
    print(f"\nqueries (median ms of {args.query_runs})     ours    DuckDB  chDB   ours/DuckDB  ours/chDB")
    mismatches = []
    for q, d, c in zip(mine["queries"]["timed"], duck["queries"], chdb["queries"]):
        line = {"name": q["name"], "ours_ms": q["median_ms"], "duckdb_ms": d["median_ms"],
                "chdb_ms": c["median_ms"], "ours_over_duckdb": ratio(q["median_ms"], d["median_ms"]),
                "ours_over_chdb": ratio(q["median_ms"], c["median_ms"]),
                "same_answer_as_duckdb": normalized(q["answer"]) == normalized(d["answer"]),
                "same_answer_as_chdb": normalized(q["answer"]) == normalized(c["answer"])}
        result["queries"].append(line)
        if not line["same_answer_as_duckdb"]:
            mismatches.append((q["name"], "DuckDB", q["answer"], d["answer"]))
        if not line["same_answer_as_chdb"]:
            mismatches.append((q["name"], "chDB", q["answer"], c["answer"]))
        print(f"  {q['name']:<22} {q['median_ms']:7.1f} {d['median_ms']:7.1f} {c['median_ms']:7.1f}"
              f"   {line['ours_over_duckdb']:8.2f}x  {line['ours_over_chdb']:8.2f}x")
    for name, peer_name, a, b in mismatches:
        print(f"  ANSWERS DIFFER for {name}: ours {a} vs {peer_name} {b}", file=sys.stderr)
    if mismatches:
        sys.exit("bench-peers: answers differ")
    return result


def compare_pipeline(args, events, work):
    result = []
    for label, definition, predicate, mapper, shape in PIPELINES:
        path = os.path.join(work, f"events-{shape}-{events}.json")
        if not os.path.exists(path):
            write_events(path, events, shape)
        print(f"\n== KSML efficient processing, {label}, {events} events ==", flush=True)
        mine = ours(args.millrace, "pipeline", "--input", path, "--definition", definition,
                    "--predicate", predicate or "", "--mapper", mapper, "--runs", args.runs)
        loop = peer("loop", "--file", path, "--definition", definition, "--predicate",
                    predicate or "", "--mapper", mapper, "--runs", args.runs)
        if loop["results"] != mine["results"]:
            sys.exit(f"bench-peers: the orjson loop wrote {loop['results']} results, "
                     f"the pipeline {mine['results']}")
        line = {"form": label, "events": events, "ours_messages_per_second":
                mine["messages_per_second"], "orjson_loop_messages_per_second":
                loop["messages_per_second"], "ours_over_orjson_loop":
                ratio(mine["messages_per_second"], loop["messages_per_second"]),
                "ours": mine, "orjson_loop": loop}
        print(f"  pipeline (median of {args.runs}): {mine['messages_per_second']:>10,.0f} msgs/s"
              f" | orjson loop: {loop['messages_per_second']:>10,.0f} msgs/s"
              f" | ours/loop {line['ours_over_orjson_loop']:.2f}x")
        result.append(line)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--millrace", help="the millrace binary")
    parser.add_argument("--rows", default="1000000,10000000",
                        help="posts per comparison, comma-separated")
    parser.add_argument("--pipeline-events", default="1000000",
                        help="events per pipeline comparison, comma-separated (0: none)")
    parser.add_argument("--tasks", default="1,4", help="our ingestion task counts")
    parser.add_argument("--query-runs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="pipeline runs (median)")
    parser.add_argument("--json", default="bench-peers.json")
    parser.add_argument("--work", help="where data files go (a temporary directory in it, "
                        "made if missing)")
    parser.add_argument("--no-warm", action="store_true",
                        help="do not write to the machine's free memory once first")
    # A child's own arguments.
    parser.add_argument("--peer", choices=["warm", "duckdb", "chdb", "loop"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--definition", help=argparse.SUPPRESS)
    parser.add_argument("--predicate", help=argparse.SUPPRESS)
    parser.add_argument("--mapper", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        return child(args)
    if not args.millrace:
        parser.error("--millrace is required")
    if args.work:
        os.makedirs(args.work, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        figures = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                   "posts": [], "pipeline": []}
        if not args.no_warm:
            out, seconds, _ = run_child([sys.executable, __file__, "--peer", "warm"])
            warm = dict(json.loads(out), seconds=seconds)
            figures["machine"]["memory_warmed"] = warm
            print(f"wrote to {warm['touched_mib'] / 1024:.1f} GiB of free memory once in "
                  f"{warm['seconds']:.0f} s (slow on a fresh virtual machine)", flush=True)
        for rows in [int(r) for r in args.rows.split(",") if r]:
            figures["posts"].append(compare_posts(args, rows, work))
        for events in [int(e) for e in args.pipeline_events.split(",") if int(e or 0) > 0]:
            figures["pipeline"].extend(compare_pipeline(args, events, work))
    with open(args.json, "w") as f:
        json.dump(figures, f, indent=2, default=str)
    print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
