/*
 * mg_pool.c -- see mg_pool.h.  Blocks form a singly linked list; the
 * first block is embedded with the pool header so a small request arena
 * costs one malloc.
 */
#include <stdlib.h>
#include "mg_pool.h"

#define MG_POOL_ALIGN 16

typedef struct mg_pool_block_s {
    struct mg_pool_block_s *next;
    char                   *last;
    char                   *end;
} mg_pool_block_t;

typedef struct mg_pool_large_s {
    struct mg_pool_large_s *next;
} mg_pool_large_t;

typedef struct mg_pool_cleanup_s {
    struct mg_pool_cleanup_s *next;
    mg_pool_cleanup_pt        fn;
    void                     *data;
} mg_pool_cleanup_t;

struct mg_pool_s {
    mg_pool_block_t    first;      /* must stay first: data follows header */
    mg_pool_block_t   *current;
    mg_pool_large_t   *large;
    mg_pool_cleanup_t *cleanups;
    size_t             block_size;
    size_t             used;
};

#define mg_align_up(n) (((n) + MG_POOL_ALIGN - 1) & ~(size_t) (MG_POOL_ALIGN - 1))

static char *
mg_pool_first_data(mg_pool_t *pool)
{
    return (char *) pool + mg_align_up(sizeof(mg_pool_t));
}

mg_pool_t *
mg_pool_create(size_t block_size)
{
    mg_pool_t *pool;
    size_t     hdr = mg_align_up(sizeof(mg_pool_t));

    if (block_size < 256) {
        block_size = 256;
    }
    pool = malloc(hdr + block_size);
    if (pool == NULL) {
        return NULL;
    }
    pool->first.next = NULL;
    pool->first.last = mg_pool_first_data(pool);
    pool->first.end = pool->first.last + block_size;
    pool->current = &pool->first;
    pool->large = NULL;
    pool->cleanups = NULL;
    pool->block_size = block_size;
    pool->used = 0;
    return pool;
}

static void
mg_pool_release(mg_pool_t *pool)
{
    mg_pool_cleanup_t *c;
    mg_pool_large_t   *l, *ln;
    mg_pool_block_t   *b, *bn;

    /* Cleanups first: they may read memory the arena still owns. */
    while ((c = pool->cleanups) != NULL) {
        pool->cleanups = c->next;
        c->fn(c->data);
    }
    for (l = pool->large; l; l = ln) {
        ln = l->next;
        free(l);
    }
    pool->large = NULL;
    for (b = pool->first.next; b; b = bn) {
        bn = b->next;
        free(b);
    }
    pool->first.next = NULL;
}

void
mg_pool_destroy(mg_pool_t *pool)
{
    if (pool == NULL) {
        return;
    }
    mg_pool_release(pool);
    free(pool);
}

void
mg_pool_reset(mg_pool_t *pool)
{
    mg_pool_release(pool);
    pool->first.last = mg_pool_first_data(pool);
    pool->current = &pool->first;
    pool->used = 0;
}

static void *
mg_pool_alloc_large(mg_pool_t *pool, size_t size)
{
    mg_pool_large_t *l;
    size_t           hdr = mg_align_up(sizeof(mg_pool_large_t));

    if (size > SIZE_MAX - hdr) {
        return NULL;
    }
    l = malloc(hdr + size);
    if (l == NULL) {
        return NULL;
    }
    l->next = pool->large;
    pool->large = l;
    return (char *) l + hdr;
}

void *
mg_pool_alloc(mg_pool_t *pool, size_t size)
{
    mg_pool_block_t *b;
    char            *p;
    size_t           hdr;

    pool->used += size;
#ifdef MG_DEBUG_PALLOC
    return mg_pool_alloc_large(pool, size ? size : 1);
#endif
    size = mg_align_up(size ? size : 1);
    if (size > pool->block_size / 4) {
        return mg_pool_alloc_large(pool, size);
    }
    b = pool->current;
    if ((size_t) (b->end - b->last) >= size) {
        p = b->last;
        b->last += size;
        return p;
    }
    hdr = mg_align_up(sizeof(mg_pool_block_t));
    b = malloc(hdr + pool->block_size);
    if (b == NULL) {
        return NULL;
    }
    b->last = (char *) b + hdr + size;
    b->end = (char *) b + hdr + pool->block_size;
    b->next = NULL;
    pool->current->next = b;
    pool->current = b;
    return (char *) b + hdr;
}

void *
mg_pool_calloc(mg_pool_t *pool, size_t size)
{
    void *p = mg_pool_alloc(pool, size);
    if (p) {
        memset(p, 0, size);
    }
    return p;
}

char *
mg_pool_strndup(mg_pool_t *pool, const char *s, size_t n)
{
    char *p = mg_pool_alloc(pool, n + 1);
    if (p == NULL) {
        return NULL;
    }
    if (n) {
        memcpy(p, s, n);
    }
    p[n] = '\0';
    return p;
}

mg_str_t
mg_pool_str(mg_pool_t *pool, const char *s, size_t n)
{
    mg_str_t r;
    r.data = mg_pool_strndup(pool, s, n);
    r.len = r.data ? n : 0;
    return r;
}

int
mg_pool_cleanup_add(mg_pool_t *pool, mg_pool_cleanup_pt fn, void *data)
{
    mg_pool_cleanup_t *c = mg_pool_alloc(pool, sizeof(*c));
    if (c == NULL) {
        return MG_ERROR;
    }
    c->fn = fn;
    c->data = data;
    c->next = pool->cleanups;
    pool->cleanups = c;
    return MG_OK;
}

size_t
mg_pool_used(const mg_pool_t *pool)
{
    return pool->used;
}
