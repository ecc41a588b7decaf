/*
 * mg_shdict.c -- ngx.shared dictionaries: the shared mapping, each
 * dictionary's allocator, hash table and LRU list, and the FFI functions
 * of mg_lua_api.h ("shared dictionaries").  Lifecycle in mg_shdict.h.
 *
 * A dictionary is one page-aligned region of the mapping:
 *
 *   mg_shdict_sh_t | buckets[nbuckets] | page descriptors[npages] | pages
 *
 * linked only by 32-bit offsets from the region's start (0 = none), so
 * nothing in it depends on where it is mapped.  Items live in chunks of
 * 64..2048 bytes carved from pages of their size class, or in runs of
 * whole pages when larger: nginx's slab allocator in miniature -- a page
 * goes back to the free runs when its last chunk is freed, and free runs
 * coalesce, so memory moves between size classes.  Expiry is checked when
 * an item is touched, and each store first drops up to two expired items
 * from the LRU tail; a store that finds no room evicts from the LRU tail
 * (at most 30 items, as ngx_lua), safe_set and safe_add never evict.
 *
 * Locking: one mutex per dictionary, process-shared and robust.  When a
 * process dies holding it (SIGKILL, a crash), the next locker gets
 * EOWNERDEAD.  `busy` is set before the first write under the lock and
 * cleared at unlock: still set means the dead process may have left lists
 * half-linked, so the dictionary is emptied and rebuilt (logged at crit);
 * clear means it died before changing anything and the contents stand.
 * Rejected: nginx's spinlock plus a force-unlock by the master (the others
 * spin until the master notices the death, and the state is trusted
 * blindly), and one lock for every dictionary (unrelated counters would
 * contend).
 *
 * Time is CLOCK_MONOTONIC in milliseconds: the same clock in every
 * process, and immune to wall-clock steps.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "mg_shdict.h"
#include "../base/mg_log.h"
#include "../base/mg_pool.h"
#include "../event/mg_event.h"

#define MG_SHDICT_PAGE       4096u
#define MG_SHDICT_PAGE_SHIFT 12
#define MG_SHDICT_MIN_SHIFT  6           /* 64-byte chunks */
#define MG_SHDICT_MAX_SHIFT  11          /* 2048; larger: whole pages */
#define MG_SHDICT_NCLASSES   (MG_SHDICT_MAX_SHIFT - MG_SHDICT_MIN_SHIFT + 1)
#define MG_SHDICT_EVICT_MAX  30          /* items one store may evict */

/* page descriptor kinds */
#define MG_SHDICT_P_USED     0           /* inside an allocated run */
#define MG_SHDICT_P_FREE     1           /* head or tail of a free run */
#define MG_SHDICT_P_SLAB     2           /* chunks of one size class */
#define MG_SHDICT_P_LARGE    3           /* first page of a large item */

typedef struct {
    uint32_t next;      /* page + 1: free-run list or the class's partial */
    uint32_t prev;      /* list (0: none); meaningful in a run's head */
    uint32_t npages;    /* free run (head and tail) and large item length */
    uint16_t kind;
    uint16_t cls;       /* slab: size class */
    uint16_t used;      /* slab: chunks handed out */
    uint16_t free;      /* slab: first free chunk + 1 (0: page full) */
} mg_shdict_page_t;

typedef struct {
    pthread_mutex_t lock;
    uint32_t        busy;        /* written under the lock; see above */
    uint32_t        nbuckets;    /* a power of two */
    uint32_t        buckets;     /* offset of uint32_t[nbuckets] */
    uint32_t        meta;        /* offset of mg_shdict_page_t[npages] */
    uint32_t        pages;       /* offset of page 0 (page aligned) */
    uint32_t        npages;
    uint32_t        free_pages;
    uint32_t        free_runs;   /* page + 1 of the first free run */
    uint32_t        partial[MG_SHDICT_NCLASSES]; /* page + 1, chunks left */
    uint32_t        lru_head;    /* most recently used item */
    uint32_t        lru_tail;
    uint32_t        count;       /* items */
    uint32_t        recovered;   /* times a dead locker was cleaned up */
    uint64_t        size;        /* the region's bytes */
} mg_shdict_sh_t;

typedef struct {
    uint32_t hnext;     /* next item in the bucket */
    uint32_t lprev;     /* LRU neighbours: towards the head, the tail */
    uint32_t lnext;
    uint32_t hash;
    uint64_t expires;   /* ms (mg_shdict_now), 0: never */
    uint32_t flags;     /* the user's flags */
    uint32_t vlen;
    uint16_t klen;
    uint8_t  type;      /* MG_SHDICT_* */
    uint8_t  pad[5];
    /* klen key bytes, then vlen value bytes */
} mg_shdict_node_t;

_Static_assert(sizeof(mg_shdict_node_t) == 40, "node header size");

/* process-local description of one mapping (copied into workers by fork) */
typedef struct mg_shdict_zone_s mg_shdict_zone_t;
struct mg_shdict_zone_s {
    mg_shdict_zone_t *next;      /* live zones of this process */
    void             *base;      /* NULL when no dictionary is declared */
    size_t            len;
    int               refs;      /* configs bound to it */
    int               n;
    mg_shdict_decl_t  decl[MG_SHDICT_MAX];
    mg_shdict_sh_t   *sh[MG_SHDICT_MAX];
};

/* a config bound to its zone; released by a cleanup on the config's pool */
typedef struct mg_shdict_bind_s mg_shdict_bind_t;
struct mg_shdict_bind_s {
    mg_shdict_bind_t *next;      /* newest first */
    const mg_conf_t  *conf;
    mg_shdict_zone_t *zone;
};

static mg_shdict_zone_t *mg_shdict_zones;
static mg_shdict_bind_t *mg_shdict_binds;
static mg_shdict_zone_t *mg_shdict_cur;     /* a worker's, found once */
static int64_t           mg_shdict_skew;    /* ms added to the clock (tests) */
static char             *mg_shdict_buf;     /* values handed to Lua */
static size_t            mg_shdict_buf_cap;

#define MG_SH_AT(sh, off)  ((void *) ((char *) (sh) + (off)))
#define MG_SH_NODE(sh, off) ((mg_shdict_node_t *) MG_SH_AT(sh, off))
#define MG_SH_BUCKETS(sh)  ((uint32_t *) MG_SH_AT(sh, (sh)->buckets))
#define MG_SH_PAGE(sh, i)  (((mg_shdict_page_t *) MG_SH_AT(sh, (sh)->meta)) \
                            + (i))

static uint64_t
mg_shdict_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000
           + (uint64_t) mg_shdict_skew;
}

static uint32_t
mg_shdict_hash(const char *k, size_t kl)
{
    uint32_t h = 2166136261u;        /* FNV-1a */
    size_t   i;

    for (i = 0; i < kl; i++) {
        h = (h ^ (unsigned char) k[i]) * 16777619u;
    }
    return h;
}

static char *
mg_shdict_scratch(size_t n)
{
    size_t cap;
    char  *p;

    if (n <= mg_shdict_buf_cap && mg_shdict_buf != NULL) {
        return mg_shdict_buf;
    }
    cap = mg_max(n, mg_max(mg_shdict_buf_cap * 2, (size_t) 256));
    p = realloc(mg_shdict_buf, cap);
    if (p == NULL) {
        return NULL;
    }
    mg_shdict_buf = p;
    mg_shdict_buf_cap = cap;
    return p;
}

/* --- pages: free runs with boundary tags -------------------------------- */

static void
mg_shdict_run_link(mg_shdict_sh_t *sh, uint32_t i, uint32_t n)
{
    mg_shdict_page_t *h = MG_SH_PAGE(sh, i), *t = MG_SH_PAGE(sh, i + n - 1);

    t->kind = MG_SHDICT_P_FREE;
    t->npages = n;
    h->kind = MG_SHDICT_P_FREE;
    h->npages = n;
    h->prev = 0;
    h->next = sh->free_runs;
    if (sh->free_runs) {
        MG_SH_PAGE(sh, sh->free_runs - 1)->prev = i + 1;
    }
    sh->free_runs = i + 1;
}

static void
mg_shdict_run_unlink(mg_shdict_sh_t *sh, uint32_t i)
{
    mg_shdict_page_t *h = MG_SH_PAGE(sh, i);

    if (h->prev) {
        MG_SH_PAGE(sh, h->prev - 1)->next = h->next;
    } else {
        sh->free_runs = h->next;
    }
    if (h->next) {
        MG_SH_PAGE(sh, h->next - 1)->prev = h->prev;
    }
}

/* First fit, cut from the run's end (the run keeps its place in the list).
 * Returns the first page, or -1. */
static int64_t
mg_shdict_pages_alloc(mg_shdict_sh_t *sh, uint32_t n)
{
    mg_shdict_page_t *h;
    uint32_t          r, i, a;

    for (r = sh->free_runs; r; r = h->next) {
        i = r - 1;
        h = MG_SH_PAGE(sh, i);
        if (h->npages < n) {
            continue;
        }
        if (h->npages == n) {
            mg_shdict_run_unlink(sh, i);
            a = i;
        } else {
            h->npages -= n;
            MG_SH_PAGE(sh, i + h->npages - 1)->kind = MG_SHDICT_P_FREE;
            MG_SH_PAGE(sh, i + h->npages - 1)->npages = h->npages;
            a = i + h->npages;
        }
        /* the boundaries are what coalescing looks at */
        MG_SH_PAGE(sh, a)->kind = MG_SHDICT_P_USED;
        MG_SH_PAGE(sh, a + n - 1)->kind = MG_SHDICT_P_USED;
        sh->free_pages -= n;
        return a;
    }
    return -1;
}

static void
mg_shdict_pages_free(mg_shdict_sh_t *sh, uint32_t i, uint32_t n)
{
    mg_shdict_page_t *p;
    uint32_t          m;

    sh->free_pages += n;
    if (i > 0 && MG_SH_PAGE(sh, i - 1)->kind == MG_SHDICT_P_FREE) {
        p = MG_SH_PAGE(sh, i - 1);                 /* a free run's tail */
        m = p->npages;
        mg_shdict_run_unlink(sh, i - m);
        i -= m;
        n += m;
    }
    if (i + n < sh->npages && MG_SH_PAGE(sh, i + n)->kind == MG_SHDICT_P_FREE) {
        m = MG_SH_PAGE(sh, i + n)->npages;         /* a free run's head */
        mg_shdict_run_unlink(sh, i + n);
        n += m;
    }
    mg_shdict_run_link(sh, i, n);
}

/* --- chunks --------------------------------------------------------------- */

static void
mg_shdict_partial_unlink(mg_shdict_sh_t *sh, uint32_t c, uint32_t i)
{
    mg_shdict_page_t *p = MG_SH_PAGE(sh, i);

    if (p->prev) {
        MG_SH_PAGE(sh, p->prev - 1)->next = p->next;
    } else {
        sh->partial[c] = p->next;
    }
    if (p->next) {
        MG_SH_PAGE(sh, p->next - 1)->prev = p->prev;
    }
    p->next = p->prev = 0;
}

static void
mg_shdict_partial_link(mg_shdict_sh_t *sh, uint32_t c, uint32_t i)
{
    mg_shdict_page_t *p = MG_SH_PAGE(sh, i);

    p->prev = 0;
    p->next = sh->partial[c];
    if (p->next) {
        MG_SH_PAGE(sh, p->next - 1)->prev = i + 1;
    }
    sh->partial[c] = i + 1;
}

/* Offset of size bytes in the region, or 0 when there is no room. */
static uint32_t
mg_shdict_alloc(mg_shdict_sh_t *sh, size_t size)
{
    mg_shdict_page_t *p;
    uint32_t          shift, c, i, k, nchunks;
    int64_t           a;
    char             *page;

    if (size > (size_t) MG_SHDICT_PAGE / 2) {
        size_t n = (size + MG_SHDICT_PAGE - 1) >> MG_SHDICT_PAGE_SHIFT;
        if (n > sh->free_pages) {
            return 0;
        }
        a = mg_shdict_pages_alloc(sh, (uint32_t) n);
        if (a < 0) {
            return 0;
        }
        p = MG_SH_PAGE(sh, a);
        p->kind = MG_SHDICT_P_LARGE;
        p->npages = (uint32_t) n;
        return sh->pages + (uint32_t) a * MG_SHDICT_PAGE;
    }
    for (shift = MG_SHDICT_MIN_SHIFT; ((size_t) 1 << shift) < size; shift++) {
        /* void */
    }
    c = shift - MG_SHDICT_MIN_SHIFT;
    if (sh->partial[c] == 0) {
        a = mg_shdict_pages_alloc(sh, 1);
        if (a < 0) {
            return 0;
        }
        i = (uint32_t) a;
        p = MG_SH_PAGE(sh, i);
        p->kind = MG_SHDICT_P_SLAB;
        p->cls = (uint16_t) c;
        p->used = 0;
        page = MG_SH_AT(sh, sh->pages + i * MG_SHDICT_PAGE);
        nchunks = MG_SHDICT_PAGE >> shift;
        for (k = 0; k < nchunks; k++) {
            *(uint16_t *) (page + (k << shift)) =
                (uint16_t) (k + 1 < nchunks ? k + 2 : 0);
        }
        p->free = 1;
        mg_shdict_partial_link(sh, c, i);
    }
    i = sh->partial[c] - 1;
    p = MG_SH_PAGE(sh, i);
    k = (uint32_t) p->free - 1;
    page = MG_SH_AT(sh, sh->pages + i * MG_SHDICT_PAGE);
    p->free = *(uint16_t *) (page + (k << shift));
    p->used++;
    if (p->free == 0) {
        mg_shdict_partial_unlink(sh, c, i);
    }
    return sh->pages + i * MG_SHDICT_PAGE + (k << shift);
}

static void
mg_shdict_free(mg_shdict_sh_t *sh, uint32_t off)
{
    mg_shdict_page_t *p;
    uint32_t          i, k, shift;
    int               was_full;

    i = (off - sh->pages) >> MG_SHDICT_PAGE_SHIFT;
    p = MG_SH_PAGE(sh, i);
    if (p->kind == MG_SHDICT_P_LARGE) {
        mg_shdict_pages_free(sh, i, p->npages);
        return;
    }
    shift = (uint32_t) p->cls + MG_SHDICT_MIN_SHIFT;
    k = ((off - sh->pages) & (MG_SHDICT_PAGE - 1)) >> shift;
    *(uint16_t *) MG_SH_AT(sh, off) = p->free;
    was_full = p->free == 0;
    p->free = (uint16_t) (k + 1);
    p->used--;
    if (p->used == 0) {
        if (!was_full) {
            mg_shdict_partial_unlink(sh, p->cls, i);
        }
        mg_shdict_pages_free(sh, i, 1);
    } else if (was_full) {
        mg_shdict_partial_link(sh, p->cls, i);
    }
}

/* --- region: layout, reset, lock ------------------------------------------ */

/* Empty every structure but the lock. */
static void
mg_shdict_reset(mg_shdict_sh_t *sh)
{
    memset(MG_SH_BUCKETS(sh), 0, sizeof(uint32_t) * sh->nbuckets);
    memset(MG_SH_PAGE(sh, 0), 0, sizeof(mg_shdict_page_t) * sh->npages);
    memset(sh->partial, 0, sizeof(sh->partial));
    sh->free_runs = 0;
    sh->free_pages = sh->npages;
    sh->lru_head = sh->lru_tail = 0;
    sh->count = 0;
    mg_shdict_run_link(sh, 0, sh->npages);
    __atomic_store_n(&sh->busy, 0, __ATOMIC_SEQ_CST);
}

static int
mg_shdict_region_init(mg_shdict_sh_t *sh, size_t size, char *err,
                      size_t errlen)
{
    pthread_mutexattr_t attr;
    size_t              off;
    uint32_t            nb = 64;
    int                 rc;

    memset(sh, 0, sizeof(*sh));
    sh->size = size;
    while ((size_t) nb * 512 < size && nb < (1u << 22)) {
        nb <<= 1;                    /* about one bucket per 512 bytes */
    }
    sh->nbuckets = nb;
    off = (sizeof(*sh) + 7) & ~(size_t) 7;
    sh->buckets = (uint32_t) off;
    off += sizeof(uint32_t) * nb;
    off = (off + 7) & ~(size_t) 7;
    sh->meta = (uint32_t) off;
    /* one page of slack for aligning page 0 */
    sh->npages = (uint32_t) ((size - off - MG_SHDICT_PAGE)
                             / (MG_SHDICT_PAGE + sizeof(mg_shdict_page_t)));
    off += sizeof(mg_shdict_page_t) * sh->npages;
    sh->pages = (uint32_t) ((off + MG_SHDICT_PAGE - 1)
                            & ~(size_t) (MG_SHDICT_PAGE - 1));
    mg_shdict_reset(sh);

    if ((rc = pthread_mutexattr_init(&attr)) != 0
        || (rc = pthread_mutexattr_setpshared(&attr,
                                              PTHREAD_PROCESS_SHARED)) != 0
        || (rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) != 0
        || (rc = pthread_mutex_init(&sh->lock, &attr)) != 0)
    {
        snprintf(err, errlen, "lua_shared_dict: cannot create a "
                 "process-shared robust mutex: %s", strerror(rc));
        return MG_ERROR;
    }
    pthread_mutexattr_destroy(&attr);
    return MG_OK;
}

/*
 * The zone this process uses: a worker's is the one its config is bound
 * to (found once); elsewhere (the master building a generation's VM,
 * tests) the newest binding's.
 */
static mg_shdict_zone_t *
mg_shdict_zone(void)
{
    mg_shdict_bind_t *b;

    if (mg_shdict_cur != NULL) {
        return mg_shdict_cur;
    }
    if (mg_worker != NULL) {
        for (b = mg_shdict_binds; b != NULL; b = b->next) {
            if (b->conf == mg_worker->conf) {
                mg_shdict_cur = b->zone;
                return b->zone;
            }
        }
    }
    return mg_shdict_binds ? mg_shdict_binds->zone : NULL;
}

static void
mg_shdict_recover(mg_shdict_zone_t *z, int d)
{
    mg_shdict_sh_t *sh = z->sh[d];

    sh->recovered++;
    if (__atomic_load_n(&sh->busy, __ATOMIC_SEQ_CST)) {
        mg_log_crit("shared dict \"%s\": a process died while changing it; "
                    "the dictionary was emptied", z->decl[d].name);
        mg_shdict_reset(sh);
    } else {
        mg_log_warn("shared dict \"%s\": a process died holding its lock "
                    "before changing anything; contents kept",
                    z->decl[d].name);
    }
}

/* Lock dictionary d; NULL when there is no such dictionary. */
static mg_shdict_sh_t *
mg_shdict_lock(int d)
{
    mg_shdict_zone_t *z = mg_shdict_zone();
    mg_shdict_sh_t   *sh;
    int               rc;

    if (z == NULL || d < 0 || d >= z->n) {
        return NULL;
    }
    sh = z->sh[d];
    rc = pthread_mutex_lock(&sh->lock);
    if (rc == EOWNERDEAD) {
        mg_shdict_recover(z, d);
        pthread_mutex_consistent(&sh->lock);
    } else if (rc != 0) {
        mg_log_crit("shared dict \"%s\": lock failed: %s", z->decl[d].name,
                    strerror(rc));
        return NULL;
    }
    return sh;
}

/* Before the first write under the lock. */
static inline void
mg_shdict_dirty(mg_shdict_sh_t *sh)
{
    __atomic_store_n(&sh->busy, 1, __ATOMIC_SEQ_CST);
}

static void
mg_shdict_unlock(mg_shdict_sh_t *sh)
{
    __atomic_store_n(&sh->busy, 0, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&sh->lock);
}

/* --- items ---------------------------------------------------------------- */

static inline char *
mg_shdict_key(mg_shdict_node_t *node)
{
    return (char *) (node + 1);
}

static inline int
mg_shdict_expired(const mg_shdict_node_t *node, uint64_t now)
{
    return node->expires != 0 && node->expires <= now;
}

static uint32_t
mg_shdict_lookup(mg_shdict_sh_t *sh, uint32_t hash, const char *k, size_t kl)
{
    uint32_t          off = MG_SH_BUCKETS(sh)[hash & (sh->nbuckets - 1)];
    mg_shdict_node_t *node;

    while (off) {
        node = MG_SH_NODE(sh, off);
        if (node->hash == hash && node->klen == kl
            && memcmp(mg_shdict_key(node), k, kl) == 0)
        {
            return off;
        }
        off = node->hnext;
    }
    return 0;
}

static void
mg_shdict_lru_unlink(mg_shdict_sh_t *sh, uint32_t off)
{
    mg_shdict_node_t *n = MG_SH_NODE(sh, off);

    if (n->lprev) {
        MG_SH_NODE(sh, n->lprev)->lnext = n->lnext;
    } else {
        sh->lru_head = n->lnext;
    }
    if (n->lnext) {
        MG_SH_NODE(sh, n->lnext)->lprev = n->lprev;
    } else {
        sh->lru_tail = n->lprev;
    }
}

static void
mg_shdict_lru_push(mg_shdict_sh_t *sh, uint32_t off)
{
    mg_shdict_node_t *n = MG_SH_NODE(sh, off);

    n->lprev = 0;
    n->lnext = sh->lru_head;
    if (sh->lru_head) {
        MG_SH_NODE(sh, sh->lru_head)->lprev = off;
    } else {
        sh->lru_tail = off;
    }
    sh->lru_head = off;
}

static void
mg_shdict_lru_touch(mg_shdict_sh_t *sh, uint32_t off)
{
    if (sh->lru_head != off) {
        mg_shdict_lru_unlink(sh, off);
        mg_shdict_lru_push(sh, off);
    }
}

static void
mg_shdict_node_delete(mg_shdict_sh_t *sh, uint32_t off)
{
    mg_shdict_node_t *node = MG_SH_NODE(sh, off);
    uint32_t         *pp = &MG_SH_BUCKETS(sh)[node->hash & (sh->nbuckets - 1)];

    while (*pp != off) {
        pp = &MG_SH_NODE(sh, *pp)->hnext;
    }
    *pp = node->hnext;
    mg_shdict_lru_unlink(sh, off);
    sh->count--;
    mg_shdict_free(sh, off);
}

/*
 * ngx_lua's expire: with n == 1 drop up to two expired items from the LRU
 * tail; with n == 0 drop the tail item whatever it holds, then up to two
 * expired ones.  Returns how many went.
 */
static int
mg_shdict_expire_tail(mg_shdict_sh_t *sh, int n, uint64_t now)
{
    mg_shdict_node_t *node;
    int               freed = 0;

    while (n < 3 && sh->lru_tail) {
        node = MG_SH_NODE(sh, sh->lru_tail);
        if (n++ != 0 && !mg_shdict_expired(node, now)) {
            break;
        }
        mg_shdict_node_delete(sh, sh->lru_tail);
        freed++;
    }
    return freed;
}

/* A new item's memory, evicting least recently used items unless safe. */
static uint32_t
mg_shdict_node_alloc(mg_shdict_sh_t *sh, size_t size, int safe,
                     int *forcible, uint64_t now)
{
    uint32_t off;
    int      i;

    if (size > (size_t) sh->npages * MG_SHDICT_PAGE) {
        return 0;                    /* evicting everything would not do */
    }
    off = mg_shdict_alloc(sh, size);
    if (off || safe) {
        return off;
    }
    for (i = 0; i < MG_SHDICT_EVICT_MAX; i++) {
        if (mg_shdict_expire_tail(sh, 0, now) == 0) {
            break;
        }
        *forcible = 1;
        off = mg_shdict_alloc(sh, size);
        if (off) {
            return off;
        }
    }
    return 0;
}

static void
mg_shdict_node_value(mg_shdict_node_t *node, int type, double num,
                     const char *s, size_t sl)
{
    char *v = mg_shdict_key(node) + node->klen;

    node->type = (uint8_t) type;
    switch (type) {
    case MG_SHDICT_STRING:
        if (sl) {
            memcpy(v, s, sl);
        }
        node->vlen = (uint32_t) sl;
        break;
    case MG_SHDICT_NUMBER:
        memcpy(v, &num, sizeof(double));
        node->vlen = sizeof(double);
        break;
    default:                         /* boolean */
        v[0] = num != 0;
        node->vlen = 1;
    }
}

static double
mg_shdict_node_num(mg_shdict_node_t *node)
{
    double num;

    memcpy(&num, mg_shdict_key(node) + node->klen, sizeof(double));
    return num;
}

/* Insert a new item (the key is known to be absent). */
static int
mg_shdict_insert(mg_shdict_sh_t *sh, uint32_t hash, const char *k, size_t kl,
                 int type, double num, const char *s, size_t vlen,
                 uint64_t expires, int flags, int safe, int *forcible,
                 uint64_t now)
{
    mg_shdict_node_t *node;
    uint32_t          off, *bucket;

    off = mg_shdict_node_alloc(sh, sizeof(mg_shdict_node_t) + kl + vlen, safe,
                               forcible, now);
    if (off == 0) {
        return MG_ERROR;
    }
    node = MG_SH_NODE(sh, off);
    memset(node, 0, sizeof(*node));
    node->hash = hash;
    node->klen = (uint16_t) kl;
    node->expires = expires;
    node->flags = (uint32_t) flags;
    memcpy(mg_shdict_key(node), k, kl);
    mg_shdict_node_value(node, type, num, s, vlen);
    bucket = &MG_SH_BUCKETS(sh)[hash & (sh->nbuckets - 1)];
    node->hnext = *bucket;
    *bucket = off;
    mg_shdict_lru_push(sh, off);
    sh->count++;
    return MG_OK;
}

static const char *
mg_shdict_key_check(const char *k, size_t kl)
{
    if (k == NULL || kl == 0) {
        return "empty key";
    }
    if (kl > MG_SHDICT_KEY_MAX) {
        return "key too long";
    }
    return NULL;
}

static uint64_t
mg_shdict_expires(double exptime, uint64_t now)
{
    return exptime > 0 ? now + (uint64_t) (exptime * 1000) : 0;
}

/* --- the FFI API (mg_lua_api.h) ------------------------------------------ */

int
mg_shdict_count(void)
{
    mg_shdict_zone_t *z = mg_shdict_zone();

    return z ? z->n : 0;
}

int
mg_shdict_name(int d, const char **p, size_t *n)
{
    mg_shdict_zone_t *z = mg_shdict_zone();

    if (z == NULL || d < 0 || d >= z->n) {
        return MG_DECLINED;
    }
    *p = z->decl[d].name;
    *n = strlen(z->decl[d].name);
    return MG_OK;
}

int
mg_shdict_find(const char *name, size_t nl)
{
    mg_shdict_zone_t *z = mg_shdict_zone();
    int               d;

    for (d = 0; z != NULL && d < z->n; d++) {
        if (strlen(z->decl[d].name) == nl
            && memcmp(z->decl[d].name, name, nl) == 0)
        {
            return d;
        }
    }
    return MG_DECLINED;
}

int
mg_shdict_get(int d, const char *k, size_t kl, int get_stale, int *type,
              double *num, const char **str, size_t *sl, int *flags,
              int *stale)
{
    mg_shdict_sh_t   *sh;
    mg_shdict_node_t *node;
    uint32_t          off;
    uint64_t          now;
    char             *buf;

    *type = MG_SHDICT_NIL;
    *num = 0;
    *str = NULL;
    *sl = 0;
    *flags = 0;
    *stale = 0;
    if (mg_shdict_key_check(k, kl) != NULL
        || (sh = mg_shdict_lock(d)) == NULL)
    {
        return MG_ERROR;
    }
    now = mg_shdict_now();
    off = mg_shdict_lookup(sh, mg_shdict_hash(k, kl), k, kl);
    if (off == 0) {
        mg_shdict_unlock(sh);
        return MG_DECLINED;
    }
    node = MG_SH_NODE(sh, off);
    if (mg_shdict_expired(node, now)) {
        if (!get_stale) {
            mg_shdict_unlock(sh);
            return MG_DECLINED;
        }
        *stale = 1;
    } else {
        mg_shdict_dirty(sh);
        mg_shdict_lru_touch(sh, off);
    }
    switch (node->type) {
    case MG_SHDICT_STRING:
        buf = mg_shdict_scratch(node->vlen + 1);
        if (buf == NULL) {
            mg_shdict_unlock(sh);
            return MG_ERROR;
        }
        memcpy(buf, mg_shdict_key(node) + node->klen, node->vlen);
        *str = buf;
        *sl = node->vlen;
        break;
    case MG_SHDICT_NUMBER:
        *num = mg_shdict_node_num(node);
        break;
    default:
        *num = mg_shdict_key(node)[node->klen] != 0;
    }
    *type = node->type;
    *flags = (int) node->flags;
    mg_shdict_unlock(sh);
    return MG_OK;
}

int
mg_shdict_store(int d, int op, const char *k, size_t kl, int type, double num,
                const char *s, size_t sl, double exptime, int flags,
                int *forcible, const char **err)
{
    mg_shdict_sh_t   *sh;
    mg_shdict_node_t *node;
    uint32_t          off, hash;
    uint64_t          now, expires;
    size_t            vlen;
    int               live, rc;

    *forcible = 0;
    *err = mg_shdict_key_check(k, kl);
    if (*err != NULL) {
        return MG_ERROR;
    }
    switch (type) {
    case MG_SHDICT_NIL:
        if (op & (MG_SHDICT_ADD | MG_SHDICT_REPLACE)) {
            *err = "attempt to add or replace nil values";
            return MG_ERROR;
        }
        vlen = 0;
        break;
    case MG_SHDICT_BOOLEAN: vlen = 1; break;
    case MG_SHDICT_NUMBER:  vlen = sizeof(double); break;
    case MG_SHDICT_STRING:
        if (s == NULL && sl != 0) {
            *err = "bad value";
            return MG_ERROR;
        }
        vlen = sl;
        break;
    default:
        *err = "bad value type";
        return MG_ERROR;
    }
    if (!(exptime >= 0)) {
        *err = "bad \"exptime\" argument";
        return MG_ERROR;
    }
    if (vlen > UINT32_MAX - sizeof(mg_shdict_node_t) - MG_SHDICT_KEY_MAX) {
        *err = "no memory";
        return MG_ERROR;
    }
    if ((sh = mg_shdict_lock(d)) == NULL) {
        *err = "no such dictionary";
        return MG_ERROR;
    }
    now = mg_shdict_now();
    expires = mg_shdict_expires(exptime, now);
    hash = mg_shdict_hash(k, kl);
    mg_shdict_dirty(sh);
    mg_shdict_expire_tail(sh, 1, now);
    off = mg_shdict_lookup(sh, hash, k, kl);
    live = off && !mg_shdict_expired(MG_SH_NODE(sh, off), now);
    if ((op & MG_SHDICT_REPLACE) && !live) {
        mg_shdict_unlock(sh);
        *err = "not found";
        return MG_DECLINED;
    }
    if ((op & MG_SHDICT_ADD) && live) {
        mg_shdict_unlock(sh);
        *err = "exists";
        return MG_DECLINED;
    }
    if (off) {
        node = MG_SH_NODE(sh, off);
        if (type != MG_SHDICT_NIL && node->vlen == vlen) {
            /* same size: in place, as ngx_lua */
            mg_shdict_node_value(node, type, num, s, vlen);
            node->expires = expires;
            node->flags = (uint32_t) flags;
            mg_shdict_lru_touch(sh, off);
            mg_shdict_unlock(sh);
            return MG_OK;
        }
        mg_shdict_node_delete(sh, off);
    }
    if (type == MG_SHDICT_NIL) {
        mg_shdict_unlock(sh);
        return MG_OK;
    }
    rc = mg_shdict_insert(sh, hash, k, kl, type, num, s, vlen, expires, flags,
                          op & MG_SHDICT_SAFE, forcible, now);
    mg_shdict_unlock(sh);
    if (rc != MG_OK) {
        *err = "no memory";
        return MG_ERROR;
    }
    return MG_OK;
}

int
mg_shdict_incr(int d, const char *k, size_t kl, double *value, int has_init,
               double init, double init_ttl, int *forcible, const char **err)
{
    mg_shdict_sh_t   *sh;
    mg_shdict_node_t *node;
    uint32_t          off, hash;
    uint64_t          now;
    double            num;
    int               rc;

    *forcible = 0;
    *err = mg_shdict_key_check(k, kl);
    if (*err != NULL) {
        return MG_ERROR;
    }
    if (!(init_ttl >= 0)) {
        *err = "bad \"init_ttl\" argument";
        return MG_ERROR;
    }
    if ((sh = mg_shdict_lock(d)) == NULL) {
        *err = "no such dictionary";
        return MG_ERROR;
    }
    now = mg_shdict_now();
    hash = mg_shdict_hash(k, kl);
    mg_shdict_dirty(sh);
    mg_shdict_expire_tail(sh, 1, now);
    off = mg_shdict_lookup(sh, hash, k, kl);
    if (off == 0 || mg_shdict_expired(MG_SH_NODE(sh, off), now)) {
        if (!has_init) {
            mg_shdict_unlock(sh);
            *err = "not found";
            return MG_DECLINED;
        }
        num = init + *value;
        if (off) {
            node = MG_SH_NODE(sh, off);
            if (node->vlen == sizeof(double)) {
                /* an expired item of the right size: reuse it */
                mg_shdict_node_value(node, MG_SHDICT_NUMBER, num, NULL, 0);
                node->expires = mg_shdict_expires(init_ttl, now);
                node->flags = 0;
                mg_shdict_lru_touch(sh, off);
                mg_shdict_unlock(sh);
                *value = num;
                return MG_OK;
            }
            mg_shdict_node_delete(sh, off);
        }
        rc = mg_shdict_insert(sh, hash, k, kl, MG_SHDICT_NUMBER, num, NULL,
                              sizeof(double), mg_shdict_expires(init_ttl, now),
                              0, 0, forcible, now);
        mg_shdict_unlock(sh);
        if (rc != MG_OK) {
            *err = "no memory";
            return MG_ERROR;
        }
        *value = num;
        return MG_OK;
    }
    node = MG_SH_NODE(sh, off);
    if (node->type != MG_SHDICT_NUMBER) {
        mg_shdict_unlock(sh);
        *err = "not a number";
        return MG_ERROR;
    }
    num = mg_shdict_node_num(node) + *value;
    memcpy(mg_shdict_key(node) + node->klen, &num, sizeof(double));
    mg_shdict_lru_touch(sh, off);
    mg_shdict_unlock(sh);
    *value = num;
    return MG_OK;
}

int
mg_shdict_ttl(int d, const char *k, size_t kl, double *ttl)
{
    mg_shdict_sh_t   *sh;
    mg_shdict_node_t *node;
    uint32_t          off;

    *ttl = 0;
    if (mg_shdict_key_check(k, kl) != NULL
        || (sh = mg_shdict_lock(d)) == NULL)
    {
        return MG_ERROR;
    }
    off = mg_shdict_lookup(sh, mg_shdict_hash(k, kl), k, kl);
    if (off == 0) {
        mg_shdict_unlock(sh);
        return MG_DECLINED;
    }
    node = MG_SH_NODE(sh, off);
    if (node->expires != 0) {
        *ttl = (double) ((int64_t) node->expires - (int64_t) mg_shdict_now())
               / 1000.0;
    }
    mg_shdict_unlock(sh);
    return MG_OK;
}

int
mg_shdict_expire(int d, const char *k, size_t kl, double exptime)
{
    mg_shdict_sh_t *sh;
    uint32_t        off;

    if (mg_shdict_key_check(k, kl) != NULL || !(exptime >= 0)
        || (sh = mg_shdict_lock(d)) == NULL)
    {
        return MG_ERROR;
    }
    off = mg_shdict_lookup(sh, mg_shdict_hash(k, kl), k, kl);
    if (off == 0) {
        mg_shdict_unlock(sh);
        return MG_DECLINED;
    }
    mg_shdict_dirty(sh);
    MG_SH_NODE(sh, off)->expires = mg_shdict_expires(exptime, mg_shdict_now());
    mg_shdict_unlock(sh);
    return MG_OK;
}

int
mg_shdict_flush_all(int d)
{
    mg_shdict_sh_t *sh = mg_shdict_lock(d);
    uint32_t        off;

    if (sh == NULL) {
        return MG_ERROR;
    }
    mg_shdict_dirty(sh);
    for (off = sh->lru_head; off; off = MG_SH_NODE(sh, off)->lnext) {
        MG_SH_NODE(sh, off)->expires = 1;          /* long gone */
    }
    mg_shdict_unlock(sh);
    return MG_OK;
}

int
mg_shdict_flush_expired(int d, int max)
{
    mg_shdict_sh_t *sh = mg_shdict_lock(d);
    uint32_t        off, prev;
    uint64_t        now;
    int             n = 0;

    if (sh == NULL) {
        return MG_ERROR;
    }
    now = mg_shdict_now();
    mg_shdict_dirty(sh);
    for (off = sh->lru_tail; off && (max <= 0 || n < max); off = prev) {
        prev = MG_SH_NODE(sh, off)->lprev;
        if (mg_shdict_expired(MG_SH_NODE(sh, off), now)) {
            mg_shdict_node_delete(sh, off);
            n++;
        }
    }
    mg_shdict_unlock(sh);
    return n;
}

int
mg_shdict_get_keys(int d, int max, const char **p, size_t *n)
{
    mg_shdict_sh_t   *sh = mg_shdict_lock(d);
    mg_shdict_node_t *node;
    uint32_t          off;
    uint64_t          now;
    size_t            len = 0;
    int               count = 0;
    char             *buf;

    *p = "";
    *n = 0;
    if (sh == NULL) {
        return MG_ERROR;
    }
    now = mg_shdict_now();
    for (off = sh->lru_head; off && (max <= 0 || count < max);
         off = node->lnext)
    {
        node = MG_SH_NODE(sh, off);
        if (!mg_shdict_expired(node, now)) {
            len += 6 + node->klen;   /* "65535:" */
            count++;
        }
    }
    buf = mg_shdict_scratch(len + 1);
    if (buf == NULL) {
        mg_shdict_unlock(sh);
        return MG_ERROR;
    }
    len = 0;
    count = 0;
    for (off = sh->lru_head; off && (max <= 0 || count < max);
         off = node->lnext)
    {
        node = MG_SH_NODE(sh, off);
        if (!mg_shdict_expired(node, now)) {
            len += (size_t) sprintf(buf + len, "%u:", (unsigned) node->klen);
            memcpy(buf + len, mg_shdict_key(node), node->klen);
            len += node->klen;
            count++;
        }
    }
    mg_shdict_unlock(sh);
    *p = buf;
    *n = len;
    return count;
}

double
mg_shdict_capacity(int d)
{
    mg_shdict_zone_t *z = mg_shdict_zone();

    if (z == NULL || d < 0 || d >= z->n) {
        return 0;
    }
    return (double) z->decl[d].size;
}

double
mg_shdict_free_space(int d)
{
    mg_shdict_zone_t *z = mg_shdict_zone();

    if (z == NULL || d < 0 || d >= z->n) {
        return 0;
    }
    return (double) __atomic_load_n(&z->sh[d]->free_pages, __ATOMIC_RELAXED)
           * MG_SHDICT_PAGE;
}

/* --- declarations and zones ----------------------------------------------- */

static int
mg_shdict_parse_size(const char *p, size_t n, size_t *out)
{
    size_t   i, mult = 1;
    uint64_t v = 0;

    if (n > 0) {
        switch (p[n - 1]) {
        case 'k': case 'K': mult = 1024; n--; break;
        case 'm': case 'M': mult = 1024 * 1024; n--; break;
        case 'g': case 'G': mult = 1024 * 1024 * 1024; n--; break;
        }
    }
    if (n == 0 || n > 12) {
        return MG_ERROR;
    }
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return MG_ERROR;
        }
        v = v * 10 + (uint64_t) (p[i] - '0');
    }
    if (v > UINT64_MAX / mult) {
        return MG_ERROR;
    }
    *out = (size_t) (v * mult);
    return MG_OK;
}

int
mg_shdict_parse(const char *value, mg_shdict_decl_t *decl, int *n, char *err,
                size_t errlen)
{
    const char *p = value, *e, *name, *size;
    size_t      nl, sl, bytes;
    int         entry = 0, i;

    *n = 0;
    memset(decl, 0, sizeof(*decl) * MG_SHDICT_MAX);
    if (p == NULL) {
        return MG_OK;
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    while (*p != '\0') {
        entry++;
        for (e = p; *e != '\0' && *e != ','; e++) {
            /* void */
        }
        while (p < e && (*p == ' ' || *p == '\t')) {
            p++;
        }
        name = p;
        while (p < e && *p != ' ' && *p != '\t') {
            p++;
        }
        nl = (size_t) (p - name);
        while (p < e && (*p == ' ' || *p == '\t')) {
            p++;
        }
        size = p;
        while (p < e && *p != ' ' && *p != '\t') {
            p++;
        }
        sl = (size_t) (p - size);
        while (p < e && (*p == ' ' || *p == '\t')) {
            p++;
        }
        if (nl == 0 || sl == 0 || p != e) {
            snprintf(err, errlen, "lua_shared_dict: entry %d \"%.*s\" is not "
                     "\"name size\"", entry, (int) (e - name), name);
            return MG_ERROR;
        }
        for (i = 0; i < (int) nl; i++) {
            char c = name[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                  || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            {
                break;
            }
        }
        if (i < (int) nl || nl > MG_SHDICT_NAME_MAX) {
            snprintf(err, errlen, "lua_shared_dict: invalid name \"%.*s\" "
                     "(letters, digits, '_' and '-', at most %d bytes)",
                     (int) nl, name, MG_SHDICT_NAME_MAX);
            return MG_ERROR;
        }
        if (mg_shdict_parse_size(size, sl, &bytes) != MG_OK) {
            snprintf(err, errlen, "lua_shared_dict: \"%.*s\": invalid size "
                     "\"%.*s\" (bytes, or a number with k, m or g)", (int) nl,
                     name, (int) sl, size);
            return MG_ERROR;
        }
        if (bytes < MG_SHDICT_MIN_SIZE || bytes > MG_SHDICT_MAX_SIZE) {
            snprintf(err, errlen, "lua_shared_dict: \"%.*s\": size %.*s is "
                     "too %s (32k..2047m)", (int) nl, name, (int) sl, size,
                     bytes < MG_SHDICT_MIN_SIZE ? "small" : "large");
            return MG_ERROR;
        }
        for (i = 0; i < *n; i++) {
            if (strlen(decl[i].name) == nl
                && memcmp(decl[i].name, name, nl) == 0)
            {
                snprintf(err, errlen, "lua_shared_dict: \"%.*s\" is declared "
                         "twice", (int) nl, name);
                return MG_ERROR;
            }
        }
        if (*n == MG_SHDICT_MAX) {
            snprintf(err, errlen, "lua_shared_dict: at most %d dictionaries",
                     MG_SHDICT_MAX);
            return MG_ERROR;
        }
        memcpy(decl[*n].name, name, nl);
        decl[*n].size = bytes;
        (*n)++;
        p = *e == ',' ? e + 1 : e;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
    }
    return MG_OK;
}

static void
mg_shdict_zone_destroy(mg_shdict_zone_t *z)
{
    mg_shdict_zone_t **pp;

    for (pp = &mg_shdict_zones; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == z) {
            *pp = z->next;
            break;
        }
    }
    if (mg_shdict_cur == z) {
        mg_shdict_cur = NULL;
    }
    if (z->base != NULL) {
        munmap(z->base, z->len);
    }
    free(z);
}

static mg_shdict_zone_t *
mg_shdict_zone_create(const mg_shdict_decl_t *decl, int n, char *err,
                      size_t errlen)
{
    mg_shdict_zone_t *z;
    size_t            off;
    int               i;

    z = calloc(1, sizeof(*z));
    if (z == NULL) {
        snprintf(err, errlen, "lua_shared_dict: out of memory");
        return NULL;
    }
    z->n = n;
    for (i = 0; i < n; i++) {
        z->decl[i] = decl[i];
        z->len += (decl[i].size + MG_SHDICT_PAGE - 1)
                  & ~(size_t) (MG_SHDICT_PAGE - 1);
    }
    if (z->len > 0) {
        z->base = mmap(NULL, z->len, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (z->base == MAP_FAILED) {
            snprintf(err, errlen, "lua_shared_dict: mmap(%zu bytes) failed: "
                     "%s", z->len, strerror(errno));
            free(z);
            return NULL;
        }
    }
    for (i = 0, off = 0; i < n; i++) {
        size_t len = (decl[i].size + MG_SHDICT_PAGE - 1)
                     & ~(size_t) (MG_SHDICT_PAGE - 1);
        z->sh[i] = (mg_shdict_sh_t *) ((char *) z->base + off);
        if (mg_shdict_region_init(z->sh[i], len, err, errlen) != MG_OK) {
            munmap(z->base, z->len);
            free(z);
            return NULL;
        }
        off += len;
    }
    z->next = mg_shdict_zones;
    mg_shdict_zones = z;
    return z;
}

static void
mg_shdict_unbind(void *data)
{
    mg_shdict_bind_t  *b = data, **pp;
    mg_shdict_zone_t  *z = b->zone;

    for (pp = &mg_shdict_binds; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    free(b);
    if (--z->refs == 0) {
        mg_shdict_zone_destroy(z);
    }
}

static int
mg_shdict_same(const mg_shdict_zone_t *z, const mg_shdict_decl_t *decl, int n)
{
    int i;

    if (z->n != n) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (z->decl[i].size != decl[i].size
            || strcmp(z->decl[i].name, decl[i].name) != 0)
        {
            return 0;
        }
    }
    return 1;
}

/* Append `name` of `size` bytes to decl unless it is declared already. */
static int
mg_shdict_implicit_add(mg_shdict_decl_t *decl, int *n, const char *name,
                       size_t size, const char *prop, char *err,
                       size_t errlen)
{
    int i;

    for (i = 0; i < *n; i++) {
        if (strcmp(decl[i].name, name) == 0) {
            return MG_OK;            /* lua_shared_dict's entry wins */
        }
    }
    if (size < MG_SHDICT_MIN_SIZE || size > MG_SHDICT_MAX_SIZE) {
        snprintf(err, errlen, "%s: %zu bytes is too %s for the \"%s\" "
                 "shared dictionary (32k..2047m, or 0 for none)", prop, size,
                 size < MG_SHDICT_MIN_SIZE ? "small" : "large", name);
        return MG_ERROR;
    }
    if (*n == MG_SHDICT_MAX) {
        snprintf(err, errlen, "lua_shared_dict: at most %d dictionaries "
                 "with \"%s\"", MG_SHDICT_MAX, name);
        return MG_ERROR;
    }
    snprintf(decl[*n].name, sizeof(decl[*n].name), "%s", name);
    decl[*n].size = size;
    (*n)++;
    return MG_OK;
}

int
mg_shdict_declare(const mg_conf_t *conf, mg_shdict_decl_t *decl, int *n,
                  char *err, size_t errlen)
{
    if (mg_shdict_parse(conf->lua_shared_dict, decl, n, err, errlen)
        != MG_OK)
    {
        return MG_ERROR;
    }
    if (conf->mem_cache_size == 0) {
        return MG_OK;                /* no shared level for kong.cache */
    }
    if (mg_shdict_implicit_add(decl, n, MG_SHDICT_DB_CACHE,
                               conf->mem_cache_size, "mem_cache_size", err,
                               errlen) != MG_OK
        || mg_shdict_implicit_add(decl, n, MG_SHDICT_LOCKS,
                                  MG_SHDICT_LOCKS_SIZE, "lua_shared_dict",
                                  err, errlen) != MG_OK)
    {
        return MG_ERROR;
    }
    return MG_OK;
}

int
mg_shdict_create_all(const mg_conf_t *conf, char *err, size_t errlen)
{
    mg_shdict_decl_t  decl[MG_SHDICT_MAX];
    mg_shdict_zone_t *z;
    mg_shdict_bind_t *b;
    int               n;

    if (mg_shdict_declare(conf, decl, &n, err, errlen) != MG_OK) {
        return MG_ERROR;
    }
    for (z = mg_shdict_zones; z != NULL; z = z->next) {
        if (mg_shdict_same(z, decl, n)) {
            break;                   /* unchanged: keep the contents */
        }
    }
    if (z == NULL) {
        z = mg_shdict_zone_create(decl, n, err, errlen);
        if (z == NULL) {
            return MG_ERROR;
        }
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL || mg_pool_cleanup_add(conf->pool, mg_shdict_unbind, b)
                     != MG_OK)
    {
        free(b);
        if (z->refs == 0) {
            mg_shdict_zone_destroy(z);
        }
        snprintf(err, errlen, "lua_shared_dict: out of memory");
        return MG_ERROR;
    }
    b->conf = conf;
    b->zone = z;
    b->next = mg_shdict_binds;
    mg_shdict_binds = b;
    z->refs++;
    return MG_OK;
}
