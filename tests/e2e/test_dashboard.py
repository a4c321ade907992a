"""The Grafana dashboard (deploy/grafana/mxgate-dashboard.json) against a real Prometheus
scraping a real gateway (argv: mxgate binary, the source root).

  1. The JSON: what deploy/grafana/make_dashboard.py writes; schemaVersion 36 or later; the
     ${DS_PROMETHEUS} datasource input, used by every panel and query; the job, instance
     and service variables; panels inside the 24-column grid, not overlapping; unique ids.
  2. The names: every metric name a query uses is a family of a real scrape of the
     gateway, or (the dpdk transport's) a family docs/METRICS.md lists.
  3. The queries: tests/e2e/dashboard_run.py starts a private Prometheus (its own TSDB
     directory, a free loopback port, scrape interval 1 s) scraping a gateway (kernel
     transport) while clients send known traffic for TRAFFIC_S seconds: messages accepted
     and relayed, refused by reject_unauth_destination and reject_rbl_client rbl.test,
     header_checks REJECT, STARTTLS, the next hop's 451 and 550, the anvil's rate limit,
     a pregreet burst and DNSBL-listed clients on the screen, AUTH (a private Dovecot)
     that succeeds and fails. Then every panel expression,
     with the template variables set to this run's job, instance and every service (as
     Grafana substitutes them), is asked of Prometheus's HTTP API over /api/v1/query and
     /api/v1/query_range: none may fail, every one must return series, and every panel
     must show a value above zero somewhere in the run, except the panels listed in
     EXPECTED_EMPTY (with the reason); each template variable's label_values() query
     must find this run's value.
Python 3 standard library; needs root (Dovecot), prometheus (Debian's package), openssl,
smtp-source, dovecot-core."""

import json
import math
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mxtest  # noqa: E402
from mxtest import fail  # noqa: E402
import dashboard_run  # noqa: E402

TRAFFIC_S = 60
RATE_INTERVAL = "10s"   # $__rate_interval: Grafana's is max(4 x scrape interval, step + scrape)

# Panels whose queries may return no series (or only zeros) in this run, and why.
DPDK = "dpdk transport only (the kernel transport has no ports, lcores or TCP stack of its " \
       "own); tests/e2e/test_metrics.py checks these families on dpdk"
EXPECTED_EMPTY = {
    "Port packets": DPDK,
    "Port drops and errors": DPDK,
    "Worker busy fraction": DPDK,
    "Mbufs in use": DPDK,
    "TCP stack": DPDK,
    "Worker connections": DPDK,
}

binary = mxtest.binary_from_argv()
source_root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "..")
GRAFANA_DIR = os.path.join(source_root, "deploy", "grafana")
sys.path.insert(0, GRAFANA_DIR)
import make_dashboard  # noqa: E402

with open(os.path.join(GRAFANA_DIR, "mxgate-dashboard.json")) as f:
    dash_text = f.read()
dash = json.loads(dash_text)


def all_panels(d):
    """Every panel, rows' collapsed panels included, in order; rows themselves apart."""
    out = []
    for p in d["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def check_json():
    if dash_text != make_dashboard.render():
        fail("mxgate-dashboard.json is not what make_dashboard.py writes: run "
             "python3 deploy/grafana/make_dashboard.py")
    if dash.get("schemaVersion", 0) < 36:
        fail(f"schemaVersion {dash.get('schemaVersion')} < 36")
    if [i["name"] for i in dash["__inputs"]] != ["DS_PROMETHEUS"]:
        fail(f"__inputs: {dash['__inputs']}")
    names = [v["name"] for v in dash["templating"]["list"]]
    if names != ["job", "instance", "service"]:
        fail(f"template variables {names}")
    ids = set()
    for p in all_panels(dash) + [r for r in dash["panels"] if r["type"] == "row"]:
        if p["id"] in ids:
            fail(f"panel id {p['id']} twice")
        ids.add(p["id"])
        g = p["gridPos"]
        if g["x"] < 0 or g["w"] <= 0 or g["x"] + g["w"] > 24 or g["h"] <= 0:
            fail(f"panel {p['title']!r} outside the grid: {g}")
    for p in all_panels(dash):
        if p["datasource"]["uid"] != "${DS_PROMETHEUS}" or not p["targets"] or any(
                t["datasource"]["uid"] != "${DS_PROMETHEUS}" for t in p["targets"]):
            fail(f"panel {p['title']!r}: datasource not ${{DS_PROMETHEUS}} or no query")
    # the visible panels must not overlap (a collapsed row's panels are hidden until opened)
    cells = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        for y in range(g["y"], g["y"] + g["h"]):
            for x in range(g["x"], g["x"] + g["w"]):
                if (x, y) in cells:
                    fail(f"panels {cells[(x, y)]!r} and {p['title']!r} overlap at {x},{y}")
                cells[(x, y)] = p["title"]
    for title in EXPECTED_EMPTY:
        if title not in [p["title"] for p in all_panels(dash)]:
            fail(f"EXPECTED_EMPTY names {title!r}, which is no panel")
    print(f"ok 1: the JSON: {len(all_panels(dash))} panels, "
          f"{sum(len(p['targets']) for p in all_panels(dash))} queries, schema "
          f"{dash['schemaVersion']}, variables {names}")


METRIC = re.compile(r"\bmxgate_[a-z0-9_]+")


def family(name):
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def check_names(scrape):
    scraped = set(re.findall(r"^# TYPE (\S+) ", scrape, re.M))
    with open(os.path.join(source_root, "docs", "METRICS.md")) as f:
        doc = f.read()
    dpdk_doc = doc[doc.index("## dpdk transport only"):]
    documented = set(re.findall(r"^\| `(mxgate_[a-z0-9_]+)` \|", dpdk_doc, re.M))
    net = re.search(r"`mxgate_net_<counter>_total` \|.*?\|.*?\|(.*)\|", dpdk_doc)
    net_counters = set(re.findall(r"[a-z_]+", net.group(1))) if net else set()
    used = set()
    for p in all_panels(dash):
        for t in p["targets"]:
            used |= {family(n) for n in METRIC.findall(t["expr"])}
    for v in dash["templating"]["list"]:
        used |= {family(n) for n in METRIC.findall(v["definition"])}
    unknown = []
    from_doc = []
    for n in sorted(used):
        m = re.fullmatch(r"mxgate_net_([a-z_]+)_total", n)
        if n in scraped:
            continue
        if n in documented or (m and m.group(1) in net_counters):
            from_doc.append(n)
            continue
        unknown.append(n)
    if unknown:
        fail(f"the dashboard uses names neither scraped nor in docs/METRICS.md's dpdk "
             f"section: {unknown}")
    print(f"ok 2: {len(used)} metric names: {len(used) - len(from_doc)} in the scrape, "
          f"{len(from_doc)} dpdk-only ones in docs/METRICS.md")


def substitute(expr, job, instance, service):
    for var, value in (("$__rate_interval", RATE_INTERVAL), ("$instance", instance),
                       ("$service", service), ("$job", job)):
        expr = expr.replace(var, value)
    if "$" in re.sub(r'"\$\{1\}xx"', "", expr):
        fail(f"a variable left in {expr!r}")
    return expr


def values(result):
    """Every sample value of a query result (instant vector or matrix), NaN as 0."""
    out = []
    for s in result:
        pts = s.get("values") or ([s["value"]] if "value" in s else [])
        for _, v in pts:
            f = float(v)
            out.append(0.0 if math.isnan(f) or math.isinf(f) else f)
    return out


def check_queries(run, start, end):
    prom = run.prom
    job, instance = "mxgate", f"127.0.0.1:{run.metrics_port}"
    # the variables' queries (Grafana's label_values(metric{...}, label)) find this run
    found = {}
    for v in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.*), (\w+)\)", v["definition"])
        if not m:
            fail(f"variable {v['name']}: {v['definition']!r}")
        sel = substitute(m.group(1), job, instance, ".*")
        r = prom.api(f"label/{m.group(2)}/values", **{"match[]": sel})
        if r.get("status") != "success" or not r["data"]:
            fail(f"variable {v['name']}: label_values {sel} {m.group(2)}: {r}")
        found[v["name"]] = r["data"]
    if found["job"] != [job] or found["instance"] != [instance]:
        fail(f"the variables found {found}")
    # every service Grafana's "All" covers, and each service alone
    services = found["service"]
    panels = all_panels(dash)
    empty_ok = []
    n_queries = 0
    for p in panels:
        reason = EXPECTED_EMPTY.get(p["title"])
        panel_values = []
        for t in p["targets"]:
            choices = [".*"] + (services if "$service" in t["expr"] else [])
            for svc in choices:
                expr = substitute(t["expr"], job, instance, svc)
                r = prom.api("query_range", query=expr, start=f"{start:.3f}",
                             end=f"{end:.3f}", step="2")
                ri = prom.api("query", query=expr, time=f"{end:.3f}")
                n_queries += 2
                for what, res in (("query_range", r), ("query", ri)):
                    if res.get("status") != "success" or res.get("warnings"):
                        fail(f"panel {p['title']!r} {what} {expr!r}: {res}")
                series = r["data"]["result"]
                if not series and reason is None and svc == ".*":
                    fail(f"panel {p['title']!r}: no series for {expr!r}\n"
                         f"(services {services})\n{run.output()}")
                panel_values += values(series)
        if not any(v > 0 for v in panel_values):
            if reason is None:
                fail(f"panel {p['title']!r} shows only zeros (or nothing) for the run")
            empty_ok.append(p["title"])
        elif reason is not None:
            fail(f"panel {p['title']!r} is in EXPECTED_EMPTY ({reason}) but shows data: "
                 "take it out")
    by_reason = {}
    for t in empty_ok:
        by_reason.setdefault(EXPECTED_EMPTY[t], []).append(t)
    print(f"ok 3: {n_queries} queries over {len(panels)} panels succeed; "
          f"{len(panels) - len(empty_ok)} panels show data, {len(empty_ok)} expected "
          f"empty:\n" + "\n".join(f"  {', '.join(ts)}: {r}" for r, ts in by_reason.items()))


def main():
    check_json()
    run = dashboard_run.Run(binary)
    try:
        run.start()
        start = time.time()
        counts = run.traffic(TRAFFIC_S)
        for key in ("tls 250", "defer 250", "bounce 250", "header_checks 550", "unauth 554",
                    "rbl 554", "anvil refused", "screened 250", "auth ok", "auth 535"):
            if not counts.get(key):
                fail(f"the traffic did not produce {key!r}: {counts}\n{run.output()}")
        # the last deliveries and two more scrapes
        mxtest.wait_for(lambda: run.prom.instant(
            'mxgate_relay_recipients_bounced_total{job="mxgate"} > 0'), 60,
            "a bounce counted", run.output)
        time.sleep(3)
        end = time.time()
        check_names(run.gw.scrape())
        check_queries(run, start, end)
    finally:
        run.stop()
    print("dashboard: ok")


if __name__ == "__main__":
    main()
