/* mxgate-map: what postmap(1) is for Postfix, for mxgate's LMDB table store.
 *
 * Builds a table from its Postfix source text in one LMDB write transaction (a running
 * gateway sees the old or the new table, never a mix, and is never blocked), queries it the
 * way the gateway will, lists it, and shows the access(5) lookup sequence for an address,
 * domain or client. Exit status as postmap: 0 found / done, 1 not found, 2 error. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mxgate/clock.h"
#include "mxgate/inet.h"
#include "tables/rbl_zone.h"
#include "tables/table_access.h"
#include "tables/tables_env.h"

static const char mxgate_map_usage[] =
	"usage: mxgate-map -d DBDIR [-v] TYPE:NAME [FILE]\n"
	"       mxgate-map -d DBDIR -q KEY|- [-a address|domain|client [-D DELIMS] [-N]] TYPE:NAME\n"
	"       mxgate-map -d DBDIR -s TYPE:NAME\n"
	"       mxgate-map -d DBDIR -z ZONE -t FORMAT [-v] FILE|-\n"
	"       mxgate-map -d DBDIR -z ZONE -q ADDRESS|NAME|-\n"
	"\n"
	"TYPE:NAME is the table as main.cf names it (hash:/etc/postfix/access); the store keeps it\n"
	"under that name (hash: and lmdb: are the same table).\n"
	"\n"
	"Build: replace table TYPE:NAME (hash, lmdb, cidr, regexp, pcre) in the table store DBDIR\n"
	"  with the Postfix-format source FILE (default: the file NAME; \"-\" reads stdin), in one\n"
	"  transaction. Bad input leaves the old table in place and exits 2 with the line number.\n"
	"  -v prints the number of entries and records written.\n"
	"Query (-q KEY): print the value of KEY and exit 0, or exit 1 when not found, 2 on error\n"
	"  (missing table, corrupt data). With -q - keys are read from stdin, one per line, and\n"
	"  \"key<TAB>value\" is printed for each key found; exit 0 when any key was found.\n"
	"  Keys of hash/cidr/inline tables are case-folded; regexp/pcre see the key as given.\n"
	"  static:VALUE and inline:{ key=value, ... } tables need no DBDIR.\n"
	"Access order (-a KIND with -q): show every key smtpd's check_*_access tries, in order,\n"
	"  and which one matched (the first match ends the search, DUNNO included):\n"
	"    address  user+ext@domain, user@domain, domain and parents, user+ext@, user@\n"
	"             (an empty key \"\" is the null sender, looked up as <>)\n"
	"    domain   the domain and its parents\n"
	"    client   NAME[ADDRESS] or ADDRESS: the name and its parents, then a.b.c.d, a.b.c,\n"
	"             a.b, a (IPv6: dropping the last ':' group each time)\n"
	"  -D DELIMS  recipient_delimiter (default none)\n"
	"  -N         parent_domain_matches_subdomains does not list smtpd_access_maps: parents\n"
	"             are tried as .example.com instead of example.com\n"
	"List (-s): print every \"key<TAB>value\" (cidr/regexp/pcre: the rules, in file order).\n"
	"Local DNSBL zones (-z ZONE): build zone ZONE (a DNS domain, e.g. zen.spamhaus.org) from an\n"
	"  rbldnsd(8) data file of FORMAT ip4set, ip4tset, ip4trie, ip6trie, ip6tset, dnset or\n"
	"  combined; or query it (-q): an IP address is looked up in the ip4/ip6 datasets,\n"
	"  anything else as a domain name in the dnset datasets (a subzone of a combined zone is\n"
	"  queried as -z SUB.ZONE). Prints one \"A<TAB>TXT\" line per answer (with -q -:\n"
	"  \"key<TAB>A<TAB>TXT\"); exit 0 listed, 1 not listed, 2 error.\n";

enum mxgate_map_access { MXGATE_MAP_PLAIN, MXGATE_MAP_ADDRESS, MXGATE_MAP_DOMAIN, MXGATE_MAP_CLIENT };

static void mxgate_map_warn(void *ctx, const char *msg)
{
	fprintf(stderr, "mxgate-map: warning: %s: %s\n", (const char *)ctx, msg);
}

/* Read all of a file or stdin (bounded). Returns 0 or -errno. */
static int mxgate_map_slurp(FILE *f, char **out, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			if (cap >= ((size_t)4 << 30)) {
				free(buf);
				return -EFBIG;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f)) {
				free(buf);
				return -EIO;
			}
			break;
		}
	}
	*out = buf;
	*len = n;
	return 0;
}

struct mxgate_map_trace {
	int steps;
};

static void mxgate_map_trace_step(void *ctx, const char *key, int result, const char *value)
{
	struct mxgate_map_trace *tr = ctx;
	tr->steps++;
	if (result == 1)
		printf("  %s\t%s\t<- match\n", key, value);
	else if (result == 0)
		printf("  %s\t(not found)\n", key);
	else
		printf("  %s\t(lookup error: %s)\n", key, strerror(-result));
}

/* One query; returns 1 found, 0 not found, <0 error. Prints as described in the usage. */
static int mxgate_map_query(struct table *t, const char *key, enum mxgate_map_access mode,
			    const struct table_access_opts *opts, bool batch)
{
	char val[TABLE_VALUE_MAX + 1], matched[TABLE_KEY_MAX + 1];
	if (mode == MXGATE_MAP_PLAIN) {
		int rc = table_lookup(t, key, val, sizeof(val));
		if (rc == 1) {
			if (batch)
				printf("%s\t%s\n", key, val);
			else
				printf("%s\n", val);
		}
		return rc;
	}
	struct mxgate_map_trace tr = { 0 };
	struct table_access_query q = { .opts = opts, .val = val, .vallen = sizeof(val),
					.matched = matched, .matchedlen = sizeof(matched),
					.trace = mxgate_map_trace_step, .trace_ctx = &tr };
	int rc;
	printf("%s:\n", key[0] ? key : "<>");
	if (mode == MXGATE_MAP_ADDRESS) {
		rc = table_access_address(t, key, &q);
	} else if (mode == MXGATE_MAP_DOMAIN) {
		rc = table_access_domain(t, key, &q);
	} else {
		/* NAME[ADDRESS] or ADDRESS */
		char name[TABLE_KEY_MAX + 1] = "", addr[64] = "";
		const char *lb = strchr(key, '[');
		if (lb) {
			const char *rb = strchr(lb, ']');
			if (!rb || rb[1] || (size_t)(lb - key) > TABLE_KEY_MAX ||
			    (size_t)(rb - lb - 1) >= sizeof(addr)) {
				fprintf(stderr, "mxgate-map: bad client \"%s\": expected NAME[ADDRESS]\n",
					key);
				return -EINVAL;
			}
			memcpy(name, key, (size_t)(lb - key));
			name[lb - key] = '\0';
			memcpy(addr, lb + 1, (size_t)(rb - lb - 1));
			addr[rb - lb - 1] = '\0';
		} else if (strlen(key) < sizeof(addr)) {
			snprintf(addr, sizeof(addr), "%s", key);
		} else {
			fprintf(stderr, "mxgate-map: bad client address \"%s\"\n", key);
			return -EINVAL;
		}
		rc = table_access_client(t, name, addr, &q);
	}
	if (rc == 1)
		printf("result: %s\t%s\n", matched, val);
	else if (rc == 0)
		printf("result: no match\n");
	else
		printf("result: lookup error (%s): the gateway answers 451 4.3.5 Server "
		       "configuration error\n",
		       strerror(-rc));
	return rc;
}

static int mxgate_map_list_one(void *ctx, const char *key, const char *value)
{
	(void)ctx;
	if (*value)
		printf("%s\t%s\n", key, value);
	else
		printf("%s\n", key);
	return 0;
}

/* Build (text != NULL) or query a local DNSBL zone; returns the exit status. */
static int mxgate_map_zone_query(struct rbl_zone *z, const char *key, bool batch)
{
	struct rbl_result res;
	struct mx_inet_addr a;
	int64_t now = mx_clock_wall_s();
	int rc = mx_inet_parse(key, &a) ? rbl_zone_query_addr(z, &a, now, &res)
					 : rbl_zone_query_name(z, key, now, &res);
	for (int i = 0; rc == 1 && i < (int)res.count; i++) {
		const uint8_t *q = res.answers[i].a;
		if (batch)
			printf("%s\t", key);
		printf("%u.%u.%u.%u\t%s\n", q[0], q[1], q[2], q[3], res.answers[i].txt);
	}
	return rc;
}

static int mxgate_map_zone(const char *dbdir, const char *zone, const char *format,
			   const char *query, bool verbose, const char *file)
{
	char err[512];
	struct tables_env *env;
	struct tables_env_opts o = { .read_only = query != NULL };
	if (!dbdir) {
		fprintf(stderr, "mxgate-map: fatal: -z needs -d DBDIR\n");
		return 2;
	}
	if (tables_env_open(dbdir, &o, &env, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate-map: fatal: %s\n", err);
		return 2;
	}
	int status = 0, rc;
	if (!query) {
		enum rbl_format fmt;
		if (!format || rbl_format_parse(format, &fmt) < 0) {
			fprintf(stderr, "mxgate-map: fatal: -t: expected ip4set, ip4tset, ip4trie, "
					"ip6trie, ip6tset, dnset or combined\n");
			tables_env_close(env);
			return 2;
		}
		struct rbl_build_stats st;
		if (strcmp(file, "-") == 0) {
			char *text;
			size_t len;
			rc = mxgate_map_slurp(stdin, &text, &len);
			if (rc < 0) {
				snprintf(err, sizeof(err), "read stdin: %s", strerror(-rc));
			} else {
				rc = rbl_zone_build(env, zone, fmt, text, len, mxgate_map_warn,
						    (void *)"stdin", &st, err, sizeof(err));
				if (rc == -EINVAL && strncmp(err, "line ", 5) == 0) {
					char tmp[600];
					snprintf(tmp, sizeof(tmp), "stdin, %s", err);
					snprintf(err, sizeof(err), "%.500s", tmp);
				}
				free(text);
			}
		} else {
			rc = rbl_zone_build_file(env, zone, fmt, file, mxgate_map_warn, (void *)file,
						 &st, err, sizeof(err));
		}
		if (rc < 0) {
			fprintf(stderr, "mxgate-map: fatal: zone %s: %s\n", zone, err);
			status = 2;
		} else if (verbose) {
			fprintf(stderr, "mxgate-map: zone %s: %llu entries, %llu records%s\n", zone,
				(unsigned long long)st.entries, (unsigned long long)st.records,
				st.expires ? ", expires" : "");
		}
		tables_env_close(env);
		return status;
	}
	struct tables_reader *rd = NULL;
	struct rbl_zone *z = NULL;
	if ((rc = tables_reader_open(env, &rd)) < 0 || (rc = rbl_zone_open(rd, zone, &z)) < 0) {
		fprintf(stderr, "mxgate-map: fatal: zone %s: %s\n", zone, strerror(-rc));
		status = 2;
	} else if (strcmp(query, "-") == 0) {
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		bool any = false;
		while ((n = getline(&line, &cap, stdin)) >= 0) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				line[--n] = '\0';
			if (n == 0)
				continue;
			rc = mxgate_map_zone_query(z, line, true);
			if (rc < 0) {
				fprintf(stderr, "mxgate-map: fatal: zone %s: lookup error for \"%.300s\": "
						"%s\n", zone, line,
					rc == -ENOENT ? "no such zone" : strerror(-rc));
				status = 2;
				break;
			}
			any |= rc == 1;
			fflush(stdout);
		}
		free(line);
		if (status == 0)
			status = any ? 0 : 1;
	} else {
		rc = mxgate_map_zone_query(z, query, false);
		if (rc < 0) {
			fprintf(stderr, "mxgate-map: fatal: zone %s: lookup error: %s\n", zone,
				rc == -ENOENT ? "no such zone (build it first)" : strerror(-rc));
			status = 2;
		} else {
			status = rc == 1 ? 0 : 1;
		}
	}
	rbl_zone_close(z);
	tables_reader_close(rd);
	tables_env_close(env);
	fflush(stdout);
	return status;
}

int main(int argc, char **argv)
{
	const char *dbdir = NULL, *query = NULL, *delims = NULL, *zone = NULL, *format = NULL;
	bool list = false, verbose = false, no_parent = false;
	enum mxgate_map_access mode = MXGATE_MAP_PLAIN;
	int c;
	while ((c = getopt(argc, argv, "d:q:sva:D:Nz:t:h")) != -1) {
		switch (c) {
		case 'd':
			dbdir = optarg;
			break;
		case 'q':
			query = optarg;
			break;
		case 's':
			list = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'a':
			if (strcmp(optarg, "address") == 0)
				mode = MXGATE_MAP_ADDRESS;
			else if (strcmp(optarg, "domain") == 0)
				mode = MXGATE_MAP_DOMAIN;
			else if (strcmp(optarg, "client") == 0)
				mode = MXGATE_MAP_CLIENT;
			else {
				fprintf(stderr, "mxgate-map: -a: expected address, domain or client\n");
				return 2;
			}
			break;
		case 'D':
			delims = optarg;
			break;
		case 'N':
			no_parent = true;
			break;
		case 'z':
			zone = optarg;
			break;
		case 't':
			format = optarg;
			break;
		case 'h':
			fputs(mxgate_map_usage, stdout);
			return 0;
		default:
			fputs(mxgate_map_usage, stderr);
			return 2;
		}
	}
	int nargs = argc - optind;
	if (zone) {
		if (list || mode != MXGATE_MAP_PLAIN || nargs != (query ? 0 : 1)) {
			fputs(mxgate_map_usage, stderr);
			return 2;
		}
		return mxgate_map_zone(dbdir, zone, format, query, verbose,
				       query ? NULL : argv[optind]);
	}
	bool build = !query && !list;
	if (nargs < 1 || nargs > (build ? 2 : 1) || (query && list) ||
	    (mode != MXGATE_MAP_PLAIN && !query)) {
		fputs(mxgate_map_usage, stderr);
		return 2;
	}
	const char *spec = argv[optind];
	enum table_kind kind;
	const char *name;
	char err[512];
	if (table_spec_parse(spec, &kind, &name, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate-map: fatal: %s\n", err);
		return 2;
	}
	bool stored = kind != TABLE_KIND_STATIC && kind != TABLE_KIND_INLINE;
	if (stored && !dbdir) {
		fprintf(stderr, "mxgate-map: fatal: -d DBDIR is required for %s tables\n",
			table_kind_name(kind));
		return 2;
	}

	struct tables_env *env = NULL;
	if (stored) {
		struct tables_env_opts o = { .read_only = !build };
		int rc = tables_env_open(dbdir, &o, &env, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "mxgate-map: fatal: %s\n", err);
			return 2;
		}
	}

	int status = 0;
	if (build) {
		if (!stored) {
			fprintf(stderr, "mxgate-map: fatal: %s tables are given in their name and need "
					"no build\n",
				table_kind_name(kind));
			return 2;
		}
		const char *file = nargs == 2 ? argv[optind + 1] : name;
		struct tables_build_stats st;
		int rc;
		if (strcmp(file, "-") == 0) {
			char *text;
			size_t len;
			rc = mxgate_map_slurp(stdin, &text, &len);
			if (rc < 0) {
				snprintf(err, sizeof(err), "read stdin: %s", strerror(-rc));
			} else {
				rc = tables_build(env, spec, text, len, mxgate_map_warn, (void *)"stdin",
						  &st, err, sizeof(err));
				if (rc == -EINVAL && strncmp(err, "line ", 5) == 0) {
					char tmp[600];
					snprintf(tmp, sizeof(tmp), "stdin, %s", err);
					snprintf(err, sizeof(err), "%.500s", tmp);
				}
				free(text);
			}
		} else {
			rc = tables_build_file(env, spec, file, mxgate_map_warn, (void *)file, &st, err,
					       sizeof(err));
		}
		if (rc < 0) {
			fprintf(stderr, "mxgate-map: fatal: %s: %s\n", spec, err);
			status = 2;
		} else if (verbose) {
			fprintf(stderr,
				"mxgate-map: %s: %llu entries, %llu records, %llu duplicates ignored\n",
				spec, (unsigned long long)st.entries, (unsigned long long)st.records,
				(unsigned long long)st.duplicates);
		}
		tables_env_close(env);
		return status;
	}

	struct tables_reader *rd = NULL;
	struct table *t = NULL;
	int rc = 0;
	if (env && (rc = tables_reader_open(env, &rd)) < 0) {
		fprintf(stderr, "mxgate-map: fatal: %s: %s\n", dbdir, strerror(-rc));
		tables_env_close(env);
		return 2;
	}
	if ((rc = table_open(rd, spec, &t, err, sizeof(err))) < 0) {
		fprintf(stderr, "mxgate-map: fatal: %s\n", err);
		status = 2;
		goto done;
	}
	struct table_access_opts aopts = { .recipient_delimiter = delims,
					   .parent_matches_subdomains = !no_parent };
	if (list) {
		rc = table_list(t, mxgate_map_list_one, NULL);
		if (rc < 0) {
			fprintf(stderr, "mxgate-map: fatal: table %s lookup error: %s\n", spec,
				rc == -ENOENT ? "no such table (build it first)" : strerror(-rc));
			status = 2;
		}
	} else if (strcmp(query, "-") == 0) {
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		bool any = false;
		while ((n = getline(&line, &cap, stdin)) >= 0) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				line[--n] = '\0';
			if ((size_t)n > 65536) {
				fprintf(stderr, "mxgate-map: fatal: key longer than 65536 bytes\n");
				status = 2;
				break;
			}
			if (mode == MXGATE_MAP_PLAIN && n == 0)
				continue;
			rc = mxgate_map_query(t, line, mode, &aopts, true);
			if (rc < 0) {
				fprintf(stderr, "mxgate-map: fatal: table %s: lookup error for \"%s\": %s\n",
					spec, line, rc == -ENOENT ? "no such table" : strerror(-rc));
				status = 2;
				break;
			}
			any |= rc == 1;
			fflush(stdout); /* one answer per key, at once: usable as a co-process */
		}
		free(line);
		if (status == 0)
			status = any ? 0 : 1;
	} else {
		rc = mxgate_map_query(t, query, mode, &aopts, false);
		if (rc < 0) {
			fprintf(stderr, "mxgate-map: fatal: table %s: lookup error: %s\n", spec,
				rc == -ENOENT ? "no such table (build it first)" : strerror(-rc));
			status = 2;
		} else {
			status = rc == 1 ? 0 : 1;
		}
	}
done:
	table_close(t);
	tables_reader_close(rd);
	tables_env_close(env);
	fflush(stdout);
	return status;
}
