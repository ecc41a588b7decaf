/*
 * mg_config.c -- the entity snapshot's lifetime and the loader's error
 * list.  See mg_config.h.
 *
 * A snapshot is one arena: entities, strings and arrays are allocated from
 * cf->pool by the loader and all die in mg_config_free().  The error list
 * is plain malloc'd lines because it outlives the (failed) snapshot and is
 * read by whoever called the loader -- the CLI, the Admin API's /config.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "mg_config.h"

#define MG_CONFIG_POOL_SIZE 16384

/* Every snapshot gets a higher version than the ones before it. */
static uint64_t mg_config_version_seq;

mg_config_t *
mg_config_new(void)
{
    mg_pool_t   *pool;
    mg_config_t *cf;

    pool = mg_pool_create(MG_CONFIG_POOL_SIZE);
    if (pool == NULL) {
        return NULL;
    }
    cf = mg_pool_calloc(pool, sizeof(mg_config_t));
    if (cf == NULL) {
        mg_pool_destroy(pool);
        return NULL;
    }
    cf->pool = pool;
    cf->version = __atomic_add_fetch(&mg_config_version_seq, 1,
                                     __ATOMIC_RELAXED);
    return cf;
}

void
mg_config_free(mg_config_t *cf)
{
    if (cf != NULL) {
        mg_pool_destroy(cf->pool);
    }
}

void
mg_config_errors_add(mg_config_errors_t *errs, const char *fmt, ...)
{
    va_list ap;
    char  **lines;
    char   *line;
    int     n;

    if (errs == NULL) {
        return;
    }
    va_start(ap, fmt);
    n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if (errs->n == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 16;

        lines = realloc(errs->lines, cap * sizeof(char *));
        if (lines == NULL) {
            free(line);
            return;
        }
        errs->lines = lines;
        errs->cap = cap;
    }
    errs->lines[errs->n++] = line;
}

void
mg_config_errors_free(mg_config_errors_t *errs)
{
    size_t i;

    if (errs == NULL) {
        return;
    }
    for (i = 0; i < errs->n; i++) {
        free(errs->lines[i]);
    }
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
    errs->cap = 0;
}
