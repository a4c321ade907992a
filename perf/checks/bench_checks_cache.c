/* What the compiled-checks cache (tables/checks_cache.c) saves at a start or reload: the
 * time to build a header_checks set and a body_checks set of n rules each, in a fresh
 * process every time (as a start; a reload builds in a process that has never compiled
 * that set either), without the cache, on a miss (compile and write), and on hits (the
 * file is in the page cache after the first read), and the size of each file on disk.
 *
 *   ./bench_checks_cache [rules...]     (default 10000)
 *   ./bench_checks_cache --child LIST CACHE_DIR   (one build; used by the above)
 * A build reads the rule files, parses them (PCRE2 compiles every rule, as it must for
 * confirmations and captures) and gets the Hyperscan database; "process_ms" adds exec,
 * dynamic linking and exit. Fails (exit 1) when a hit takes a second or more. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_checks_rules.h"
#include "tables/checks.h"

/* One build in this process: prints "ms hit stored compiles bytes" on stdout. */
static int child(const char *list, const char *dir)
{
	struct checks_options o = { .cache_dir = dir };
	struct checks *c = NULL;
	char err[512];
	double t0 = now();
	int rc = checks_compile_list_opts(list, &o, &c, err, sizeof(err));
	double ms = (now() - t0) * 1e3;
	if (rc < 0) {
		fprintf(stderr, "compile: %s\n", err);
		return 1;
	}
	struct checks_stats st;
	checks_stats(c, &st);
	if (st.cache_error[0])
		fprintf(stderr, "cache: %s\n", st.cache_error);
	printf("%.1f %d %d %zu %.0f\n", ms, st.cache_hit, st.cache_stored, st.hs_compiles,
	       st.hs_bytes);
	checks_free(c);
	return 0;
}

struct run {
	double ms, process_ms, bytes;
	int hit, stored;
	size_t compiles;
};

/* Run `self --child list dir` and read its line. */
static int run_child(const char *self, const char *list, const char *dir, struct run *r)
{
	int fds[2];
	if (pipe(fds) < 0)
		return -1;
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(self, self, "--child", list, dir, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	char line[256] = "";
	size_t got = 0;
	ssize_t k;
	while (got < sizeof(line) - 1 && (k = read(fds[0], line + got, sizeof(line) - 1 - got)) > 0)
		got += (size_t)k;
	line[got] = '\0';
	close(fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	r->process_ms = (now() - t0) * 1e3;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    sscanf(line, "%lf %d %d %zu %lf", &r->ms, &r->hit, &r->stored, &r->compiles,
		   &r->bytes) != 5)
		return -1;
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	remove(p);
	return 0;
}

/* Bytes of the cache files in dir. */
static long long dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	long long total = 0;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		char p[512];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (strstr(de->d_name, ".hsdb") && stat(p, &st) == 0)
			total += (long long)st.st_size;
	}
	if (d)
		closedir(d);
	return total;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--child") == 0)
		return child(argv[2], argv[3]);
	size_t sizes[8] = { 10000 }, nsizes = 1;
	if (argc > 1) {
		nsizes = 0;
		for (int i = 1; i < argc && nsizes < 8; i++)
			sizes[nsizes++] = strtoul(argv[i], NULL, 10);
	}
	char self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0)
		return 1;
	self[sl] = '\0';
	char tmp[] = "/tmp/mxgate-bench-cache-XXXXXX";
	if (!mkdtemp(tmp))
		return 1;
	int failed = 0;
	printf("%8s %-6s %14s %14s %14s %14s %12s\n", "rules", "set", "nocache_ms", "miss_ms",
	       "hit_ms", "hit_process_ms", "file_KiB");
	for (size_t k = 0; k < nsizes; k++) {
		for (int body = 0; body < 2; body++) {
			size_t n = sizes[k];
			char *text = gen_rules(n, body, body ? 2 : 1);
			char rules[256], list[300], dir[256];
			snprintf(rules, sizeof(rules), "%s/%s_%zu", tmp, body ? "body" : "header", n);
			snprintf(list, sizeof(list), "pcre:%s", rules);
			snprintf(dir, sizeof(dir), "%s/cache_%s_%zu", tmp, body ? "body" : "header",
				 n);
			if (write_file(rules, text) < 0)
				return 1;
			free(text);
			struct run none, miss, hit[3];
			if (run_child(self, list, "", &none) < 0 ||
			    run_child(self, list, dir, &miss) < 0)
				return 1;
			double best = 1e30, best_proc = 1e30;
			for (int i = 0; i < 3; i++) {
				if (run_child(self, list, dir, &hit[i]) < 0)
					return 1;
				if (!hit[i].hit) {
					fprintf(stderr, "run %d: not a hit\n", i);
					failed = 1;
				}
				best = hit[i].ms < best ? hit[i].ms : best;
				best_proc = hit[i].process_ms < best_proc ? hit[i].process_ms
									  : best_proc;
			}
			if (miss.hit || !miss.stored)
				failed = 1;
			printf("%8zu %-6s %14.1f %14.1f %14.1f %14.1f %12.0f\n", n,
			       body ? "body" : "header", none.ms, miss.ms, best, best_proc,
			       (double)dir_bytes(dir) / 1024);
			fflush(stdout);
			fprintf(stderr,
				"  %s %zu: database %.0f KiB in memory; hits %.1f/%.1f/%.1f ms; "
				"%zu compile(s) uncached, %zu on a hit\n",
				body ? "body" : "header", n, hit[0].bytes / 1024, hit[0].ms,
				hit[1].ms, hit[2].ms, none.compiles, hit[0].compiles);
			if (best_proc >= 1000) {
				fprintf(stderr, "a cached build took %.0f ms: over a second\n",
					best_proc);
				failed = 1;
			}
		}
	}
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return failed;
}
