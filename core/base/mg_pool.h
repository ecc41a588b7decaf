/*
 * mg_pool.h -- arenas: the request, connection and config lifetimes.
 *
 * An arena hands out memory by bumping a pointer in its current block and
 * frees everything at once in mg_pool_destroy() or mg_pool_reset().  Large
 * allocations (more than a quarter of the block) get their own malloc and
 * are freed with the arena.  Cleanups run in reverse order of registration
 * before any memory is released, so they may still read arena memory.
 *
 * Building with -DMG_DEBUG_PALLOC makes every allocation its own malloc so
 * AddressSanitizer sees overflows between neighbouring objects (nginx's
 * NGX_DEBUG_PALLOC).  Rejected: a general free list -- objects here die
 * together, and per-object free costs more than it saves.
 */
#ifndef MG_POOL_H
#define MG_POOL_H

#include "../mg_core.h"

typedef void (*mg_pool_cleanup_pt)(void *data);

mg_pool_t *mg_pool_create(size_t block_size);
void mg_pool_destroy(mg_pool_t *pool);

/* Free everything but the first block; cleanups run first. */
void mg_pool_reset(mg_pool_t *pool);

/* Return 16-byte aligned memory, or NULL when malloc fails. */
void *mg_pool_alloc(mg_pool_t *pool, size_t size);
void *mg_pool_calloc(mg_pool_t *pool, size_t size);

/* NUL-terminated copy of n bytes of s. */
char *mg_pool_strndup(mg_pool_t *pool, const char *s, size_t n);
mg_str_t mg_pool_str(mg_pool_t *pool, const char *s, size_t n);

/* Register fn(data) to run when the pool is reset or destroyed. */
int mg_pool_cleanup_add(mg_pool_t *pool, mg_pool_cleanup_pt fn, void *data);

/* Bytes handed out, for memory accounting and tests. */
size_t mg_pool_used(const mg_pool_t *pool);

#endif
