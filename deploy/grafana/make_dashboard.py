#!/usr/bin/env python3
"""Writes deploy/grafana/mxgate-dashboard.json, the Grafana dashboard for mxgate's metrics
(docs/METRICS.md). The JSON is the product (import it into Grafana); this script is its
source, so that a panel is one line here rather than sixty lines of JSON, and
tests/e2e/test_dashboard.py checks that the committed JSON is what this script writes.

    python3 deploy/grafana/make_dashboard.py            # rewrite the JSON
    python3 deploy/grafana/make_dashboard.py --check    # exit 1 when the JSON is stale

Every query selects `job=~"$job",instance=~"$instance"` (and `service=~"$service"` where
the family has a service label); rates use $__rate_interval, which Grafana sizes from the
scrape interval. Python 3 standard library only."""

import json
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mxgate-dashboard.json")
SEL = 'job=~"$job",instance=~"$instance"'
SVC = SEL + ',service=~"$service"'
RI = "[$__rate_interval]"


def rate(metric, sel=SEL, by=None):
    inner = f"rate({metric}{{{sel}}}{RI})"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q, hist, sel=SEL):
    return f"histogram_quantile({q}, sum by (le) (rate({hist}_bucket{{{sel}}}{RI})))"


def target(expr, legend):
    return {"expr": expr, "legend": legend}


class Layout:
    """Panels placed left to right on Grafana's 24-column grid, rows below each other."""

    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1
        self.collapsed_row = None

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title, collapsed=False):
        self.newline()
        row = {"type": "row", "title": title, "id": self._id(), "collapsed": collapsed,
               "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []}
        self.panels.append(row)
        self.collapsed_row = row if collapsed else None
        self.y += 1

    def newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def panel(self, title, description, targets, unit="short", w=8, h=7, stack=False,
              kind="timeseries"):
        if self.x + w > 24:
            self.newline()
        p = {
            "type": kind,
            "title": title,
            "description": description,
            "id": self._id(),
            "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {
                "defaults": {
                    "unit": unit,
                    "min": 0,
                    "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                               "showPoints": "never", "spanNulls": False,
                               "stacking": {"mode": "normal" if stack else "none",
                                            "group": "A"}},
                },
                "overrides": [],
            },
            "options": {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            },
            "targets": [
                {"refId": chr(ord("A") + i), "expr": t["expr"], "legendFormat": t["legend"],
                 "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                 "range": True}
                for i, t in enumerate(targets)
            ],
        }
        (self.collapsed_row["panels"] if self.collapsed_row else self.panels).append(p)
        self.x += w
        self.row_h = max(self.row_h, h)


def build():
    L = Layout()

    L.row("Traffic")
    L.panel("Connections", "Connections accepted and refused at accept (limits, no service) "
            "per second, closed by smtpd_timeout, and connections open now.",
            [target(rate("mxgate_smtp_connections_accepted_total"), "accepted/s"),
             target(rate("mxgate_smtp_connections_refused_total"), "refused/s"),
             target(rate("mxgate_smtp_connections_timed_out_total"), "timed out/s"),
             target(f"sum(mxgate_smtp_connections_open{{{SEL}}})", "open")])
    L.panel("Sessions by service", "SMTP sessions started per second, by master.cf service.",
            [target(rate("mxgate_service_sessions_total", SVC, "service"), "{{service}}")],
            unit="ops", stack=True)
    L.panel("Messages accepted by service", "Messages acknowledged with 250 once durable, "
            "per second, by service (refusals: the Rejections row).",
            [target(rate("mxgate_service_messages_accepted_total", SVC, "service"),
                    "{{service}}")],
            unit="ops", stack=True)
    L.panel("Recipients by service", "RCPT TO accepted, refused (5xx) and deferred (4xx) "
            "per second, by service.",
            [target(rate("mxgate_service_recipients_accepted_total", SVC, "service"),
                    "accepted {{service}}"),
             target(rate("mxgate_service_recipients_rejected_total", SVC, "service"),
                    "rejected {{service}}"),
             target(rate("mxgate_service_recipients_deferred_total", SVC, "service"),
                    "deferred {{service}}")], unit="ops")
    L.panel("Received bytes", "Bytes received from SMTP clients per second.",
            [target(rate("mxgate_smtp_received_bytes_total"), "received")], unit="Bps")
    L.panel("Sessions open by service", "SMTP sessions open now, by service and "
            "configuration generation (a reload's old generation drains here).",
            [target(f"sum by (service, generation) (mxgate_service_sessions_open{{{SVC}}})",
                    "{{service}} gen {{generation}}")])

    L.row("Rejections")
    L.panel("Refusals by restriction", "Recipients refused, by the restriction as main.cf "
            "writes it and outcome (reject: 5xx, defer: 4xx).",
            [target(rate("mxgate_restriction_refusals_total", SEL, "restriction, outcome"),
                    "{{restriction}} ({{outcome}})")], unit="ops", w=12)
    L.panel("Replies by class", "SMTP replies sent per second, by class (2xx, 3xx, 4xx, "
            "5xx).",
            [target('sum by (class) (label_replace(rate(mxgate_smtp_replies_total{' + SEL +
                    '}' + RI + '), "class", "${1}xx", "code", "([0-9]).*"))', "{{class}}")],
            unit="ops", w=12)
    L.panel("Refusals by code and enhanced code", "4xx and 5xx replies per second by reply "
            "code and RFC 3463 enhanced status code.",
            [target(rate("mxgate_smtp_replies_total", SEL + ',code=~"[45].."',
                         "code, enhanced"), "{{code}} {{enhanced}}")], unit="ops", w=12)
    L.panel("Messages refused and header_checks", "Messages refused at DATA or end of "
            "data, discarded, and header_checks/body_checks decisions by action.",
            [target(rate("mxgate_smtp_messages_rejected_total"), "rejected"),
             target(rate("mxgate_smtp_messages_discarded_total"), "discarded"),
             target(rate("mxgate_checks_messages_total", SEL, "action"),
                    "checks {{action}}")], unit="ops", w=12)
    L.panel("Protocol errors", "Protocol errors (Postfix's error count), commands sent "
            "ahead without PIPELINING, bare LF line ends, bad PROXY headers.",
            [target(rate("mxgate_smtp_protocol_errors_total"), "protocol errors"),
             target(rate("mxgate_smtp_pipelining_violations_total"), "pipelining"),
             target(rate("mxgate_smtp_bare_newlines_total"), "bare newlines"),
             target(rate("mxgate_smtp_proxy_failed_total"), "PROXY failed")], unit="ops",
            w=12)
    L.panel("Anvil refusals", "Clients refused by the anvil limits "
            "(smtpd_client_*_limit), per second.",
            [target(rate(f"mxgate_anvil_{k}_refused_total"), k.replace("_", " "))
             for k in ("connection_count", "connection_rate", "message_rate",
                       "recipient_rate", "auth_rate", "newtls_rate")], unit="ops", w=12)

    L.row("Screen (postscreen)")
    L.panel("Screen outcomes", "Each postscreen test's outcome per second: PASS NEW / PASS "
            "OLD, PREGREET, DNSBL, the deep tests, access list.",
            [target(rate(f"mxgate_screen_{k}_total"), k.replace("_", " "))
             for k in ("pass_new", "pass_old", "pregreet_fail", "dnsbl_fail", "deep_fail",
                       "denylisted", "allowlisted")], unit="ops", w=12)
    L.panel("DNSBL listings by site", "Screened clients each postscreen_dnsbl_sites site "
            "listed, per second.",
            [target(rate("mxgate_screen_dnsbl_listed_total", SVC, "site"), "{{site}}")],
            unit="ops", w=12)

    L.row("TLS and AUTH")
    L.panel("TLS handshakes", "TLS handshakes completed, resumed and failed per second.",
            [target(rate("mxgate_tls_established_total"), "established"),
             target(rate("mxgate_tls_resumed_total"), "resumed"),
             target(rate("mxgate_tls_failed_total"), "failed")], unit="ops", w=12)
    L.panel("AUTH by outcome", "SMTP AUTH exchanges per second: success (235), failed "
            "(535), tempfail (454), aborted.",
            [target(rate("mxgate_sasl_authentications_total", SEL, "outcome"),
                    "{{outcome}}")], unit="ops", w=12)

    L.row("Latency")
    for title, hist, what in (
            ("Connect to greeting", "mxgate_smtp_greeting_seconds",
             "From the session's start (accept, or the screen's pass) to its first reply."),
            ("End of data to reply", "mxgate_smtp_data_final_reply_seconds",
             "From the final dot to the final reply (250 once durable, or a refusal)."),
            ("Restriction evaluation", "mxgate_restrictions_evaluation_seconds",
             "One stage of the restriction lists, DNS, policy and greylisting waits "
             "included."),
            ("DNS answer", "mxgate_resolver_answer_seconds",
             "From a worker's DNS question to the resolver service's answer, cache hits "
             "included."),
            ("Relay delivery delay", "mxgate_relay_delivery_delay_seconds",
             "From a message's arrival to a recipient's final status (Postfix's delay=).")):
        L.panel(title, what + " p50 and p99 over the rate interval.",
                [target(quantile(0.5, hist), "p50"), target(quantile(0.99, hist), "p99")],
                unit="s")
    L.panel("Policy service answer", "From a check_policy_service query to the answer: "
            "p50 and p99.",
            [target(quantile(0.5, "mxgate_policy_answer_seconds"), "p50"),
             target(quantile(0.99, "mxgate_policy_answer_seconds"), "p99")], unit="s")

    L.row("Spool")
    L.panel("Commits and syncs", "Messages made durable and group commits (fdatasync) per "
            "second, and messages the spool failed.",
            [target(rate("mxgate_spool_messages_committed_total"), "committed"),
             target(rate("mxgate_spool_syncs_total"), "syncs"),
             target(rate("mxgate_spool_messages_failed_total"), "failed"),
             target(rate("mxgate_smtp_spool_failures_total"), "451/452 to clients")],
            unit="ops")
    L.panel("Messages per sync", "Group commit size: messages committed per fdatasync.",
            [target(f"{rate('mxgate_spool_messages_committed_total')} / "
                    f"{rate('mxgate_spool_syncs_total')}", "messages/sync")])
    L.panel("Spool size", "Bytes the spool's segments occupy (what mxgate_spool_quota "
            "counts) and live messages in the queue.",
            [target(f"sum(mxgate_spool_bytes{{{SEL}}})", "bytes"),
             target(f"sum(mxgate_relay_queue_messages{{{SEL}}}) * 1000",
                    "queued messages x1000")], unit="bytes")

    L.row("Relay")
    L.panel("Recipients sent, deferred, bounced", "Recipients the next hop accepted, "
            "delivery attempts deferred, recipients bounced and expired, per second.",
            [target(rate("mxgate_relay_recipients_sent_total"), "sent"),
             target(rate("mxgate_relay_deferrals_total"), "deferrals"),
             target(rate("mxgate_relay_recipients_bounced_total"), "bounced"),
             target(rate("mxgate_relay_recipients_expired_total"), "expired")], unit="ops",
            w=12)
    L.panel("Queue housekeeping", "Notifications spooled, messages retired, segments "
            "reclaimed and messages relocated, per second.",
            [target(rate("mxgate_relay_notifications_total"), "notifications"),
             target(rate("mxgate_relay_messages_removed_total"), "removed"),
             target(rate("mxgate_relay_segments_reclaimed_total"), "segments reclaimed"),
             target(rate("mxgate_relay_messages_relocated_total"), "relocated")],
            unit="ops", w=12)

    L.row("Resolver")
    L.panel("DNS questions", "Questions asked, cache hits, messages sent, timeouts, error "
            "RCODEs, per second.",
            [target(rate("mxgate_resolver_requests_total"), "requests"),
             target(rate("mxgate_resolver_cache_hits_total"), "cache hits"),
             target(rate("mxgate_resolver_queries_total"), "queries sent"),
             target(rate("mxgate_resolver_timeouts_total"), "timeouts"),
             target(rate("mxgate_resolver_servfails_total"), "servfail"),
             target(rate("mxgate_resolver_tempfails_total"), "tempfail")], unit="ops",
            w=12)
    L.panel("Resolver state", "Questions on the wire and entries in the cache.",
            [target(f"sum(mxgate_resolver_in_flight{{{SEL}}})", "in flight"),
             target(f"sum(mxgate_resolver_cache_entries{{{SEL}}})", "cache entries")],
            w=12)

    L.row("dpdk transport", collapsed=True)
    L.panel("Port packets", "Packets received and sent per second, by port.",
            [target(rate("mxgate_dpdk_port_rx_packets_total", SEL, "port"), "rx {{port}}"),
             target(rate("mxgate_dpdk_port_tx_packets_total", SEL, "port"), "tx {{port}}")],
            unit="pps")
    L.panel("Port drops and errors", "Packets the NIC missed (no room in an RX queue), "
            "receive and transmit errors, mbuf allocation failures, per second.",
            [target(rate("mxgate_dpdk_port_rx_missed_total", SEL, "port"), "missed {{port}}"),
             target(rate("mxgate_dpdk_port_rx_errors_total", SEL, "port"), "rx err {{port}}"),
             target(rate("mxgate_dpdk_port_tx_errors_total", SEL, "port"), "tx err {{port}}"),
             target(rate("mxgate_dpdk_port_rx_nombuf_total", SEL, "port"),
                    "no mbuf {{port}}")], unit="pps")
    L.panel("Worker busy fraction", "The share of each lcore's poll loop cycles that did "
            "work (a poll loop always shows 100% CPU; this is its real load).",
            [target(f"{rate('mxgate_dpdk_worker_busy_cycles_total', SEL, 'worker')} / "
                    f"{rate('mxgate_dpdk_worker_cycles_total', SEL, 'worker')}",
                    "lcore {{worker}}")], unit="percentunit")
    L.panel("Mbufs in use", "Packet buffers of each port's pool in use, and the pool's size.",
            [target(f"sum by (port) (mxgate_dpdk_port_mbufs_in_use{{{SEL}}})",
                    "in use {{port}}"),
             target(f"sum by (port) (mxgate_dpdk_port_mbufs{{{SEL}}})", "pool {{port}}")])
    L.panel("TCP stack", "The TCP/IP stack's retransmissions, SYN cookies, resets sent and "
            "bad checksums, per second.",
            [target(rate("mxgate_net_tcp_retransmits_total"), "retransmits"),
             target(rate("mxgate_net_tcp_syn_cookie_sent_total"), "SYN cookies"),
             target(rate("mxgate_net_tcp_rst_sent_total"), "RST sent"),
             target(rate("mxgate_net_rx_bad_csum_total"), "bad checksum")], unit="pps")
    L.panel("Worker connections", "SMTP connections each lcore holds.",
            [target(f"sum by (worker) (mxgate_dpdk_worker_connections_open{{{SEL}}})",
                    "lcore {{worker}}")])

    def var(name, label, query, include_all=True):
        return {
            "name": name, "label": label, "type": "query",
            "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
            "definition": query, "query": {"query": query, "refId": f"{name}-var"},
            "refresh": 2, "includeAll": include_all, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "sort": 1, "hide": 0, "regex": "",
        }

    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus",
                      "description": "The Prometheus that scrapes mxgate_metrics_listen",
                      "type": "datasource", "pluginId": "prometheus",
                      "pluginName": "Prometheus"}],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "9.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus",
             "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        ],
        "annotations": {"list": []},
        "description": "mxgate, an inbound SMTP gateway: traffic, rejections, postscreen, "
                       "TLS/AUTH, latency, spool, relay, resolver, dpdk (docs/METRICS.md).",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": L.panels,
        "refresh": "30s",
        "schemaVersion": 36,
        "tags": ["mxgate", "smtp", "mail"],
        "templating": {"list": [
            var("job", "job", "label_values(mxgate_smtp_connections_open, job)"),
            var("instance", "instance",
                'label_values(mxgate_smtp_connections_open{job=~"$job"}, instance)'),
            var("service", "service", 'label_values(mxgate_service_sessions_total'
                '{job=~"$job",instance=~"$instance"}, service)'),
        ]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "mxgate",
        "uid": "mxgate-overview",
        "version": 1,
    }


def render():
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    text = render()
    if sys.argv[1:] == ["--check"]:
        with open(OUT) as f:
            if f.read() != text:
                sys.exit(f"{OUT} is not what {sys.argv[0]} writes: run it")
        sys.exit(0)
    with open(OUT, "w") as f:
        f.write(text)
