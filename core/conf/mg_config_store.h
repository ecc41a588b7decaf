/*
 * mg_config_store.h -- a config snapshot built from the entity store
 * (core/store), see mg_config_store.c.
 */
#ifndef MG_CONFIG_STORE_H
#define MG_CONFIG_STORE_H

#include "mg_config.h"
#include "../store/mg_store.h"

/*
 * The store's entities as one flat declarative JSON document (malloc'd,
 * NUL-terminated, *len bytes), read from one snapshot whose version goes
 * to *version.  NULL with a message in err when the store cannot be read.
 */
char *mg_config_store_document(mg_store_t *s, uint64_t *version, size_t *len,
                               char *err, size_t errlen);

/* The snapshot of that document; NULL with every loader error in err. */
mg_config_t *mg_config_from_store(mg_store_t *s, uint64_t *version,
                                  char *err, size_t errlen);

#endif /* MG_CONFIG_STORE_H */
