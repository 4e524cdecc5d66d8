#!/usr/bin/env python3
# Used by scripts/bench-legacy.sh: python3 scripts/gen-v0-results.py OUT.jsonl. Deterministic (seeded).
# Writes a results file in the old tool's v0 layout (perf_tests AttestationTask.render / RequestAttempt.render):
# 20,000 tasks by 8 workers over 100 agents, with 409 conflicts, 429 retries, failures and null durations.
import json, random, sys
random.seed(20000)
out = open(sys.argv[1], "w")
t = 1000.0
url = "https://127.0.0.1:8881/v3.0/agents/perf-agent-%d/attestations"
def attempt(action, method, u, start, dur, ok, conflicts, retry_after):
    return {"action": action, "method": method, "url": u, "start_time": start, "end_time": start + dur if dur is not None else None,
            "duration": dur, "ok": ok, "conflicts": conflicts, "retry_after": retry_after}
for i in range(20000):
    agent = i % 100
    task = i // 100
    worker = i % 8
    t += random.expovariate(60.0)
    u = url % agent
    creates, updates = [], []
    s = t
    cok = True
    while True:
        d = random.lognormvariate(-3.0, 0.6)
        r = random.random()
        if r < 0.03 and len(creates) < 3:
            creates.append(attempt("create", "POST", u, s, d, False, True, 1)); s += d + 1
            continue
        if r < 0.04:
            creates.append(attempt("create", "POST", u, s, d, False, False, 0)); cok = False
            break
        creates.append(attempt("create", "POST", u, s, d, True, False, 0)); s += d
        break
    uok = False
    if cok:
        while True:
            d = random.lognormvariate(-2.2, 0.8)
            r = random.random()
            if r < 0.05 and len(updates) < 3:
                updates.append(attempt("update", "PATCH", u + "/latest", s, d, False, False, 2)); s += d + 2
                continue
            if r < 0.07:
                dd = None if r < 0.055 else d
                updates.append(attempt("update", "PATCH", u + "/latest", s, dd, False, False, 0))
                break
            updates.append(attempt("update", "PATCH", u + "/latest", s, d, True, False, 0)); uok = True
            break
    cd = sum(a["duration"] for a in creates if a["duration"] is not None)
    ud = sum(a["duration"] for a in updates if a["duration"] is not None)
    out.write(json.dumps({"agent_index": agent, "task_index": task, "worker_index": worker,
        "create_successful": cok, "update_successful": uok, "create_duration": cd, "update_duration": ud,
        "create_attempts": creates, "update_attempts": updates}) + "\n")
