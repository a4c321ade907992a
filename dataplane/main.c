/* mxgate: the gateway's main program. Loads mxgate.cf, opens the log and the spool,
 * binds the listeners, runs the transport's workers, and turns signals into actions:
 *     SIGTERM, SIGINT  stop: 421 to every session, flush, close, exit 0
 *     SIGUSR1          log a one-line statistics summary
 *     SIGHUP           logged; configuration reload arrives with the mgmt plane
 * The main thread only waits for signals; the workers never see one. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <rte_version.h>

#include "dataplane/dpdk_config.h"
#include "dataplane/dpdk_transport.h"
#include "dataplane/kernel_transport.h"
#include "dataplane/queue_control.h"
#include "dataplane/spool/spool_relay.h"
#include "dataplane/spool/spool_writer.h"
#include "mgmt/config.h"
#include "mgmt/explain.h"
#include "mgmt/log.h"
#include "mgmt/policy.h"
#include "mxgate/counters.h"
#include "smtp/smtp_restrictions.h"

#ifndef MXGATE_VERSION
#define MXGATE_VERSION "unknown"
#endif

#define MXGATE_DEFAULT_CONFIG "/etc/mxgate/mxgate.cf"
/* How long a stop waits for 421s to drain to slow clients before closing anyway. */
#define MXGATE_SHUTDOWN_GRACE_MS 5000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mxgate [-c FILE] [--pidfile FILE]   run the gateway (foreground)\n"
		"       mxgate --check [-c FILE]            validate the configuration\n"
		"       mxgate explain [-c FILE] NAME=VALUE...  which restriction decides a\n"
		"                                           request (mxgate explain -h)\n"
		"       mxgate --version                    print the version\n"
		"       mxgate -h                           this help\n"
		"\n"
		"  -c, --config FILE   configuration file (default " MXGATE_DEFAULT_CONFIG ")\n"
		"  -n, --check         load and validate FILE, print problems, exit 0 if OK\n"
		"      --pidfile FILE  write the process ID to FILE while running\n"
		"  -V, --version       version and the DPDK release it was built against\n"
		"  -h, --help          this help\n"
		"\n"
		"Signals: SIGTERM/SIGINT stop gracefully, SIGUSR1 logs statistics.\n");
}

/* The transport main runs: one of the two, behind the same calls. */
struct mx_transport_run {
	struct kernel_transport *kt;
	struct dpdk_transport *dt;
};

static void transport_counters(const struct mx_transport_run *tr, struct mx_counters *sum,
			       uint64_t *open)
{
	if (tr->dt)
		dpdk_transport_counters(tr->dt, sum, open);
	else
		kernel_transport_counters(tr->kt, sum, open);
}

static bool transport_failed(const struct mx_transport_run *tr)
{
	return tr->dt ? dpdk_transport_failed(tr->dt) : kernel_transport_failed(tr->kt);
}

static void transport_stop_join(struct mx_transport_run *tr)
{
	if (tr->dt) {
		dpdk_transport_stop(tr->dt);
		dpdk_transport_join(tr->dt);
	} else if (tr->kt) {
		kernel_transport_stop(tr->kt);
		kernel_transport_join(tr->kt);
	}
}

static void transport_destroy(struct mx_transport_run *tr)
{
	kernel_transport_destroy(tr->kt);
	dpdk_transport_destroy(tr->dt);
	tr->kt = NULL;
	tr->dt = NULL;
}

static void log_statistics(const struct mx_transport_run *tr, const char *when)
{
	struct mx_counters sum;
	uint64_t open;
	char line[1024];
	size_t n = 0;

	transport_counters(tr, &sum, &open);
#define MAIN_FMT(name)                                                                     \
	n += (size_t)snprintf(line + n, n < sizeof(line) ? sizeof(line) - n : 0,             \
			      " " #name "=%" PRIu64, sum.name);
	MX_COUNTERS(MAIN_FMT)
#undef MAIN_FMT
	mx_log(MX_LOG_INFO, "statistics (%s): open_connections=%" PRIu64 "%s", when, open, line);
	if (tr->dt)
		dpdk_transport_log_statistics(tr->dt, when);
}

static int write_pidfile(const char *path)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	int rc = write(fd, buf, (size_t)len) == len ? 0 : -EIO;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* Many connections need many descriptors: take the hard limit. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			mx_log(MX_LOG_WARNING, "cannot raise the open files limit: %s",
			       strerror(errno));
	}
}

static void short_hostname(char *buf, size_t len)
{
	if (gethostname(buf, len) != 0)
		snprintf(buf, len, "localhost");
	buf[len - 1] = '\0';
	char *dot = strchr(buf, '.');
	if (dot)
		*dot = '\0';
}

/* A start-up failure: said in the log and on stderr, since the log may be a file the
 * operator starting mxgate by hand is not looking at. */
static void startup_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void startup_fatal(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mx_log(MX_LOG_FATAL, "%s", msg);
	fprintf(stderr, "mxgate: fatal: %s\n", msg);
}

static void spool_log(void *ctx, bool warning, const char *line)
{
	(void)ctx;
	mx_log(warning ? MX_LOG_WARNING : MX_LOG_INFO, "%s", line);
}

static int check_config(const char *path)
{
	struct mx_config *cfg = NULL;
	int rc = mx_config_load(path, &cfg, stderr);
	if (rc < 0) {
		mx_config_report_failure(stderr, "mxgate", path, rc);
		return 1;
	}
	char err[512];
	if (cfg->transport == MX_TRANSPORT_DPDK) {
		/* what can be checked without starting DPDK: the ports, addresses, listen
		 * ports and fault specification (the EAL arguments are DPDK's to judge) */
		struct dpdk_config *dc = malloc(sizeof(*dc));
		int drc = dc ? dpdk_config_parse(cfg, getenv("MXGATE_NET_FAULT"), dc, err,
						 sizeof(err))
			     : -ENOMEM;
		free(dc);
		if (drc < 0) {
			fprintf(stderr, "mxgate: %s: %s\n", path, dc ? err : "out of memory");
			mx_config_free(cfg);
			return 1;
		}
	}
	/* The restriction lists: what mxgate cannot do honestly (DNS lookups, unknown
	 * restrictions) is an error here, not a surprise at the first RCPT. */
	struct smtp_policy *policy = NULL;
	if (mx_policy_build(cfg, &policy, stderr, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate: %s: configuration has errors\n", path);
		mx_config_free(cfg);
		return 1;
	}
	/* Tables that are named but not built answer 451 4.3.5 to every client: say so. */
	int missing = mx_policy_check_tables(cfg, policy, stderr);
	smtp_policy_free(policy);
	/* The check files are read and compiled now, as at start. */
	struct mx_checks checks;
	if (mx_checks_build(cfg, &checks, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate: %s: %s\n", path, err);
		mx_config_free(cfg);
		return 1;
	}
	mx_checks_free(&checks);
	printf("mxgate: %s: configuration OK%s\n", path,
	       missing ? " (with warnings about tables)" : "");
	mx_config_free(cfg);
	return 0;
}

/* The spool directories, a writer and (when mail has somewhere to go) a relay for each,
 * the table store for transport_maps, and the control socket. */
struct mx_spools {
	struct spool *spool[MX_CONFIG_MAX_SPOOLS];
	struct spool_relay *relay[MX_CONFIG_MAX_SPOOLS];
	unsigned n;
	uint64_t newest_id_us;
	struct tables_env *tables;
	struct queue_control *control;
};

static void spool_recovery_logged(const struct spool_recovery_stats *rst, const char *dir)
{
	mx_log(rst->orphans || rst->bad_messages || rst->corrupt_regions || rst->torn_tails ||
			       rst->stale_files
		       ? MX_LOG_WARNING
		       : MX_LOG_INFO,
	       "spool %s recovered: %u segment(s), %u message(s) kept; discarded: %u "
	       "incomplete (never acknowledged), %u damaged, %u corrupt region(s), %u torn "
	       "tail(s) (%" PRIu64 " bytes), %u stale file(s); %u fully delivered, %u delivery "
	       "record(s) applied, %u hold record(s), %u relocated message(s); space of "
	       "abandoned messages: %u region(s) given back before, %" PRIu64 " bytes now",
	       dir, rst->segments, rst->messages, rst->orphans, rst->bad_messages,
	       rst->corrupt_regions, rst->torn_tails, rst->torn_bytes, rst->stale_files,
	       rst->retired, rst->deliveries, rst->holds, rst->relocated, rst->punched_regions,
	       rst->punched_bytes);
}

/* transport_maps names at least one table. */
static bool config_has_transport_maps(const struct mx_config *cfg)
{
	return cfg->transport_maps && cfg->transport_maps[strspn(cfg->transport_maps, ", \t\r\n")];
}

/* Open every spool directory and create its relay. Returns 0, or -1 after logging. */
static int spools_open(struct mx_spools *sp, const struct mx_config *cfg, bool need_tables)
{
	char err[512];
	int rc;
	const char *relayhost = mx_config_get(cfg, "relayhost");
	bool have_maps = config_has_transport_maps(cfg);
	bool relay = (relayhost && *relayhost) || have_maps;
	struct spool_relay_params rp = {
		.keep_only = !relay,
		.helo_name = cfg->myhostname,
		.concurrency = cfg->relay_concurrency,
		.connect_timeout = cfg->smtp_connect_timeout_s,
		.helo_timeout = cfg->smtp_helo_timeout_s,
		.mail_timeout = cfg->smtp_mail_timeout_s,
		.rcpt_timeout = cfg->smtp_rcpt_timeout_s,
		.data_init_timeout = cfg->smtp_data_init_timeout_s,
		.data_xfer_timeout = cfg->smtp_data_xfer_timeout_s,
		.data_done_timeout = cfg->smtp_data_done_timeout_s,
		.quit_timeout = cfg->smtp_quit_timeout_s,
		.cache_time_limit = cfg->smtp_connection_cache_time_s,
		.min_backoff = cfg->minimal_backoff_s,
		.max_backoff = cfg->maximal_backoff_s,
		.queue_run_delay = cfg->queue_run_delay_s,
		.max_queue_lifetime = cfg->maximal_queue_lifetime_s,
		.bounce_queue_lifetime = cfg->bounce_queue_lifetime_s,
		.bounce_size_limit = cfg->bounce_size_limit,
		.transport_maps = have_maps ? cfg->transport_maps : NULL,
		.transport_opts = {
			.recipient_delimiter = cfg->recipient_delimiter,
			.parent_matches_subdomains = mx_config_word_listed(
				cfg, "parent_domain_matches_subdomains", "transport_maps"),
		},
	};
	if (relayhost && *relayhost) {
		if (spool_nexthop_from_relayhost(relayhost, cfg->relay_lmtp, &rp.dflt, err,
						 sizeof(err)) < 0) {
			startup_fatal("relayhost: %s", err);
			return -1;
		}
		rp.have_default = true;
	}
	if (have_maps || need_tables) {
		struct tables_env_opts o = { .read_only = true };
		if ((rc = tables_env_open(cfg->table_directory, &o, &sp->tables, err,
					  sizeof(err))) < 0) {
			startup_fatal("mxgate_table_directory: %s (build the tables that %s "
				      "names with mxgate-map -d %s)",
				      err, have_maps ? "transport_maps" : "the restriction lists",
				      cfg->table_directory);
			return -1;
		}
		if (have_maps)
			rp.tables = sp->tables;
	}
	for (unsigned i = 0; i < cfg->spool_dir_count; i++) {
		struct spool_recovery_stats rst;
		struct spool_params params = {
			.path = cfg->spool_dirs[i],
			.commit_delay_us = (uint64_t)cfg->spool_commit_delay_ms * 1000u,
			.quota = cfg->spool_quota,
			.segment_size = cfg->spool_segment_size,
		};
		rc = spool_open(&sp->spool[i], &params, &rst, spool_log, NULL, err, sizeof(err));
		if (rc < 0) {
			startup_fatal("mxgate_spool_directory: %s", err);
			return -1;
		}
		sp->n = i + 1;
		if (spool_newest_id_us(sp->spool[i]) > sp->newest_id_us)
			sp->newest_id_us = spool_newest_id_us(sp->spool[i]);
		/* The relay (the queue manager): recovered messages first, then each one the
		 * writer commits. Without a next hop it only keeps the queue (mxgate-queue
		 * works, space is given back) and delivers nothing. */
		rp.spool = sp->spool[i];
		rp.spool_index = i;
		rc = spool_relay_create(&sp->relay[i], &rp, err, sizeof(err));
		if (rc < 0) {
			startup_fatal("relay: %s", err);
			return -1;
		}
		spool_recovery_logged(&rst, cfg->spool_dirs[i]);
	}
	return 0;
}

/* Stop the control socket, the relays, then the writers. Idempotent. */
static void spools_stop(struct mx_spools *sp)
{
	queue_control_stop(sp->control);
	sp->control = NULL;
	for (unsigned i = 0; i < sp->n; i++)
		spool_relay_stop(sp->relay[i]);
	for (unsigned i = 0; i < sp->n; i++)
		spool_stop(sp->spool[i]);
}

static void spools_log_statistics(struct mx_spools *sp)
{
	for (unsigned i = 0; i < sp->n; i++) {
		struct spool_stats sst;
		spool_stats(sp->spool[i], &sst);
		/* what group commit bought: messages per fdatasync */
		mx_log(MX_LOG_INFO,
		       "spool %u statistics: committed=%" PRIu64 " failed=%" PRIu64
		       " syncs=%" PRIu64 " bytes=%" PRIu64 " punched=%" PRIu64,
		       i, sst.committed, sst.failed, sst.syncs, sst.bytes, sst.punched);
		struct spool_relay_stats rs;
		spool_relay_stats(sp->relay[i], &rs);
		mx_log(MX_LOG_INFO,
		       "relay %u statistics: queued=%" PRIu64 " sent=%" PRIu64 " deferred=%" PRIu64
		       " bounced=%" PRIu64 " expired=%" PRIu64 " notifications=%" PRIu64
		       " removed=%" PRIu64 " segments_reclaimed=%" PRIu64 " relocated=%" PRIu64,
		       i, rs.queued, rs.sent, rs.deferred, rs.bounced, rs.expired, rs.notified,
		       rs.removed, rs.reclaimed, rs.relocated);
	}
}

/* After spools_stop() and after the workers' spool clients are gone. */
static void spools_close(struct mx_spools *sp)
{
	for (unsigned i = 0; i < sp->n; i++) {
		spool_relay_free(sp->relay[i]);
		spool_close(sp->spool[i]);
	}
	sp->n = 0;
	tables_env_close(sp->tables);
	sp->tables = NULL;
}

int main(int argc, char **argv)
{
	enum { OPT_PIDFILE = 256 };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'n' },
		{ "pidfile", required_argument, NULL, OPT_PIDFILE },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = MXGATE_DEFAULT_CONFIG, *pidfile = NULL;
	bool check = false;
	int opt;

	if (argc > 1 && strcmp(argv[1], "explain") == 0)
		return mx_explain_main(argc - 1, argv + 1, MXGATE_DEFAULT_CONFIG);
	if (argc > 1 && strcmp(argv[1], "config") == 0)
		return mx_config_main(argc - 1, argv + 1, MXGATE_DEFAULT_CONFIG);

	while ((opt = getopt_long(argc, argv, "c:nVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'n':
			check = true;
			break;
		case OPT_PIDFILE:
			pidfile = optarg;
			break;
		case 'V':
			printf("mxgate %s (built with %s)\n", MXGATE_VERSION, rte_version());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mxgate: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (check)
		return check_config(config_path);

	struct mx_config *cfg = NULL;
	int lrc = mx_config_load(config_path, &cfg, stderr);
	if (lrc < 0) {
		mx_config_report_failure(stderr, "mxgate", config_path, lrc);
		fprintf(stderr, "mxgate: not starting\n");
		return 1;
	}
	/* The dpdk settings are parsed before anything starts, so a typo in a port is a
	 * one-line error rather than a half-started gateway. */
	struct dpdk_config *dc = NULL;
	if (cfg->transport == MX_TRANSPORT_DPDK) {
		char derr[512];
		dc = malloc(sizeof(*dc));
		if (!dc || dpdk_config_parse(cfg, getenv("MXGATE_NET_FAULT"), dc, derr,
					     sizeof(derr)) < 0) {
			fprintf(stderr, "mxgate: fatal: %s: %s\n", config_path,
				dc ? derr : "out of memory");
			free(dc);
			mx_config_free(cfg);
			return 1;
		}
	}

	char host[256];
	short_hostname(host, sizeof(host));
	int rc = mx_log_open(cfg->maillog_file, host, "smtpd");
	if (rc < 0) {
		fprintf(stderr, "mxgate: fatal: open maillog_file %s: %s\n", cfg->maillog_file,
			strerror(-rc));
		mx_config_free(cfg);
		return 1;
	}

	/* Signals are taken by sigwaitinfo() in this thread only: block them before any
	 * worker exists so every thread inherits the mask. A full disk or a file size
	 * limit must fail a write (451), not kill the gateway. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);
	raise_nofile();

	/* Open, lock and recover the spools before anything listens: messages that got a
	 * 250 before a crash are found and indexed, torn writes are discarded. */
	struct mx_spools sp = { 0 };
	struct mx_transport_run tr = { 0 };
	struct smtp_policy *policy = NULL;
	struct mx_checks checks = { 0 };
	bool pidfile_written = false;
	char err[512];
	if ((rc = mx_policy_build(cfg, &policy, stderr, err, sizeof(err))) < 0) {
		startup_fatal("%s", err);
		goto fail_startup;
	}
	if ((rc = mx_checks_build(cfg, &checks, err, sizeof(err))) < 0) {
		startup_fatal("%s", err);
		goto fail_startup;
	}
	if (spools_open(&sp, cfg, mx_policy_needs_tables(policy)) < 0)
		goto fail_startup;
	for (unsigned i = 0; i < sp.n; i++) {
		if ((rc = spool_start(sp.spool[i])) < 0) {
			startup_fatal("cannot start the spool writer: %s", strerror(-rc));
			goto fail_startup;
		}
	}
	for (unsigned i = 0; i < sp.n; i++) {
		if ((rc = spool_relay_start(sp.relay[i])) < 0) {
			startup_fatal("cannot start the relay: %s", strerror(-rc));
			goto fail_startup;
		}
	}
	const char *relayhost = mx_config_get(cfg, "relayhost");
	bool have_maps = config_has_transport_maps(cfg);
	if ((relayhost && *relayhost) || have_maps)
		mx_log(MX_LOG_INFO, "relay to %s%s%s, %u connection(s) per destination%s%s",
		       relayhost && *relayhost ? relayhost : "(no relayhost)",
		       relayhost && *relayhost ? " over " : "",
		       relayhost && *relayhost ? (cfg->relay_lmtp ? "LMTP" : "SMTP") : "",
		       cfg->relay_concurrency, have_maps ? ", transport_maps = " : "",
		       have_maps ? cfg->transport_maps : "");
	else
		mx_log(MX_LOG_INFO, "relayhost and transport_maps are empty: accepted mail stays "
				    "in the spool (mxgate-queue lists it)");
	/* The control socket is always open: the queue tool works whatever the config. */
	if ((rc = queue_control_start(&sp.control, cfg->control_socket, sp.relay, sp.n, err,
				      sizeof(err))) < 0) {
		startup_fatal("mxgate_control_socket: %s", err);
		goto fail_startup;
	}

	unsigned workers = cfg->workers;
	if (workers == 0 && !dc) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 ? (unsigned)n : 1;
	}
	struct transport_params params = {
		.cfg = cfg,
		.policy = policy,
		.tables = sp.tables,
		.checks = checks.any ? &checks.cfg : NULL,
		.spools = sp.spool,
		.nspools = sp.n,
		.workers = workers,
		.max_connections = cfg->max_connections,
		.idle_timeout_ms = (uint64_t)cfg->smtpd_timeout_s * 1000u,
		.shutdown_grace_ms = MXGATE_SHUTDOWN_GRACE_MS,
		.queue_id_floor_us = sp.newest_id_us,
	};
	if (dc)
		rc = dpdk_transport_create(&tr.dt, &params, dc, &workers, err, sizeof(err));
	else
		rc = kernel_transport_create(&tr.kt, &params, err, sizeof(err));
	if (rc < 0) {
		startup_fatal("%s", err);
		goto fail_startup;
	}
	if (pidfile && (rc = write_pidfile(pidfile)) < 0) {
		startup_fatal("pidfile %s: %s", pidfile, strerror(-rc));
		goto fail_startup;
	}
	pidfile_written = pidfile != NULL;

	char listening[MX_CONFIG_MAX_LISTEN * 80] = "";
	size_t ln = 0;
	for (unsigned i = 0; i < cfg->listen_count && ln < sizeof(listening); i++) {
		bool v6 = strchr(cfg->listen[i].host, ':') && cfg->listen[i].host[0] != '[';
		ln += (size_t)snprintf(listening + ln, sizeof(listening) - ln, "%s%s%s%s:%u",
				       i ? ", " : "", v6 ? "[" : "", cfg->listen[i].host,
				       v6 ? "]" : "", (unsigned)cfg->listen[i].port);
	}
	rc = tr.dt ? dpdk_transport_start(tr.dt) : kernel_transport_start(tr.kt);
	if (rc < 0) {
		startup_fatal("cannot start workers: %s", strerror(-rc));
		goto fail_startup;
	}
	if (dc)
		mx_log(MX_LOG_INFO,
		       "mxgate %s started -- transport dpdk (%s), %u worker lcore(s), %u port(s), "
		       "steering %s, listening on TCP port(s) of %s, spool %s, configuration %s%s%s",
		       MXGATE_VERSION, rte_version(), workers, dc->nports,
		       dpdk_steering_name(dc->steering), listening,
		       mx_config_get(cfg, "mxgate_spool_directory"), config_path,
		       dc->fault_on ? ", FAULT INJECTION " : "", dc->fault_on ? dc->fault_spec : "");
	else
		mx_log(MX_LOG_INFO,
		       "mxgate %s started -- transport kernel, %u worker(s), listening on %s, "
		       "spool %s, configuration %s",
		       MXGATE_VERSION, workers, listening,
		       mx_config_get(cfg, "mxgate_spool_directory"), config_path);

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&sigs, &si);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			mx_log(MX_LOG_ERROR, "sigwaitinfo: %s", strerror(errno));
			break;
		}
		if (sig == SIGUSR1) {
			/* the spools first: the statistics line (and the dpdk line after it) end
			 * the group, so a reader that sees them has the whole group */
			spools_log_statistics(&sp);
			log_statistics(&tr, "SIGUSR1");
			continue;
		}
		if (sig == SIGHUP) {
			mx_log(MX_LOG_WARNING,
			       "SIGHUP: configuration reload is not supported yet; restart mxgate "
			       "to apply changes");
			continue;
		}
		if (!transport_failed(&tr))
			mx_log(MX_LOG_INFO, "terminating on signal %d (%s)", sig, strsignal(sig));
		break;
	}

	transport_stop_join(&tr);
	/* The workers are gone; commits they handed over are synced before the writers
	 * stop. The relays stop first: they need the writers for their records. */
	spools_stop(&sp);
	bool failed = transport_failed(&tr);
	log_statistics(&tr, "shutdown");
	spools_log_statistics(&sp);
	mx_log(MX_LOG_INFO, "mxgate stopped%s", failed ? " after an internal error" : "");
	transport_destroy(&tr);
	if (pidfile)
		unlink(pidfile);
	spools_close(&sp);
	free(dc);
	smtp_policy_free(policy);
	mx_checks_free(&checks);
	mx_log_close();
	mx_config_free(cfg);
	return failed ? 1 : 0;

fail_startup:
	/* A start-up step failed: undo what the steps before it did. Every call here accepts
	 * what was never created (NULL) or never started. */
	spools_stop(&sp);
	transport_destroy(&tr);
	if (pidfile_written)
		unlink(pidfile);
	spools_close(&sp);
	free(dc);
	smtp_policy_free(policy);
	mx_checks_free(&checks);
	mx_log_close();
	mx_config_free(cfg);
	return 1;
}
