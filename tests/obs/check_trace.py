"""A structure check of a Chrome trace-event / Perfetto JSON file against
the Trace Event Format document (Google, "Trace Event Format"):

 - JSON Object Format: an object whose "traceEvents" is an array of events;
 - every event has "ph" and "pid"/"tid" (integers); "M" metadata events are
   one of process_name / process_labels / process_sort_index / thread_name /
   thread_sort_index with an "args" object;
 - complete events ("X") have a string "name", numeric "ts" (microseconds)
   and "dur" >= 0, and "args", when present, is an object;
 - per thread (pid, tid), X events appear with monotonic (non-decreasing)
   timestamps, and they nest properly: two events on one thread are either
   disjoint or one contains the other (the viewer draws them as a stack).

    check_trace.py FILE [--ranks N] [--names a,b,...] [--comm]
--ranks: exactly the processes 0..N-1 with events; --names: each name
occurs on every rank; --comm: collective events ("cat": "comm") carry
integer "bytes" and a string "group".
"""
import json
import sys

EPS = 1e-3  # microseconds: timestamps are written with ns resolution
META = {"process_name", "process_labels", "process_sort_index", "thread_name", "thread_sort_index"}


def fail(msg):
    print("  trace check: " + msg)
    sys.exit(1)


def main():
    path, args = sys.argv[1], sys.argv[2:]
    opts = {}
    i = 0
    while i < len(args):
        if args[i] == "--comm":
            opts["comm"] = True
            i += 1
        else:
            opts[args[i][2:]] = args[i + 1]
            i += 2
    doc = json.load(open(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        fail("not the JSON Object Format (an object with a traceEvents array)")
    threads = {}
    names = {}
    for k, e in enumerate(doc["traceEvents"]):
        where = "event %d (%r)" % (k, e.get("name") if isinstance(e, dict) else e)
        if not isinstance(e, dict) or not isinstance(e.get("ph"), str):
            fail(where + ": not an object with a string ph")
        if not isinstance(e.get("pid"), int) or not isinstance(e.get("tid"), int):
            fail(where + ": pid and tid must be integers")
        ph = e["ph"]
        if ph == "M":
            if e.get("name") not in META or not isinstance(e.get("args"), dict):
                fail(where + ": a metadata event must be one of %s with args" % sorted(META))
            continue
        if ph != "X":
            continue
        if not isinstance(e.get("name"), str) or not e["name"]:
            fail(where + ": X event without a name")
        ts, dur = e.get("ts"), e.get("dur")
        if not isinstance(ts, (int, float)) or not isinstance(dur, (int, float)) or dur < 0:
            fail(where + ": ts and dur must be numbers, dur >= 0")
        if "args" in e and not isinstance(e["args"], dict):
            fail(where + ": args must be an object")
        if opts.get("comm") and e.get("cat") == "comm":
            a = e.get("args", {})
            if not isinstance(a.get("bytes"), int) or not isinstance(a.get("group"), str):
                fail(where + ": a collective without integer bytes and a string group")
        threads.setdefault((e["pid"], e["tid"]), []).append((ts, ts + dur, e["name"], k))
        names.setdefault(e["pid"], set()).add(e["name"])
    if not threads:
        fail("no complete (X) events")
    for (pid, tid), evs in sorted(threads.items()):
        stack = []
        last = -float("inf")
        for ts, end, name, k in evs:
            if ts < last - EPS:
                fail("pid %d tid %d: event %d (%s) at %.3f us after one at %.3f us: timestamps not monotonic"
                     % (pid, tid, k, name, ts, last))
            last = ts
            while stack and stack[-1][0] <= ts + EPS:
                stack.pop()
            if stack and end > stack[-1][0] + EPS:
                fail("pid %d tid %d: event %d (%s, %.3f-%.3f us) overlaps %s (ends %.3f us) without nesting"
                     % (pid, tid, k, name, ts, end, stack[-1][1], stack[-1][0]))
            stack.append((end, name))
    pids = sorted(names)
    if "ranks" in opts and pids != list(range(int(opts["ranks"]))):
        fail("processes with events are %r, want 0..%d" % (pids, int(opts["ranks"]) - 1))
    for want in filter(None, opts.get("names", "").split(",")):
        for pid in pids:
            if want not in names[pid]:
                fail("no %r event on pid %d (it has: %s)" % (want, pid, ", ".join(sorted(names[pid]))))
    n = sum(len(v) for v in threads.values())
    print("  %s: %d complete events on %d thread(s) of %d process(es), nested and monotonic per thread"
          % (path.split("/")[-1], n, len(threads), len(pids)))


main()
