"""A third worker joins the cluster and the shards are rebalanced onto it while
joins, registrations and approvals run over HTTP: nothing is lost or counted
twice, and no request gets a 5xx. Needs CITUS_SPARE_URL, a running node with the
citus extension that is not yet part of the cluster (`make test-citus` starts
one). Run last: it leaves the cluster with three workers."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from citus_support import require_citus
from psycopg.conninfo import conninfo_to_dict

from conftest import ROOT, GatewayProcess, User

CODES, JOINERS_PER_CODE, USES = 3, 20, 10
EVENTS, REGISTRANTS_PER_EVENT, SEATS = 4, 12, 8
LIKE_GROUPS = 8


def post(client: httpx.Client, path: str, user: User, **body: Any) -> Any:
    response = client.post(path, json=body, headers=user.headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


Job = tuple[str, str, dict[str, Any], User]  # kind, path, body, who


def arrange(client: httpx.Client, make_user: Callable[..., User],
            ) -> tuple[dict[str, Any], list[Job]]:
    owner = make_user()
    group = post(client, "/rest/v1/rpc/create_group", owner, name="Busy")
    codes = [post(client, f"/api/groups/{group['id']}/invite", owner, max_uses=USES)["invite"]
             for _ in range(CODES)]
    host = make_user()
    events = [post(client, "/rest/v1/rpc/create_event", host, title=f"E{i}", capacity=SEATS)
              for i in range(EVENTS)]
    cohost = make_user()
    like_event = post(client, "/rest/v1/rpc/create_event", host, title="Likes")
    post(client, "/rest/v1/rpc/add_event_author", host, event_id=like_event["id"],
         user_id=cohost.id)
    likes = [post(client, f"/events/{like_event['id']}/like", make_user())
             for _ in range(LIKE_GROUPS)]

    jobs: list[Job] = []
    for code in codes:
        jobs += [("join", "/api/groups/join", {"code": code["code"]}, make_user())
                 for _ in range(JOINERS_PER_CODE)]
    for event in events:
        jobs += [("register", "/rest/v1/rpc/register_for_event", {"event_id": event["id"]},
                  make_user()) for _ in range(REGISTRANTS_PER_EVENT)]
    for like in likes:  # both authors approve each group; the first decides it
        jobs += [("approve", f"/groups/{like['id']}/approve", {}, author)
                 for author in (host, cohost)]
    # Interleave the kinds so that every kind runs while shards move.
    jobs.sort(key=lambda job: hash(job[3].id))
    return {"group": group, "codes": codes, "events": events, "likes": likes}, jobs


def run_migrate(database_url: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", "migrate"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rebalance_onto_a_third_worker_under_load(
        database_url: str, gateway: GatewayProcess, client: httpx.Client,
        make_user: Callable[..., User], admin: psycopg.Connection) -> None:
    require_citus(database_url)
    spare = os.environ.get("CITUS_SPARE_URL")
    if not spare:
        pytest.skip("CITUS_SPARE_URL is not set")
    scene, jobs = arrange(client, make_user)

    params = conninfo_to_dict(spare)
    admin.execute("select citus_add_node(%s, %s)", (params["host"], int(params["port"])))
    # A new node gets the roles as the coordinator has them: migrate gives the API
    # roles their worker password there (docs/citus.md: run it after adding a node).
    assert "unchanged" in run_migrate(database_url)
    admin.execute("select citus_rebalance_start()")

    work: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        work.put(job)
    results: list[tuple[str, Job, httpx.Response]] = []
    lock = threading.Lock()
    done = threading.Event()

    def worker() -> None:
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            while not done.is_set():
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    # Writes are done: keep reading until the shards have moved.
                    response = http.get("/groups", headers=jobs[0][3].headers)
                    with lock:
                        results.append(("read", jobs[0], response))
                    time.sleep(0.05)
                    continue
                response = http.post(job[1], json=job[2], headers=job[3].headers)
                with lock:
                    results.append((job[0], job, response))
                time.sleep(0.1)  # spread the writes over the moves

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        admin.execute("select citus_rebalance_wait()")
        while not work.empty():
            time.sleep(0.2)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)

    # The shards moved: all three workers hold some of every family.
    spread = admin.execute("""
        select s.logicalrelid::regclass::text, count(distinct p.nodeport)
        from pg_dist_shard s join pg_dist_shard_placement p using (shardid)
        where s.logicalrelid in ('app.events'::regclass, 'app.groups'::regclass,
                                 'app.notifications'::regclass)
        group by 1""").fetchall()
    assert sorted(spread) == [("app.events", 3), ("app.groups", 3), ("app.notifications", 3)]
    jobs_state = admin.execute(
        "select state::text from pg_dist_background_job order by job_id desc limit 1").fetchone()
    assert jobs_state == ("finished",)

    statuses = Counter((kind, r.status_code) for kind, _, r in results)
    assert not [s for s in statuses if s[1] >= 500], (statuses, [
        r.text for _, _, r in results if r.status_code >= 500][:5])
    assert statuses[("join", 200)] == CODES * USES, statuses
    assert statuses[("join", 410)] == CODES * (JOINERS_PER_CODE - USES), statuses
    assert statuses[("register", 200)] == EVENTS * SEATS, statuses
    assert statuses[("register", 409)] == EVENTS * (REGISTRANTS_PER_EVENT - SEATS), statuses
    assert statuses[("approve", 200)] == 2 * LIKE_GROUPS - statuses[("approve", 400)], statuses
    assert statuses[("approve", 400)] >= 1, statuses

    # Nothing lost, nothing counted twice, in the rows themselves.
    for code in scene["codes"]:
        used = admin.execute("select use_count from app.group_invites where group_id = %s "
                             "and id = %s", (scene["group"]["id"], code["id"])).fetchone()
        joined = admin.execute("select count(*) from app.group_members where group_id = %s "
                               "and invite_id = %s", (scene["group"]["id"], code["id"])).fetchone()
        assert (used, joined) == ((USES,), (USES,))
    members = admin.execute("select count(*) from app.group_members where group_id = %s",
                            (scene["group"]["id"],)).fetchone()
    assert members == (1 + CODES * USES,)
    for event in scene["events"]:
        seats = admin.execute("select seats_taken from app.events where id = %s",
                              (event["id"],)).fetchone()
        confirmed = admin.execute("select count(*) from app.registrations where event_id = %s "
                                  "and status = 'confirmed'", (event["id"],)).fetchone()
        assert (seats, confirmed) == ((SEATS,), (SEATS,))
    for like in scene["likes"]:
        group = admin.execute("select status, event_id, creator_id from app.like_groups "
                              "where id = %s", (like["id"],)).fetchone()
        assert group is not None and group[0] == "approved"
        chats = admin.execute("select count(*) from app.chats where event_id = %s "
                              "and like_group_id = %s", (group[1], like["id"])).fetchone()
        told = admin.execute("select count(*) from app.notifications where user_id = %s "
                             "and type = 'group_approved' and data ->> 'group_id' = %s",
                             (group[2], like["id"])).fetchone()
        assert (chats, told) == ((1,), (1,))
