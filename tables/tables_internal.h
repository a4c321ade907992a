/* The table store's internals, shared by the modules of tables/ that keep their own kind
 * of data in the same LMDB environment (tables_env.c for Postfix tables, rbl_zone.c for
 * RBL zones). Not for use outside tables/. */
#ifndef MXGATE_TABLES_TABLES_INTERNAL_H
#define MXGATE_TABLES_TABLES_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tables_env {
	MDB_env *env;
	pthread_mutex_t lock; /* mdb_dbi_open must not run in concurrent transactions */
	bool read_only;
};

struct tables_reader {
	struct tables_env *env;
	MDB_txn *txn;
	uint64_t epoch; /* bumped by every renew */
};

/* Read a whole regular file of at most max bytes (table, zone and check sources) into a
 * malloc'd buffer. Returns 0, or a negative errno with the reason in err (-EAGAIN when the
 * file changed while being read). */
int tables_read_file(const char *path, size_t max, char **data, size_t *len, char *err,
		     size_t errlen);

#endif
