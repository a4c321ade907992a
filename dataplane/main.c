/* mxgate: the gateway's main program. Loads mxgate.cf, builds the first configuration
 * generation (mgmt/generation.h), opens the log and the spools, starts the relays and the
 * control socket, runs the transport's workers, and turns signals into actions:
 *     SIGTERM, SIGINT  stop: 421 to every session, flush, close, exit 0
 *     SIGUSR1          log a one-line statistics summary
 *     SIGHUP           reload the configuration (as `mxgate reload`; dataplane/reload.h)
 * The main thread waits for signals and, once a second, lets go of generations whose last
 * connection closed; the workers never see a signal. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/relay/queue_control.h"
#include "dataplane/privdrop.h"
#include "dataplane/relay/relay.h"
#include "dataplane/reload.h"
#include "dataplane/sdnotify.h"
#include "dataplane/spool/spool_writer.h"
#include "dataplane/session/conn.h"
#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_greylist.h"
#include "dataplane/svc/svc_state.h"
#include "dataplane/svc/svc_anvil.h"
#include "dataplane/svc/svc_policy.h"
#include "dataplane/svc/svc_resolver.h"
#include "dataplane/svc/svc_sasl.h"
#include "dataplane/transport.h"
#include "mgmt/config.h"
#include "mgmt/control.h"
#include "mgmt/control_cmd.h"
#include "mgmt/explain.h"
#include "mgmt/generation.h"
#include "mgmt/log.h"
#include "mgmt/policy.h"
#include "mxgate/clock.h"
#include "mxgate/counters.h"
#include "mgmt/metrics.h"
#include "mgmt/metrics_http.h"
#include "dataplane/gateway_metrics.h"
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
		"       mxgate reload [-c FILE] [--canary N%%]  reload a running gateway's\n"
		"                                           configuration (mxgate reload -h)\n"
		"       mxgate status [-c FILE]             its generations and their counters\n"
		"       mxgate config [-c FILE] [-n|-d|-x|-M] [NAME...]  parameters as postconf\n"
		"                                           prints them (mxgate config -h)\n"
		"       mxgate --version                    print the version\n"
		"       mxgate -h                           this help\n"
		"\n"
		"  -c, --config FILE   configuration file (default " MXGATE_DEFAULT_CONFIG ")\n"
		"  -n, --check         load and validate FILE, print problems, exit 0 if OK\n"
		"      --pidfile FILE  write the process ID to FILE while running\n"
		"  -V, --version       version and the DPDK release it was built against\n"
		"  -h, --help          this help\n"
		"\n"
		"Signals: SIGTERM/SIGINT stop gracefully, SIGUSR1 logs statistics, SIGHUP reloads.\n");
}

/* The transport main runs, behind its ops. */
struct mx_transport_run {
	const struct transport_ops *ops;
	void *impl;
};

static bool transport_failed(const struct mx_transport_run *tr)
{
	return tr->impl && tr->ops->failed(tr->impl);
}

static void transport_stop_join(struct mx_transport_run *tr)
{
	if (!tr->impl)
		return;
	tr->ops->stop(tr->impl);
	tr->ops->join(tr->impl);
}

static void transport_destroy(struct mx_transport_run *tr)
{
	if (tr->impl)
		tr->ops->destroy(tr->impl);
	tr->impl = NULL;
}

/* The transport mxgate_transport names, or NULL after saying why on f. */
static const struct transport_ops *transport_or_complain(const struct mx_config *cfg,
							 const char *path, FILE *f)
{
	const struct transport_ops *ops = transport_ops_for(cfg->transport);
	if (!ops)
		fprintf(f, "mxgate: %s: mxgate_transport = %s: this mxgate was built without it "
			   "(no libdpdk at build time; meson setup -Ddpdk=enabled)\n",
			path, mx_transport_name(cfg->transport));
	return ops;
}

/* The statistics line: the registry's "smtp" families (dataplane/gateway_metrics.h), the
 * same numbers the metrics endpoint shows: open_connections, then every counter of
 * mxgate/counters.h in its order. */
static void log_statistics(const struct mx_transport_run *tr, struct mx_metrics *m,
			   const char *when)
{
	char line[4096];
	mx_metrics_stat_line(m, "smtp", NULL, NULL, line, sizeof(line));
	mx_log(MX_LOG_INFO, "statistics (%s):%s", when, line);
	if (tr->ops->log_statistics)
		tr->ops->log_statistics(tr->impl, when);
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

/* Load the configuration for what the transport needs before the generation is built.
 * The generation's build reads the file again and says every warning; this load says
 * its problems only when it fails. */
static int load_quietly(const char *path, struct mx_config **out)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	int rc = mx_config_load(path, out, mem ? mem : stderr);
	if (mem)
		fclose(mem);
	if (rc < 0 && text)
		fputs(text, stderr);
	free(text);
	return rc;
}

/* Build the generation a start would build; every problem goes to diag. NULL after
 * saying why on stderr. */
static struct mx_generation *build_first_generation(const char *path, unsigned nworkers,
						    FILE *diag)
{
	struct mx_generation *g = NULL;
	char err[1024];
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	struct mx_generation_opts o = { .path = path, .id = 1, .nworkers = nworkers,
					.diag = mem ? mem : diag };
	int rc = mx_generation_build(&o, &g, err, sizeof(err));
	if (mem)
		fclose(mem);
	if (text)
		fputs(text, diag);
	if (rc < 0) {
		/* the lines above said what and where; the summary only when they said nothing */
		if (text && *text)
			fprintf(stderr, "mxgate: %s: configuration has errors\n", path);
		else
			fprintf(stderr, "mxgate: %s\n", err);
	}
	free(text);
	return rc < 0 ? NULL : g;
}

/* Tables the services' restriction lists name that are not built answer 451 4.3.5 to
 * every client: say so. Returns how many warnings. */
static int check_generation_tables(const struct mx_generation *g, FILE *diag)
{
	int missing = 0;
	for (unsigned i = 0; i < g->nservices; i++)
		missing += mx_policy_check_tables(g->services[i].cfg, g->services[i].policy, diag);
	return missing;
}

static int check_config(const char *path)
{
	struct mx_config *cfg = NULL;
	int rc = load_quietly(path, &cfg);
	if (rc < 0) {
		mx_config_report_failure(stderr, "mxgate", path, rc);
		return 1;
	}
	char err[PATH_MAX + 512];
	/* mail_owner must exist (and not be root) for a start to go ahead, and
	 * mxgate_chroot be a directory, as postfix check verifies its mail_owner */
	struct privdrop_plan plan;
	if (privdrop_plan_make(&plan, mx_config_get(cfg, "mail_owner"),
			       mx_config_get(cfg, "mxgate_chroot"), err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate: %s: %s\n", path, err);
		mx_config_free(cfg);
		return 1;
	}
	/* what the transport can check without starting (dpdk: the ports, addresses, listen
	 * ports and fault specification; the EAL arguments are DPDK's to judge) */
	const struct transport_ops *ops = transport_or_complain(cfg, path, stderr);
	if (!ops || (ops->check && ops->check(cfg, err, sizeof(err)) < 0)) {
		if (ops)
			fprintf(stderr, "mxgate: %s: %s\n", path, err);
		mx_config_free(cfg);
		return 1;
	}
	mx_config_free(cfg);
	/* The services, their restriction lists and checks, compiled as at start: what
	 * mxgate cannot do honestly (unknown restrictions, features it lacks) is an error
	 * here, not a surprise at the first RCPT. */
	struct mx_generation *g = build_first_generation(path, 1, stderr);
	if (!g)
		return 1;
	int missing = check_generation_tables(g, stderr);
	mx_generation_put(g);
	printf("mxgate: %s: configuration OK%s\n", path,
	       missing ? " (with warnings about tables)" : "");
	return 0;
}

/* The spool directories, a writer and (when mail has somewhere to go) a relay for each,
 * the table store for transport_maps, and the control socket. */
struct mx_spools {
	struct spool *spool[MX_CONFIG_MAX_SPOOLS];
	struct relay *relay[MX_CONFIG_MAX_SPOOLS];
	unsigned n;
	uint64_t newest_id_us;
	struct tables_env *tables;
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
	struct relay_params rp = {
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
		if (relay_nexthop_from_relayhost(relayhost, cfg->relay_lmtp, &rp.dflt, err,
						 sizeof(err)) < 0) {
			startup_fatal("relayhost: %s", err);
			return -1;
		}
		rp.have_default = true;
	}
	/* The store is opened when something names a table now, and also whenever it exists,
	 * so that a reload that adds table lookups finds the workers' readers open. */
	bool want_tables = have_maps || need_tables;
	if (want_tables || access(cfg->table_directory, F_OK) == 0) {
		struct tables_env_opts o = { .read_only = true };
		if ((rc = tables_env_open(cfg->table_directory, &o, &sp->tables, err,
					  sizeof(err))) < 0 &&
		    !want_tables) {
			mx_log(MX_LOG_WARNING,
			       "mxgate_table_directory: %s; a reload that adds table lookups will "
			       "be refused until a restart",
			       err);
		} else if (rc < 0) {
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
		rc = relay_create(&sp->relay[i], &rp, err, sizeof(err));
		if (rc < 0) {
			startup_fatal("relay: %s", err);
			return -1;
		}
		spool_recovery_logged(&rst, cfg->spool_dirs[i]);
	}
	return 0;
}

/* Stop the relays, then the writers. Idempotent. */
static void spools_stop(struct mx_spools *sp)
{
	for (unsigned i = 0; i < sp->n; i++)
		relay_stop(sp->relay[i]);
	for (unsigned i = 0; i < sp->n; i++)
		spool_stop(sp->spool[i]);
}

/* "spool N statistics: committed=... (what group commit bought: messages per
 * fdatasync)" and "relay N statistics: queued=...": the registry's "spool" and "relay"
 * families of spool N. */
static void spools_log_statistics(struct mx_spools *sp, struct mx_metrics *m)
{
	for (unsigned i = 0; i < sp->n; i++) {
		char idx[12], line[1024];
		snprintf(idx, sizeof(idx), "%u", i);
		mx_metrics_stat_line(m, "spool", "spool", idx, line, sizeof(line));
		mx_log(MX_LOG_INFO, "spool %u statistics:%s", i, line);
		mx_metrics_stat_line(m, "relay", "spool", idx, line, sizeof(line));
		mx_log(MX_LOG_INFO, "relay %u statistics:%s", i, line);
	}
}

/* After spools_stop() and after the workers' spool clients are gone. */
static void spools_close(struct mx_spools *sp)
{
	for (unsigned i = 0; i < sp->n; i++) {
		relay_free(sp->relay[i]);
		spool_close(sp->spool[i]);
	}
	sp->n = 0;
	tables_env_close(sp->tables);
	sp->tables = NULL;
}

/* The service threads: the resolver (mxgate_dns_servers, or resolv.conf's nameservers) and
 * the policy client, with a queue pair per possible worker. Returns 0, or -1 after
 * saying why. */
static int services_start(struct svc_set **out, const struct mx_config *boot,
			  unsigned nworkers, struct svc_sasl_directory *sasl,
			  const void **resolver)
{
	static struct svc_resolver_params rp;
	static struct svc_policy_params pp;
	static struct svc_sasl_params sp;
	static struct svc_greylist_params gp;
	static struct svc_state_params stp;
	char err[512];
	svc_resolver_params_default(&rp);
	rp.handle = resolver; /* the metrics read its statistics */
	const char *servers = mx_config_get(boot, "mxgate_dns_servers");
	if (dns_servers_parse(servers, rp.servers, DNS_CONF_SERVERS_MAX,
				       &rp.nservers, err, sizeof(err)) < 0) {
		startup_fatal("mxgate_dns_servers: %s", err);
		return -1;
	}
	svc_policy_params_init(&pp);
	pp.smtputf8 = boot->smtp.enable_smtputf8;
	/* SMTP AUTH's Dovecot exchanges: a step Dovecot does not answer in this time gets
	 * 454 (Postfix waits as long as its smtpd_timeout) */
	sp.directory = sasl;
	sp.timeout_ms = 30000;
	/* The greylist service always runs: an idle thread costs nothing, and a reload may
	 * add check_greylist; each request carries its map and parameters. */
	svc_greylist_params_init(&gp);
	gp.version = MXGATE_VERSION;
	/* the state service: postscreen's temporary allowlist (postscreen_cache_map),
	 * swept every postscreen_cache_cleanup_interval */
	svc_state_params_init(&stp);
	unsigned sweep_s = boot->postscreen_cache_cleanup_interval_s;
	stp.sweep_interval_ms = sweep_s > UINT32_MAX / 1000 ? UINT32_MAX : sweep_s * 1000u;
	struct svc_set_params p = {
		.workers = nworkers,
		.ops = { [SVC_DNS] = &svc_resolver_ops, [SVC_POLICY] = &svc_policy_ops,
			 [SVC_STATE] = &svc_state_ops, [SVC_SASL] = &svc_sasl_ops,
			 [SVC_GREYLIST] = &svc_greylist_ops },
		.params = { [SVC_DNS] = &rp, [SVC_POLICY] = &pp, [SVC_STATE] = &stp,
			    [SVC_SASL] = &sp, [SVC_GREYLIST] = &gp },
		.orphan = conn_service_orphan,
	};
	if (svc_set_start(out, &p, err, sizeof(err)) < 0) {
		startup_fatal("%s", err);
		return -1;
	}
	return 0;
}

/* The table of anvil(8)'s per-client counts, shared by every worker: mxgate_anvil_table_size
 * entries, its hash keyed with random bits so that clients cannot choose addresses that
 * crowd one window. Returns 0, or -1 after saying why. */
static int anvil_create(struct anvil **out, const struct mx_config *boot)
{
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		seed = mx_clock_wall_us() ^ ((uint64_t)getpid() << 32);
	int rc = anvil_new(boot->anvil_table_size, seed, out);
	if (rc < 0) {
		startup_fatal("mxgate_anvil_table_size = %u: %s", boot->anvil_table_size,
			      strerror(-rc));
		return -1;
	}
	return 0;
}

/* mxgate_anvil_rate_map: the thread that shares the rate counters through memcached
 * (svc_anvil.h), or nothing when it is empty. Which rates a limit asks for, in any
 * service of the first generation, are read back for connected clients even before
 * this node counted one (a reload that sets a new limit gets them as they are counted).
 * Returns 0, or -1 after saying why. */
static int anvil_share_start(struct svc_anvil **out, struct anvil *a,
			     const struct mx_config *boot, const struct mx_generation *g)
{
	*out = NULL;
	if (!boot->anvil_rate_map || !boot->anvil_rate_map[0])
		return 0;
	unsigned mask = 0;
	for (unsigned i = 0; i < g->nservices; i++) {
		const struct mx_config *c = g->services[i].cfg;
		if (c->client_connection_rate_limit)
			mask |= 1u << ANVIL_RATE_CONNECT;
		if (c->client_message_rate_limit)
			mask |= 1u << ANVIL_RATE_MESSAGE;
		if (c->client_recipient_rate_limit)
			mask |= 1u << ANVIL_RATE_RECIPIENT;
		if (c->client_auth_rate_limit)
			mask |= 1u << ANVIL_RATE_AUTH;
		if (c->client_new_tls_session_rate_limit)
			mask |= 1u << ANVIL_RATE_NEWTLS;
	}
	struct svc_anvil_params p = {
		.spec = boot->anvil_rate_map,
		.name = "mxgate_anvil_rate_map",
		.read_mask = mask,
	};
	char err[768];
	if (svc_anvil_new(out, a, &p, err, sizeof(err)) < 0 ||
	    svc_anvil_start(*out, err, sizeof(err)) < 0) {
		svc_anvil_free(*out);
		*out = NULL;
		startup_fatal("%s", err);
		return -1;
	}
	return 0;
}

/* A SIGHUP: reload as `mxgate reload` does, the outcome in the log. */
static void reload_on_sighup(struct reload *r)
{
	mx_log_as(MX_LOG_MASTER, MX_LOG_INFO, "SIGHUP: reloading the configuration");
	struct reload_request q = { .mode = RELOAD_FULL };
	reload_apply(r, &q, NULL);
}

/* The Dovecot auth endpoints the published generations' services use (smtpd_sasl_path
 * with smtpd_sasl_auth_enable): the SASL service connects to each and keeps it, so EHLO
 * can offer its mechanisms. Called at start and once a second (after a reload, a new
 * endpoint is connected within that second). */
static void sasl_follow(struct svc_sasl_directory *d, struct mx_gen_pub *pub)
{
	static uint64_t seen[2];
	struct mx_generation *gs[2] = { atomic_load(&pub->current), atomic_load(&pub->canary) };
	for (int k = 0; k < 2; k++) {
		struct mx_generation *g = gs[k];
		if (!g || g->id == seen[k])
			continue;
		seen[k] = g->id;
		for (unsigned i = 0; i < g->nservices; i++) {
			const struct mx_config *cfg = g->services[i].cfg;
			if (!cfg->sasl_auth_enable || !cfg->sasl_endpoint)
				continue;
			int rc = svc_sasl_directory_want(d, cfg->sasl_endpoint);
			if (rc < 0)
				mx_log(MX_LOG_WARNING, "service %s: smtpd_sasl_path %s: %s",
				       g->services[i].name, cfg->sasl_endpoint, strerror(-rc));
		}
	}
}

/* Wait for signals and act on them until one says stop. */
static void signal_loop(const sigset_t *sigs, struct mx_transport_run *tr,
			struct mx_spools *sp, struct svc_set *services, struct reload *r,
			struct svc_sasl_directory *sasl, struct mx_gen_pub *pub,
			struct svc_anvil *anvil_share, struct mx_metrics *metrics)
{
	for (;;) {
		siginfo_t si;
		/* a second at most: generations whose last connection closed are let go */
		struct timespec tick = { .tv_sec = 1 };
		int sig = sigtimedwait(sigs, &si, &tick);
		reload_housekeeping(r);
		sasl_follow(sasl, pub);
		if (sig < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			mx_log(MX_LOG_ERROR, "sigtimedwait: %s", strerror(errno));
			return;
		}
		if (sig == SIGUSR1) {
			/* the spools first: the statistics line (and the dpdk line after it) end
			 * the group, so a reader that sees them has the whole group */
			reload_log_stress(r, "SIGUSR1");
			reload_log_screen(r, "SIGUSR1");
			spools_log_statistics(sp, metrics);
			svc_set_log_statistics(services, "SIGUSR1");
			if (anvil_share)
				svc_anvil_log_statistics(anvil_share, "SIGUSR1");
			log_statistics(tr, metrics, "SIGUSR1");
			continue;
		}
		if (sig == SIGHUP) {
			reload_on_sighup(r);
			continue;
		}
		if (!transport_failed(tr))
			mx_log_as(MX_LOG_MASTER, MX_LOG_INFO, "terminating on signal %d (%s)", sig,
				  strsignal(sig));
		return;
	}
}

/* Whether some service's restriction lists look up tables. */
static bool generation_needs_tables(const struct mx_generation *g)
{
	for (unsigned i = 0; i < g->nservices; i++)
		if (mx_policy_needs_tables(g->services[i].policy))
			return true;
	return false;
}

static void log_relay_plan(const struct mx_config *cfg)
{
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
}

/* mail_owner and mxgate_chroot, looked up before anything starts: a missing user, or a
 * chroot without the files a reload reads, is a one-line refusal, not a half-started
 * gateway. Returns 0, or -1 after saying why. */
static int mail_owner_prepare(struct privdrop_plan *plan, const struct mx_config *boot,
			    const char *config_path)
{
	char err[PATH_MAX + 512];
	const char *user = mx_config_get(boot, "mail_owner");
	const char *root = mx_config_get(boot, "mxgate_chroot");
	if (privdrop_plan_make(plan, user, root, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate: fatal: %s: %s\n", config_path, err);
		return -1;
	}
	if (!plan->active) {
		if (geteuid() != plan->uid)
			fprintf(stderr, "mxgate: warning: not started as root: running as uid %u, "
					"not as mail_owner = %s (uid %u)%s\n",
				(unsigned)geteuid(), user, (unsigned)plan->uid,
				root && *root ? "; no mxgate_chroot either" : "");
		else if (root && *root)
			fprintf(stderr, "mxgate: warning: not started as root: no chroot into "
					"mxgate_chroot = %s\n", root);
		return 0;
	}
	if (!plan->chroot_dir[0])
		return 0;
	/* A reload reads the configuration (and the master file) again, at the same path
	 * inside the chroot, as Postfix's chrooted daemons find etc/ files copied into
	 * the queue directory. */
	const char *master = mx_config_get(boot, "mxgate_master_file");
	const char *need[] = { config_path, master && *master ? master : NULL };
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (need[i] && privdrop_chroot_has(plan->chroot_dir, need[i]) < 0) {
			fprintf(stderr,
				"mxgate: fatal: mxgate_chroot = %s: a reload reads %s, which is not "
				"in the chroot (%s%s): copy or bind-mount it there, or set "
				"mxgate_chroot empty\n",
				plan->chroot_dir, need[i], plan->chroot_dir, need[i]);
			return -1;
		}
	}
	return 0;
}

/* What mail_owner must own before the drop: the spools, the table store, the compiled
 * checks cache, data_directory (postscreen and greylist state) and the control socket;
 * files a root-only earlier version made there are given to it as well. Returns 0, or
 * -1 after logging. */
static int mail_owner_give(const struct privdrop_plan *plan, const struct mx_config *boot)
{
	char err[PATH_MAX + 256];
	const char *dirs[MX_CONFIG_MAX_SPOOLS + 4];
	int depth[MX_CONFIG_MAX_SPOOLS + 4];
	size_t n = 0;
	for (unsigned i = 0; i < boot->spool_dir_count; i++) {
		depth[n] = -1;
		dirs[n++] = boot->spool_dirs[i];
	}
	depth[n] = -1;
	dirs[n++] = boot->table_directory;
	depth[n] = -1;
	dirs[n++] = mx_config_get(boot, "mxgate_checks_cache_directory");
	/* shared with whatever else an operator keeps there: the directory and the files
	 * in it (the LMDB files of postscreen_cache_map and the greylist), not below */
	depth[n] = 1;
	dirs[n++] = mx_config_get(boot, "data_directory");
	depth[n] = 0;
	dirs[n++] = boot->control_socket;
	for (size_t i = 0; i < n; i++) {
		if (!dirs[i] || !*dirs[i])
			continue;
		long changed = privdrop_own_tree(dirs[i], plan->uid, plan->gid, depth[i], err,
						 sizeof(err));
		if (changed < 0) {
			startup_fatal("mail_owner = %s: %s", plan->user, err);
			return -1;
		}
		if (changed > 0)
			mx_log(MX_LOG_INFO, "mail_owner = %s: %ld file(s) under %s given to it",
			       plan->user, changed, dirs[i]);
	}
	return 0;
}

/* Become mail_owner. The capabilities kept: the kernel transport opens the listeners a
 * reload adds (ports below 1024: CAP_NET_BIND_SERVICE); the dpdk transport needs none
 * once its ports run (docs/ARCHITECTURE.md). Returns 0, or -1 after logging. */
static int mail_owner_become(const struct privdrop_plan *plan, const struct mx_config *boot)
{
	if (!plan->active)
		return 0;
	uint64_t keep = boot->transport == MX_TRANSPORT_KERNEL
				? PRIVDROP_CAP(CAP_NET_BIND_SERVICE)
				: 0;
	char err[PATH_MAX + 256], caps[256];
	if (mail_owner_give(plan, boot) < 0)
		return -1;
	if (privdrop_apply(plan, keep, err, sizeof(err)) < 0) {
		startup_fatal("%s", err);
		return -1;
	}
	privdrop_caps_text(keep, caps, sizeof(caps));
	mx_log(MX_LOG_INFO, "running as %s (uid %u gid %u)%s%s, capabilities kept: %s",
	       plan->user, (unsigned)plan->uid, (unsigned)plan->gid,
	       plan->chroot_dir[0] ? ", chroot " : "", plan->chroot_dir, caps);
	return 0;
}

/* Run the gateway until a signal stops it. The exit status. */
static int run_gateway(const char *given_path, const char *pidfile)
{
	/* Reloads read the file again, perhaps from another thread's working directory. */
	char config_path[PATH_MAX];
	if (!realpath(given_path, config_path))
		snprintf(config_path, sizeof(config_path), "%s", given_path);

	/* boot: what only a restart changes (the transport, workers, spools, relay, log) */
	struct mx_config *boot = NULL;
	int lrc = load_quietly(config_path, &boot);
	if (lrc < 0) {
		mx_config_report_failure(stderr, "mxgate", config_path, lrc);
		fprintf(stderr, "mxgate: not starting\n");
		return 1;
	}
	/* The transport's own settings are checked before anything starts, so a typo in a
	 * port is a one-line error rather than a half-started gateway. */
	const struct transport_ops *ops = transport_or_complain(boot, config_path, stderr);
	char cerr[512];
	if (!ops || (ops->check && ops->check(boot, cerr, sizeof(cerr)) < 0)) {
		if (ops)
			fprintf(stderr, "mxgate: fatal: %s: %s\n", config_path, cerr);
		mx_config_free(boot);
		return 1;
	}
	struct privdrop_plan plan;
	if (mail_owner_prepare(&plan, boot, config_path) < 0) {
		mx_config_free(boot);
		return 1;
	}
	/* under systemd (Type=notify): connected now, while the socket's path is reachable */
	int nrc = sdnotify_open();
	if (nrc < 0)
		fprintf(stderr, "mxgate: warning: NOTIFY_SOCKET: %s\n", strerror(-nrc));
	unsigned workers = boot->workers;
	if (workers == 0 && boot->transport == MX_TRANSPORT_KERNEL) {
		/* dpdk: the EAL's lcores say how many */
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 ? (unsigned)n : 1;
	}
	/* The first generation: the services, their restriction lists and checks. */
	struct mx_generation *first = build_first_generation(
		config_path, ops->worker_limit(boot, workers), stderr);
	if (!first) {
		fprintf(stderr, "mxgate: not starting\n");
		mx_config_free(boot);
		return 1;
	}

	char host[256];
	short_hostname(host, sizeof(host));
	/* Postfix's rule: maillog_file when set, else syslog (syslog_facility, syslog_name).
	 * Lines are tagged smtpd unless a thread or a line says otherwise (mx_log_as). */
	int facility = mx_log_facility_code(boot->syslog_facility);
	struct mx_log_conf lc = {
		.maillog_file = boot->maillog_file,
		.syslog_socket = boot->mxgate_syslog_socket,
		.syslog_name = boot->syslog_name,
		.facility = facility < 0 ? LOG_MAIL : facility,
		.hostname = host,
		.process = "smtpd",
	};
	char lwarn[512];
	int rc = mx_log_open_conf(&lc, lwarn, sizeof(lwarn));
	if (rc == 0 && lwarn[0])
		fprintf(stderr, "mxgate: warning: %s\n", lwarn);
	/* this thread's lines (statistics, reload, the spool at start) are mgmt's; starting,
	 * stopping and SIGHUP are master's, as Postfix's master(8) logs them */
	mx_log_set_process(MX_LOG_MGMT);
	if (rc < 0) {
		fprintf(stderr, "mxgate: fatal: open %s %s: %s\n",
			boot->maillog_file[0] ? "maillog_file" : "syslog socket",
			boot->maillog_file[0] ? boot->maillog_file : boot->mxgate_syslog_socket,
			strerror(-rc));
		mx_generation_put(first);
		mx_config_free(boot);
		return 1;
	}

	/* Signals are taken by sigtimedwait() in this thread only: block them before any
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
	struct mx_transport_run tr = { .ops = ops };
	struct mx_gen_pub pub; /* mx_gen_pub_init() below: every field */
	struct control_server *control = NULL;
	struct queue_control *queue_cmds = NULL;
	struct reload *reload = NULL;
	struct svc_set *services = NULL;
	struct anvil *anvil = NULL;
	struct anvil *screen_counts = NULL; /* postscreen's per-client concurrency */
	struct svc_anvil *anvil_share = NULL;
	struct svc_sasl_directory *sasl = NULL;
	/* The metrics registry: every statistics line, `mxgate status` and the endpoint
	 * (mxgate_metrics_listen) read it. */
	struct mx_metrics *metrics = mx_metrics_new();
	struct gateway_metrics *gmetrics = NULL;
	struct mx_metrics_http *metrics_http = NULL;
	const void *resolver = NULL;
	bool pidfile_written = false, failed = true;
	char err[512];
	mx_gen_pub_init(&pub, first);
	if (!metrics) {
		startup_fatal("out of memory");
		goto out;
	}
	check_generation_tables(first, stderr);
	if (spools_open(&sp, boot, generation_needs_tables(first)) < 0)
		goto out;
	for (unsigned i = 0; i < sp.n; i++) {
		if ((rc = spool_start(sp.spool[i])) < 0) {
			startup_fatal("cannot start the spool writer: %s", strerror(-rc));
			goto out;
		}
	}
	for (unsigned i = 0; i < sp.n; i++) {
		if ((rc = relay_start(sp.relay[i])) < 0) {
			startup_fatal("cannot start the relay: %s", strerror(-rc));
			goto out;
		}
	}
	log_relay_plan(boot);

	if (!(sasl = svc_sasl_directory_new())) {
		startup_fatal("out of memory");
		goto out;
	}
	sasl_follow(sasl, &pub);
	if (services_start(&services, boot, ops->worker_limit(boot, workers), sasl,
			   &resolver) < 0)
		goto out;
	if ((rc = anvil_create(&anvil, boot)) < 0 ||
	    (rc = anvil_create(&screen_counts, boot)) < 0 ||
	    (rc = anvil_share_start(&anvil_share, anvil, boot, first)) < 0)
		goto out;
	struct transport_params params = {
		.boot = boot,
		.gens = &pub,
		.tables = sp.tables,
		.spools = sp.spool,
		.nspools = sp.n,
		.svc = services,
		.workers = workers,
		.max_connections = boot->max_connections,
		.shutdown_grace_ms = MXGATE_SHUTDOWN_GRACE_MS,
		.queue_id_floor_us = sp.newest_id_us,
		.anvil = anvil,
		.screen_counts = screen_counts,
		.sasl = sasl,
		.metrics = metrics,
	};
	rc = ops->create(&tr.impl, &params, err, sizeof(err));
	if (rc < 0) {
		startup_fatal("%s", err);
		goto out;
	}
	char what[1024];
	ops->describe(tr.impl, what, sizeof(what));
	struct reload_params rp = {
		.ops = ops,
		.impl = tr.impl,
		.pub = &pub,
		.boot = boot,
		.tables = sp.tables,
		.nworkers = ops->worker_limit(boot, workers),
		.started_at = (int64_t)time(NULL),
		.transport_description = what,
		.metrics = metrics,
	};
	if (reload_create(&reload, &rp) < 0) {
		startup_fatal("out of memory");
		goto out;
	}
	first = NULL; /* the reload holds its publication now */

	struct gateway_metrics_params gmp = {
		.m = metrics,
		.ops = ops,
		.impl = tr.impl,
		.spools = sp.spool,
		.relays = sp.relay,
		.nspools = sp.n,
		.reload = reload,
		.resolver = resolver,
		.anvil_share = anvil_share,
	};
	if ((rc = gateway_metrics_register(&gmetrics, &gmp)) < 0) {
		startup_fatal("metrics: %s", strerror(-rc));
		goto out;
	}
	if (boot->metrics_listen_set) {
		if ((rc = mx_metrics_http_start(metrics, &boot->metrics_listen, &metrics_http, err,
						sizeof(err))) < 0) {
			startup_fatal("mxgate_metrics_listen: %s", err);
			goto out;
		}
		mx_log(MX_LOG_INFO, "metrics on http://%s%s%s:%u/metrics",
		       strchr(boot->metrics_listen.host, ':') ? "[" : "",
		       boot->metrics_listen.host,
		       strchr(boot->metrics_listen.host, ':') ? "]" : "",
		       mx_metrics_http_port(metrics_http));
	}

	/* The control socket is always open: the queue tool and reloads work whatever the
	 * configuration. */
	if ((rc = control_server_create(&control, boot->control_socket, err, sizeof(err))) < 0 ||
	    (rc = queue_control_register(&queue_cmds, control, sp.relay, sp.n, err,
					 sizeof(err))) < 0 ||
	    (rc = reload_register(reload, control, err, sizeof(err))) < 0) {
		startup_fatal("mxgate_control_socket: %s", err);
		goto out;
	}
	/* Everything that needs root is done: the listeners or ports, the spools, the log,
	 * the control socket. Threads started from here on (the control thread, the
	 * workers) inherit what this one keeps. */
	/* written as root, as Postfix's master writes its pid file */
	if (pidfile && (rc = write_pidfile(pidfile)) < 0) {
		startup_fatal("pidfile %s: %s", pidfile, strerror(-rc));
		goto out;
	}
	pidfile_written = pidfile != NULL;
	if (mail_owner_become(&plan, boot) < 0)
		goto out;
	if ((rc = control_server_start(control)) < 0) {
		startup_fatal("mxgate_control_socket: cannot start its thread: %s", strerror(-rc));
		goto out;
	}

	rc = ops->start(tr.impl);
	if (rc < 0) {
		startup_fatal("cannot start workers: %s", strerror(-rc));
		goto out;
	}
	mx_log_as(MX_LOG_MASTER, MX_LOG_INFO,
		  "mxgate %s started -- transport %s, spool %s, configuration %s",
	       MXGATE_VERSION, what, mx_config_get(boot, "mxgate_spool_directory"), config_path);

	sdnotify_send("READY=1\nSTATUS=accepting mail");

	signal_loop(&sigs, &tr, &sp, services, reload, sasl, &pub, anvil_share, metrics);
	sdnotify_send("STOPPING=1");

	/* No control command runs from here on (a reload would wait for workers that are
	 * stopping). Then the workers go; commits they handed over are synced before the
	 * writers stop. The relays stop first: they need the writers for their records. */
	control_server_free(control);
	control = NULL;
	transport_stop_join(&tr);
	/* the services answer what they still hold while the workers' wake fds are open */
	svc_set_stop(services);
	spools_stop(&sp);
	failed = transport_failed(&tr);
	if (anvil_share)
		svc_anvil_log_statistics(anvil_share, "shutdown");
	log_statistics(&tr, metrics, "shutdown");
	spools_log_statistics(&sp, metrics);
	mx_log_as(MX_LOG_MASTER, MX_LOG_INFO, "mxgate stopped%s",
		  failed ? " after an internal error" : "");

out:
	/* Also the undoing of a start-up step that failed: every call here accepts what was
	 * never created (NULL) or never started. */
	control_server_free(control);
	queue_control_free(queue_cmds);
	/* nothing reads the registry after this: then what it reads can go */
	mx_metrics_http_stop(metrics_http);
	gateway_metrics_unregister(gmetrics);
	svc_set_stop(services);
	spools_stop(&sp);
	transport_destroy(&tr);
	svc_anvil_free(anvil_share); /* before the table it syncs */
	anvil_free(anvil); /* after the workers, which count in it */
	anvil_free(screen_counts);
	svc_set_free(services); /* after the workers' clients: answers nobody took */
	svc_sasl_directory_free(sasl); /* after the service and the workers that read it */
	/* as mail_owner, its directory must let the user remove it */
	if (pidfile_written && unlink(pidfile) != 0 && errno != ENOENT)
		mx_log(MX_LOG_WARNING, "pidfile %s: cannot remove it: %s", pidfile,
		       strerror(errno));
	spools_close(&sp);
	reload_free(reload);
	if (first) {
		atomic_store(&pub.current, NULL);
		mx_generation_put(first);
	}
	mx_metrics_free(metrics); /* after the transport unregistered its families */
	mx_log_close();
	mx_config_free(boot);
	sdnotify_close();
	return failed ? 1 : 0;
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
	if (argc > 1 && (strcmp(argv[1], "reload") == 0 || strcmp(argv[1], "status") == 0))
		return mx_control_cmd_main(argc - 1, argv + 1, MXGATE_DEFAULT_CONFIG);
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
			printf("mxgate %s (built with %s)\n", MXGATE_VERSION,
			       transport_dpdk_version() ? transport_dpdk_version()
							: "the kernel transport only, no DPDK");
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
	return run_gateway(config_path, pidfile);
}
