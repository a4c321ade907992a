#!/usr/bin/env python3
"""Draws the panels of deploy/grafana/mxgate-dashboard.json from a Prometheus's answers into
a PNG, in the dashboard's own layout (each panel at its gridPos on the 24-column grid), with
its titles, legends (legendFormat) and units. Grafana itself is not packaged for Debian, so
this is how the README's picture is made from a real run; the picture is the dashboard's
queries and layout, drawn by matplotlib in Grafana's dark colours, not Grafana's renderer.

    render_dashboard.py --run BUILD/dataplane/mxgate [--seconds 150] [--out PNG]
        starts tests/e2e/dashboard_run.py's run (a gateway with its metrics endpoint, a
        private Prometheus scraping it every second, varied traffic: smtp-source batches,
        STARTTLS, refused recipients and clients, header_checks, deferrals and bounces at the
        next hop, the anvil's rate limit, a pregreet burst and DNSBL-listed clients on the
        screen) and draws the whole run;
    render_dashboard.py --prometheus URL --job JOB --instance INSTANCE [--minutes 60]
        draws the last minutes of an existing Prometheus (any deployment);
    --save JSON keeps the answers, --load JSON draws them again (no run).
The template variables are set as Grafana sets them (service "All": .*) and
$__rate_interval to --rate-interval (default 10s). Needs python3-matplotlib."""

import argparse
import datetime
import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DASHBOARD = os.path.join(HERE, "mxgate-dashboard.json")

# Grafana's dark theme and its classic palette
BG, PANEL, BORDER, TEXT, DIM, GRID = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e9e", \
    "#24272b"
PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9",
           "#705da0", "#508642", "#cca300", "#447ebc", "#c15c17"]
UNIT_PX = 30      # Grafana: one grid row is 30 px high
WIDTH_PX = 1400   # the picture's width: 24 columns


def query_range(url, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                "step": str(step)})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{q}", timeout=60) as r:
        res = json.loads(r.read().decode())
    if res.get("status") != "success":
        raise SystemExit(f"query {expr!r}: {res}")
    return res["data"]["result"]


def substitute(expr, job, instance, rate_interval):
    return (expr.replace("$__rate_interval", rate_interval).replace("$instance", instance)
            .replace("$service", ".*").replace("$job", job))


def legend(fmt, labels):
    if not fmt:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def fmt_value(v, unit):
    """A tick label in Grafana's manner for the units the dashboard uses."""
    if v == 0:
        return "0"
    if unit == "s":
        for scale, suffix in ((1, " s"), (1e-3, " ms"), (1e-6, " µs")):
            if abs(v) >= scale:
                return f"{v / scale:.3g}{suffix}"
        return f"{v * 1e9:.3g} ns"
    if unit == "percentunit":
        return f"{v * 100:.3g}%"
    if unit in ("bytes",):
        for scale, suffix in ((2 ** 30, " GiB"), (2 ** 20, " MiB"), (2 ** 10, " KiB")):
            if abs(v) >= scale:
                return f"{v / scale:.3g}{suffix}"
        return f"{v:.3g} B"
    suffix = {"ops": " ops/s", "pps": " p/s", "Bps": "B/s"}.get(unit, "")
    for scale, s in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{s.strip() if unit == 'Bps' else s}{suffix}"
    return f"{v:.3g}{' ' if unit == 'Bps' else ''}{suffix}"


def fetch(dash, url, job, instance, start, end, step, rate_interval):
    """{panel id: [(legend, [t], [v])]} for every visible panel."""
    data = {}
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        lines = []
        for t in p["targets"]:
            expr = substitute(t["expr"], job, instance, rate_interval)
            for s in query_range(url, expr, start, end, step):
                ts = [float(a) for a, _ in s["values"]]
                vs = [float(b) for _, b in s["values"]]
                vs = [math.nan if math.isinf(v) else v for v in vs]
                lines.append((legend(t.get("legendFormat", ""), s["metric"]), ts, vs))
        data[p["id"]] = lines
    return data


def draw(dash, data, start, end, step, out, subtitle):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    header = 2   # grid rows for the picture's title bar
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"]) + header
    dpi = 100
    fig = plt.figure(figsize=(WIDTH_PX / dpi, rows * UNIT_PX / dpi), dpi=dpi, facecolor=BG)
    H = rows * UNIT_PX
    W = WIDTH_PX
    pad = 4

    def box(g):
        """(left, bottom, width, height) in figure fractions of a gridPos, with a gap."""
        x0 = g["x"] * W / 24 + pad
        w = g["w"] * W / 24 - 2 * pad
        y0 = (g["y"] + header) * UNIT_PX + pad
        h = g["h"] * UNIT_PX - 2 * pad
        return x0 / W, 1 - (y0 + h) / H, w / W, h / H

    fig.text(8 / W, 1 - 30 / H, dash["title"], color=TEXT, fontsize=16, weight="bold",
             va="center")
    for i, line in enumerate(subtitle):
        fig.text(110 / W, 1 - (21 + 17 * i) / H, line, color=DIM, fontsize=8.5, va="center")
    tick_fmt = lambda t, _: datetime.datetime.utcfromtimestamp(t).strftime("%H:%M:%S")  # noqa
    for p in dash["panels"]:
        g = p["gridPos"]
        if p["type"] == "row":
            arrow = "\u25b8" if p.get("collapsed") else "\u25be"
            extra = f"  ({len(p.get('panels', []))} panels)" if p.get("collapsed") else ""
            l, b, w, h = box({**g, "h": 1})
            fig.text(l, b + h / 2, f"{arrow} {p['title']}{extra}", color=TEXT, fontsize=10.5,
                     weight="bold", va="center")
            continue
        l, b, w, h = box(g)
        fig.add_artist(Rectangle((l, b), w, h, transform=fig.transFigure, facecolor=PANEL,
                                 edgecolor=BORDER, linewidth=0.8, zorder=0))
        fig.text(l + 8 / W, b + h - 13 / H, p["title"], color=TEXT, fontsize=9,
                 weight="bold", va="center")
        # series with no number at all (histogram_quantile of nothing: NaN) draw nothing
        lines = [ln for ln in data.get(p["id"], []) if any(not math.isnan(v) for v in ln[2])]
        unit = p["fieldConfig"]["defaults"].get("unit", "short")
        legend_rows = 1 if lines else 0
        if lines:
            # rough: entries per line of legend from their text widths
            used, legend_rows = 0, 1
            for name, _, _ in lines:
                need = 24 + 6.2 * len(name)
                if used + need > w * W - 16:
                    legend_rows, used = legend_rows + 1, 0
                used += need
            legend_rows = min(legend_rows, 3)
        top = 26
        bottom = 24 + 14 * legend_rows
        left_px = 62
        ax = fig.add_axes([l + left_px / W, b + bottom / H, w - (left_px + 12) / W,
                           h - (top + bottom) / H], facecolor=PANEL)
        for s in ax.spines.values():
            s.set_visible(False)
        ax.tick_params(colors=DIM, labelsize=7, length=0)
        ax.grid(True, color=GRID, linewidth=0.7)
        ax.set_xlim(start, end)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(tick_fmt))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, u=unit: fmt_value(v, u)))
        if not lines:
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            ax.text(0.5, 0.5, "No data", color=DIM, fontsize=10, ha="center", va="center",
                    transform=ax.transAxes)
            continue
        stack = p["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
        grid = [start + k * step for k in range(int((end - start) / step) + 1)]
        base = [0.0] * len(grid)
        handles = []
        peak = 0.0
        for i, (name, ts, vs) in enumerate(lines):
            color = PALETTE[i % len(PALETTE)]
            if stack:
                at = {round((t - start) / step): v for t, v in zip(ts, vs)}
                ys = [at.get(k, math.nan) for k in range(len(grid))]
                top_ = [bb + (0 if math.isnan(y) else y) for bb, y in zip(base, ys)]
                ax.fill_between(grid, base, top_, color=color, alpha=0.25, linewidth=0)
                hl, = ax.plot(grid, top_, color=color, linewidth=1.1)
                base = top_
                peak = max([peak] + top_)
            else:
                # a gap where the series has no point (Grafana: spanNulls off)
                xs, ys = [], []
                for t, v in zip(ts, vs):
                    if xs and t - xs[-1] > 1.5 * step:
                        xs.append(math.nan)
                        ys.append(math.nan)
                    xs.append(t)
                    ys.append(v)
                ax.fill_between(xs, 0, ys, color=color, alpha=0.08, linewidth=0)
                hl, = ax.plot(xs, ys, color=color, linewidth=1.1)
                peak = max([peak] + [y for y in ys if not math.isnan(y)])
            handles.append((hl, name))
        ax.set_ylim(0, peak * 1.1 if peak > 0 else 1)
        leg = ax.legend([hh for hh, _ in handles], [n for _, n in handles],
                        loc="upper left", bbox_to_anchor=(-left_px / (w * W - left_px - 12),
                                                          -22 / (h * H - top - bottom)),
                        ncol=max(1, min(len(handles), math.ceil(len(handles) / legend_rows))),
                        frameon=False, fontsize=7, labelcolor=TEXT, handlelength=1.2,
                        columnspacing=1.2, borderaxespad=0, handletextpad=0.4)
        for t in leg.get_texts():
            t.set_color(TEXT)
    fig.savefig(out, dpi=dpi, facecolor=BG)
    plt.close(fig)
    # a palette of 96 colours keeps the picture small (the README's): the antialiased lines
    # of a dark theme need no more (Pillow comes with matplotlib)
    from PIL import Image
    with Image.open(out) as im:
        small = im.convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT)
    small.save(out, optimize=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", metavar="MXGATE", help="start a run with this mxgate binary")
    ap.add_argument("--seconds", type=int, default=150, help="the run's traffic (--run)")
    ap.add_argument("--prometheus", metavar="URL", help="draw from this Prometheus")
    ap.add_argument("--job", default="mxgate")
    ap.add_argument("--instance", default=".*")
    ap.add_argument("--minutes", type=float, default=60, help="the range (--prometheus)")
    ap.add_argument("--rate-interval", default="10s")
    ap.add_argument("--step", type=float, default=2)
    ap.add_argument("--save", metavar="JSON", help="also write the answers to this file")
    ap.add_argument("--load", metavar="JSON", help="draw the answers --save wrote")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "images", "dashboard.png"))
    args = ap.parse_args()
    with open(DASHBOARD) as f:
        dash = json.load(f)
    if args.run:
        sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
        import dashboard_run
        run = dashboard_run.Run(os.path.abspath(args.run))
        try:
            run.start()
            start = time.time()
            run.traffic(args.seconds, log=lambda m: print(m, file=sys.stderr))
            time.sleep(5)
            end = time.time()
            instance = f"127.0.0.1:{run.metrics_port}"
            data = fetch(dash, run.prom.url, "mxgate", instance, start, end, args.step,
                         args.rate_interval)
        finally:
            run.stop()
        what = (f"a {args.seconds} s run of tests/e2e/dashboard_run.py (kernel transport)")
    elif args.prometheus:
        end = time.time()
        start = end - args.minutes * 60
        instance = args.instance
        data = fetch(dash, args.prometheus.rstrip("/"), args.job, instance, start, end,
                     args.step, args.rate_interval)
        what = f"{args.prometheus}, the last {args.minutes:g} minutes"
    elif args.load:
        with open(args.load) as f:
            saved = json.load(f)
        data = {int(k): v for k, v in saved["data"].items()}
        start, end, instance, what = saved["start"], saved["end"], saved["instance"], \
            saved["what"]
        args.job, args.step, args.rate_interval = saved["job"], saved["step"], \
            saved["rate_interval"]
    else:
        ap.error("--run MXGATE, --prometheus URL or --load JSON")
    if args.save:
        with open(args.save, "w") as f:
            json.dump({"data": data, "start": start, "end": end, "instance": instance,
                       "what": what, "job": args.job, "step": args.step,
                       "rate_interval": args.rate_interval}, f)
    stamp = datetime.datetime.utcfromtimestamp(end).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = ("The panels of deploy/grafana/mxgate-dashboard.json drawn by matplotlib "
                "(deploy/grafana/render_dashboard.py) from Prometheus query_range answers, "
                "not by Grafana",
                f"{what}, {stamp}; job={args.job} instance={instance} service=All, "
                f"$__rate_interval={args.rate_interval}, step {args.step:g} s")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    draw(dash, data, start, end, args.step, args.out, subtitle)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
