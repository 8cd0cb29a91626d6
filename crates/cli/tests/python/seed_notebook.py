"""The Druid seed notebook's sequence against millrace, with the clients users have.

Sends what learn-druid's druidapi client sends for each notebook call (same paths, bodies,
headers and success checks: 200 or 202, errors read from errorMessage or error), creates the
topic with kafka-python as the notebook does, and then reads the result through pydruid's
DB-API, its SQLAlchemy dialect (as Apache Superset connects) and its native client.

Environment: DRUID_URL (the server), KAFKA_HOST (bootstrap servers), EVENTS (posts to make).
Exits non-zero at the first answer that differs from what the clients need.
"""

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

import requests

DRUID = os.environ["DRUID_URL"]
KAFKA_HOST = os.environ["KAFKA_HOST"]
TOTAL = int(os.environ.get("EVENTS", "20000"))
TOPIC = "social"
HEADERS = {"Content-Type": "application/json"}
session = requests.Session()


class ClientError(Exception):
    """druidapi's error: the answer's errorMessage, or its error."""


def check(response):
    """druidapi's check_error: 200 and 202 are fine, else the JSON error's message."""
    if response.status_code in (200, 202):
        return
    try:
        body = response.json()
    except ValueError:
        response.raise_for_status()
        return
    message = body.get("errorMessage") or body.get("error")
    if message:
        raise ClientError(message)
    response.raise_for_status()


def get_json(path, params=None):
    response = session.get(DRUID + path, params=params)
    check(response)
    return response.json()


def post(path, body, headers=None, require_ok=True):
    response = session.post(DRUID + path, data=body, headers=headers)
    if require_ok:
        check(response)
    return response


def sql(query):
    """druid.sql.sql(query): resultFormat object, rows as dicts."""
    response = session.post(DRUID + "/druid/v2/sql", json={"query": query, "resultFormat": "object"})
    check(response)
    return response.json()


def wait(what, done, timeout=240):
    deadline = time.time() + timeout
    while True:
        try:
            if done():
                return
        except ClientError:
            pass
        if time.time() > deadline:
            sys.exit(f"timed out waiting until {what}")
        time.sleep(0.5)


def expect(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")
    print(f"ok: {message}")


def spec(table, tasks):
    """The notebook's supervisor spec."""
    return {
        "type": "kafka",
        "spec": {
            "ioConfig": {"type": "kafka", "consumerProperties": {"bootstrap.servers": KAFKA_HOST},
                         "topic": TOPIC, "taskCount": tasks, "useEarliestOffset": True,
                         "inputFormat": {"type": "json"}},
            "tuningConfig": {"type": "kafka"},
            "dataSchema": {
                "dataSource": table,
                "timestampSpec": {"column": "time", "format": "iso"},
                "dimensionsSpec": {"dimensions": [
                    "username", "post_title",
                    {"type": "long", "name": "views"},
                    {"type": "long", "name": "upvotes"},
                    {"type": "long", "name": "comments"},
                    "edited"]},
                "granularitySpec": {"queryGranularity": "none", "rollup": False, "segmentGranularity": "hour"},
            },
        },
    }


def wait_until_ready(table):
    """druid.sql.wait_until_ready(table, verify_load_status=False)."""
    wait(f"{table} answers SQL", lambda: sql(f'SELECT 1 FROM "{table}" LIMIT 1') is not None)


def count(table):
    return sql(f'SELECT count(1) as "count" FROM {table}')[0]["count"]


def stop_streaming_job(table, reset_offsets):
    """The notebook's stop_streaming_job: suspend, wait for running tasks, reset, terminate."""
    post(f"/druid/indexer/v1/supervisor/{table}/suspend", "", require_ok=False)
    tasks = get_json("/druid/indexer/v1/tasks", {"state": "running", "datasource": table})
    expect(len(tasks) > 0 and all("id" in t for t in tasks), f"{table}: running tasks listed with ids")
    statuses = {}

    def all_done():
        for task in tasks:
            status = get_json(f"/druid/indexer/v1/task/{task['id']}/status")["status"]
            statuses[task["id"]] = (status["statusCode"], status["runnerStatusCode"], status["status"])
        return all(code != "RUNNING" for code, _, _ in statuses.values())

    wait(f"{table}'s tasks publish", all_done)
    expect(all(code == "SUCCESS" and status == "SUCCESS" for code, _, status in statuses.values()),
           f"{table}: every task succeeded after the suspend {statuses}")
    if reset_offsets:
        post(f"/druid/indexer/v1/supervisor/{table}/reset", "", require_ok=False)
    post(f"/druid/indexer/v1/supervisor/{table}/terminate", "", require_ok=False)


def segments(table):
    return sql(f"""SELECT "start", "end", num_rows, shard_spec FROM sys.segments
                   WHERE datasource = '{table}' AND is_active = 1 ORDER BY "start", partition_num""")


def drop_table(table):
    """The notebook's drop_table: mark unused, then a kill task over every interval."""
    response = session.delete(DRUID + f"/druid/coordinator/v1/datasources/{table}")
    check(response)
    kill = {"type": "kill", "dataSource": table, "interval": "2000-09-12/2999-09-13"}
    return post("/druid/indexer/v1/task", json.dumps(kill), require_ok=False, headers=HEADERS)


def compact(body):
    response = post("/druid/indexer/v1/task", json.dumps(body), headers=HEADERS)
    task = response.json()["task"]
    wait(f"compaction {task} ends", lambda: get_json(f"/druid/indexer/v1/task/{task}/status")["status"]["status"] != "RUNNING")
    status = get_json(f"/druid/indexer/v1/task/{task}/status")["status"]
    expect(status["status"] == "SUCCESS", f"compaction {task} succeeded: {status}")


def notebook():
    # druidapi.jupyter_client waits for /status/health.
    wait("the server is healthy", lambda: get_json("/status/health") is True)
    properties = get_json("/status/properties")
    expect(isinstance(properties, dict) and "druid.service" in properties, "/status/properties answers")

    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=KAFKA_HOST, client_id="admin")
    admin.create_topics(new_topics=[NewTopic(name=TOPIC, num_partitions=4, replication_factor=1)], validate_only=False)

    # Posts start at the top of an hour two days ago (as learn-druid's current notebook
    # does), so they are made at full speed and all fall in that hour.
    gen_now = (datetime.now(timezone.utc) - timedelta(days=2)).replace(microsecond=0, second=0, minute=0)
    request = {"name": "social_stream", "target": {"type": "kafka", "endpoint": KAFKA_HOST, "topic": TOPIC},
               "config_file": "social/social_posts.json", "total_events": TOTAL, "concurrency": 500,
               "time_type": gen_now.strftime("%Y-%m-%d %H:%M:%S")}
    post("/start", json.dumps(request), headers=HEADERS)
    result = {}

    def complete():
        result.update(get_json("/status/social_stream"))
        return result["status"] == "COMPLETE"

    wait("the generator completes", complete)
    expect(result["total_records"] == TOTAL, f"the generator made {TOTAL} posts")

    for tasks in (1, 2, 4):
        table = f"social_media_{tasks}task"
        supervisor = post("/druid/indexer/v1/supervisor", json.dumps(spec(table, tasks)), headers=HEADERS)
        expect(supervisor.status_code == 200 and supervisor.json() == {"id": table}, f"supervisor {table} accepted")
        wait_until_ready(table)
        wait(f"{table} holds every post", lambda: count(table) >= TOTAL)
        expect(count(table) == TOTAL, f"{table}: count(1) is {TOTAL}")
        stop_streaming_job(table, True)
        per_hour = segments(table)
        expect(len(per_hour) == tasks and len({s["start"] for s in per_hour}) == 1,
               f"{table}: {tasks} segment(s) in the one hour, one per task")
        expect(sum(s["num_rows"] for s in per_hour) == TOTAL, f"{table}: the segments hold every post")

    table = "social_media_4task"
    interval = gen_now.strftime("%Y-%m-%dT%H:%M:%S") + "/" + (gen_now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    compact({"type": "compact", "dataSource": table,
             "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": interval}},
             "granularitySpec": {"segmentGranularity": "hour"}})
    expect(len(segments(table)) == 1, "compaction made the 4 segments one")
    compact({"type": "compact", "dataSource": table,
             "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": interval}},
             "tuningConfig": {"type": "compaction", "forceGuaranteedRollup": True,
                              "partitionsSpec": {"type": "range", "partitionDimensions": ["username"],
                                                 "targetRowsPerSegment": TOTAL // 4}}})
    ranged = segments(table)
    expect(len(ranged) > 1 and all(json.loads(s["shard_spec"])["type"] == "single" for s in ranged),
           f"range compaction made {len(ranged)} single-dimension segments")
    expect(count(table) == TOTAL, "every post is still there after compaction")

    # druidapi's display helpers.
    schemas = [row["SchemaName"] for row in sql("SELECT SCHEMA_NAME AS SchemaName FROM INFORMATION_SCHEMA.SCHEMATA ORDER BY SCHEMA_NAME")]
    expect({"INFORMATION_SCHEMA", "druid", "sys"} <= set(schemas), f"display.schemas() lists {schemas}")
    tables = [row["TableName"] for row in sql("SELECT TABLE_NAME AS TableName FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'druid' ORDER BY TABLE_NAME")]
    expect(table in tables, f"display.tables() lists {table}")
    columns = sql(f"""SELECT
  ORDINAL_POSITION AS "Position",
  COLUMN_NAME AS "Name",
  DATA_TYPE AS "Type"
FROM INFORMATION_SCHEMA.COLUMNS
WHERE TABLE_SCHEMA = 'druid'
  AND TABLE_NAME = '{table}'
ORDER BY ORDINAL_POSITION""")
    types = {row["Name"]: row["Type"] for row in columns}
    expect(list(columns[0].keys()) == ["Position", "Name", "Type"] and types["__time"] == "TIMESTAMP"
           and types["views"] == "BIGINT" and types["username"] == "VARCHAR", f"display.table() shows {types}")
    servers = sql("SELECT server, server_type, tier, curr_size FROM sys.servers WHERE server_type = 'historical'")
    expect(len(servers) == 1, "sys.servers has the historical")
    joined = sql(f"""SELECT a.segment_id, b.server FROM sys.segments a
                     LEFT JOIN sys.server_segments b ON a.segment_id = b.segment_id
                     WHERE a.datasource = '{table}' AND a.is_active = 1""")
    expect(len(joined) == len(ranged) and all(row["server"] for row in joined), "sys.server_segments joins sys.segments")
    try:
        post("/druid/v2/sql/task", json.dumps({"query": f"SELECT 1 FROM {table}"}), headers=HEADERS)
        expect(False, "/druid/v2/sql/task is refused")
    except ClientError as e:
        expect(len(str(e)) > 0, f"/druid/v2/sql/task answers Druid's error shape: {e}")
    return gen_now, table


def pydruid_clients(table):
    from pydruid.db import connect
    from pydruid.db.exceptions import ProgrammingError

    url = urlparse(DRUID)
    for header in (False, True):
        connection = connect(host=url.hostname, port=url.port, path="/druid/v2/sql/", scheme="http", header=header)
        cursor = connection.cursor()
        cursor.execute(f"SELECT username, COUNT(*) AS n, SUM(views) AS views FROM {table} GROUP BY username ORDER BY username")
        rows = cursor.fetchall()
        expect(len(rows) == 8 and sum(r.n for r in rows) == TOTAL and [d[0] for d in cursor.description] == ["username", "n", "views"],
               f"pydruid DB-API (header={header}) reads the GROUP BY")
        cursor.execute(f"SELECT COUNT(*) AS n FROM {table} WHERE username = %(user)s", {"user": rows[0].username})
        expect(cursor.fetchone().n == rows[0].n, "pydruid DB-API binds parameters")
    try:
        connection.cursor().execute("SELECT * FROM no_such_table")
        expect(False, "a missing table is an error")
    except ProgrammingError as e:
        expect("no_such_table" in str(e), f"pydruid raises ProgrammingError: {e}")

    from sqlalchemy import create_engine, inspect, text
    engine = create_engine(f"druid://{url.hostname}:{url.port}/druid/v2/sql/?header=true")
    inspector = inspect(engine)
    schemas = inspector.get_schema_names()
    expect({"druid", "sys"} <= set(schemas), f"SQLAlchemy lists schemas {schemas}")
    expect(table in inspector.get_table_names(schema="druid"), "SQLAlchemy lists the datasource")
    expect("segments" in inspector.get_table_names(schema="sys"), "SQLAlchemy lists sys tables")
    columns = {c["name"]: type(c["type"]).__name__ for c in inspector.get_columns(table, schema="druid")}
    expect(columns.get("__time") == "TIMESTAMP" and columns.get("username") == "String"
           and columns.get("views") == "BigInteger", f"SQLAlchemy reads column types {columns}")
    with engine.connect() as connection:
        n = connection.execute(text(f'SELECT COUNT(*) AS n FROM "{table}"')).scalar()
    expect(n == TOTAL, "SQLAlchemy runs a query")

    from pydruid.client import PyDruid
    from pydruid.utils.aggregators import count, longsum, filtered
    from pydruid.utils.filters import Dimension
    from pydruid.utils.postaggregator import Field
    client = PyDruid(DRUID, "druid/v2")
    day = "1970-01-01/3000-01-01"
    series = client.timeseries(datasource=table, granularity="all", intervals=day,
                               aggregations={"posts": count("count"), "views": longsum("views"),
                                             "mia": filtered(Dimension("username") == "mia", count("count"))},
                               post_aggregations={"per_post": Field("views") / Field("posts")})
    totals = series.result[0]["result"]
    views = sql(f"SELECT SUM(views) AS v FROM {table}")[0]["v"]
    expect(totals["posts"] == TOTAL and totals["views"] == views and abs(totals["per_post"] - views / TOTAL) < 1e-6,
           f"pydruid timeseries: {totals}")
    top = client.topn(datasource=table, granularity="all", intervals=day, dimension="username",
                      metric="posts", threshold=3, aggregations={"posts": count("count")})
    expect(len(top.result[0]["result"]) == 3, f"pydruid topN: {top.result}")
    grouped = client.groupby(datasource=table, granularity="hour", intervals=day, dimensions=["edited"],
                             aggregations={"posts": count("count")})
    expect(sum(row["event"]["posts"] for row in grouped.result) == TOTAL and all(row["version"] == "v1" for row in grouped.result),
           f"pydruid groupBy: {len(grouped.result)} rows")
    boundary = client.time_boundary(datasource=table)
    expect("minTime" in boundary.result[0]["result"], f"pydruid timeBoundary: {boundary.result}")
    metadata = client.segment_metadata(datasource=table, intervals=day, merge=True)
    expect(metadata.result[0]["numRows"] == TOTAL, "pydruid segmentMetadata")
    scanned = client.scan(datasource=table, granularity="all", intervals=day, columns=["__time", "username"], limit=5)
    expect(len(scanned.result[0]["events"]) == 5, "pydruid scan")


def main():
    gen_now, table = notebook()
    pydruid_clients(table)
    for name in ("social_media_1task", "social_media_2task", "social_media_4task"):
        response = drop_table(name)
        expect(response.status_code == 200, f"drop and kill {name}")
    wait("the kill tasks remove every segment", lambda: sql("SELECT COUNT(*) AS n FROM sys.segments")[0]["n"] == 0)
    from kafka.admin import KafkaAdminClient
    KafkaAdminClient(bootstrap_servers=KAFKA_HOST, client_id="admin").delete_topics(topics=[TOPIC])
    print("the notebook ran")


if __name__ == "__main__":
    main()
