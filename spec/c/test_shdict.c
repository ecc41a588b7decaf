/*
 * test_shdict.c -- ngx.shared dictionaries (core/store/mg_shdict.c): the
 * lua_shared_dict parser, zones bound to configs (kept across a reload
 * with the same list, new otherwise), every operation with ngx_lua's
 * semantics, TTLs on a clock the test moves (mg_shdict_skew), LRU eviction
 * and "no memory" from safe stores, the allocator's invariants under random
 * load, exact counters from 4 processes, and a process killed while it
 * holds a dictionary's lock (before and while changing it).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include "store/mg_shdict.c"
#include "tap.h"

/* ---- helpers ------------------------------------------------------------ */

static int
use(const char *spec)
{
    mg_shdict_decl_t  decl[MG_SHDICT_MAX];
    mg_shdict_zone_t *z;
    char              err[256];
    int               n;

    if (mg_shdict_parse(spec, decl, &n, err, sizeof(err)) != MG_OK
        || (z = mg_shdict_zone_create(decl, n, err, sizeof(err))) == NULL)
    {
        printf("# %s\n", err);
        return MG_ERROR;
    }
    mg_shdict_cur = z;
    return MG_OK;
}

static int
D(const char *name)
{
    return mg_shdict_find(name, strlen(name));
}

static mg_shdict_sh_t *
SH(int d)
{
    return mg_shdict_cur->sh[d];
}

static int
put(int d, int op, const char *k, const char *v, double exptime, int flags,
    int *forcible, const char **err)
{
    int         f;
    const char *e;

    return mg_shdict_store(d, op, k, strlen(k), MG_SHDICT_STRING, 0, v,
                           strlen(v), exptime, flags, forcible ? forcible : &f,
                           err ? err : &e);
}

static int
put_num(int d, const char *k, double v, double exptime)
{
    int         f;
    const char *e;

    return mg_shdict_store(d, 0, k, strlen(k), MG_SHDICT_NUMBER, v, NULL, 0,
                           exptime, 0, &f, &e);
}

static int
del(int d, const char *k)
{
    int         f;
    const char *e;

    return mg_shdict_store(d, 0, k, strlen(k), MG_SHDICT_NIL, 0, NULL, 0, 0,
                           0, &f, &e);
}

/* the string value of k, or NULL (in a static buffer) */
static const char *
get_str(int d, const char *k, int stale_ok, int *stale)
{
    static char  buf[2048];
    int          type, flags, st;
    double       num;
    const char  *s;
    size_t       sl;

    if (mg_shdict_get(d, k, strlen(k), stale_ok, &type, &num, &s, &sl, &flags,
                      &st) != MG_OK || type != MG_SHDICT_STRING
        || sl >= sizeof(buf))
    {
        return NULL;
    }
    memcpy(buf, s, sl);
    buf[sl] = '\0';
    if (stale) {
        *stale = st;
    }
    return buf;
}

static int
get_num(int d, const char *k, double *num)
{
    int         type, flags, st;
    const char *s;
    size_t      sl;

    if (mg_shdict_get(d, k, strlen(k), 0, &type, num, &s, &sl, &flags, &st)
        != MG_OK)
    {
        return MG_DECLINED;
    }
    return type == MG_SHDICT_NUMBER ? MG_OK : MG_ERROR;
}

static int
incr(int d, const char *k, double by, int has_init, double init,
     double init_ttl, double *out, const char **err)
{
    int         f;
    const char *e;

    *out = by;
    return mg_shdict_incr(d, k, strlen(k), out, has_init, init, init_ttl, &f,
                          err ? err : &e);
}

static double
ttl(int d, const char *k)
{
    double t = -1000;

    if (mg_shdict_ttl(d, k, strlen(k), &t) != MG_OK) {
        return -1000;
    }
    return t;
}

static void
advance(int64_t ms)
{
    mg_shdict_skew += ms;
}

/*
 * Walk dictionary d's structures: free runs, slab pages, hash chains and
 * the LRU list must agree with the counters.  Returns a reason or NULL.
 */
static const char *
invariants(int d)
{
    mg_shdict_sh_t   *sh = SH(d);
    mg_shdict_page_t *p;
    uint32_t          r, free_pages = 0, count = 0, off, prev = 0, b, i;
    uint32_t          used_chunks = 0, items_small = 0, c;

    for (r = sh->free_runs; r; r = p->next) {
        p = MG_SH_PAGE(sh, r - 1);
        if (p->kind != MG_SHDICT_P_FREE) return "free run head not free";
        if (MG_SH_PAGE(sh, r - 1 + p->npages - 1)->kind != MG_SHDICT_P_FREE
            || MG_SH_PAGE(sh, r - 1 + p->npages - 1)->npages != p->npages)
        {
            return "free run tail";
        }
        if (r - 1 + p->npages < sh->npages
            && MG_SH_PAGE(sh, r - 1 + p->npages)->kind == MG_SHDICT_P_FREE)
        {
            return "free runs not coalesced";
        }
        free_pages += p->npages;
    }
    if (free_pages != sh->free_pages) return "free page count";
    for (c = 0; c < MG_SHDICT_NCLASSES; c++) {
        for (r = sh->partial[c]; r; r = p->next) {
            p = MG_SH_PAGE(sh, r - 1);
            if (p->kind != MG_SHDICT_P_SLAB || p->cls != c || p->free == 0) {
                return "partial list";
            }
        }
    }
    for (i = 0; i < sh->npages; i++) {
        p = MG_SH_PAGE(sh, i);
        if (p->kind == MG_SHDICT_P_SLAB) {
            used_chunks += p->used;
        }
    }
    for (off = sh->lru_head; off; off = MG_SH_NODE(sh, off)->lnext) {
        if (MG_SH_NODE(sh, off)->lprev != prev) return "lru back link";
        prev = off;
        count++;
        if (sizeof(mg_shdict_node_t) + MG_SH_NODE(sh, off)->klen
            + MG_SH_NODE(sh, off)->vlen <= MG_SHDICT_PAGE / 2)
        {
            items_small++;
        }
        if (count > sh->count) return "lru loop";
    }
    if (sh->lru_tail != prev) return "lru tail";
    if (count != sh->count) return "lru count";
    if (items_small != used_chunks) return "chunks in use";
    count = 0;
    for (b = 0; b < sh->nbuckets; b++) {
        for (off = MG_SH_BUCKETS(sh)[b]; off;
             off = MG_SH_NODE(sh, off)->hnext)
        {
            if ((MG_SH_NODE(sh, off)->hash & (sh->nbuckets - 1)) != b) {
                return "bucket";
            }
            count++;
        }
    }
    if (count != sh->count) return "hash count";
    return NULL;
}

/* ---- tests --------------------------------------------------------------- */

static void
test_parse(void)
{
    mg_shdict_decl_t decl[MG_SHDICT_MAX];
    char             err[256];
    int              n;

    is_int(mg_shdict_parse("kong 5m, kong_locks 8m, kong_rate_limiting_counters"
                           " 12m, moongate_cache 16m", decl, &n, err,
                           sizeof(err)), MG_OK, "parse the default");
    is_int(n, 4, "four dictionaries");
    is_str(decl[2].name, "kong_rate_limiting_counters", "a name");
    is_int(decl[3].size, 16 * 1024 * 1024, "a size");
    is_int(mg_shdict_parse("  ", decl, &n, err, sizeof(err)), MG_OK, "empty");
    is_int(n, 0, "no dictionary");
    is_int(mg_shdict_parse("a 40000,b-2 64K,", decl, &n, err, sizeof(err)),
           MG_OK, "bytes, K, a trailing comma");
    ok(n == 2 && decl[0].size == 40000 && decl[1].size == 65536, "parsed");

    is_int(mg_shdict_parse("kong", decl, &n, err, sizeof(err)), MG_ERROR,
           "a name without size");
    ok(strstr(err, "entry 1 \"kong\" is not \"name size\"") != NULL, "%s", err);
    is_int(mg_shdict_parse("a 1m, kong 5x", decl, &n, err, sizeof(err)),
           MG_ERROR, "a bad size");
    ok(strstr(err, "\"kong\": invalid size \"5x\"") != NULL, "%s", err);
    is_int(mg_shdict_parse("kong 1k", decl, &n, err, sizeof(err)), MG_ERROR,
           "too small");
    ok(strstr(err, "too small") != NULL, "%s", err);
    is_int(mg_shdict_parse("kong 3g", decl, &n, err, sizeof(err)), MG_ERROR,
           "too large");
    is_int(mg_shdict_parse("a 1m, a 2m", decl, &n, err, sizeof(err)),
           MG_ERROR, "declared twice");
    ok(strstr(err, "\"a\" is declared twice") != NULL, "%s", err);
    is_int(mg_shdict_parse("a/b 1m", decl, &n, err, sizeof(err)), MG_ERROR,
           "a bad name");
    ok(strstr(err, "invalid name \"a/b\"") != NULL, "%s", err);
    is_int(mg_shdict_parse("a 1m,, b 1m", decl, &n, err, sizeof(err)),
           MG_ERROR, "an empty entry");
    is_int(mg_shdict_parse("a 1m 2m", decl, &n, err, sizeof(err)), MG_ERROR,
           "three words");
}

static void
test_zones(void)
{
    mg_conf_t        *c1, *c2, *c3;
    mg_shdict_zone_t *z1;
    char              err[1024];
    double            v;

    setenv("MOONGATE_MEM_CACHE_SIZE", "0", 1);     /* only these two */
    setenv("MOONGATE_LUA_SHARED_DICT", "one 64k, two 64k", 1);
    c1 = mg_conf_load(NULL, NULL, err, sizeof(err));
    c2 = mg_conf_load(NULL, NULL, err, sizeof(err));
    setenv("MOONGATE_LUA_SHARED_DICT", "one 64k, two 128k", 1);
    c3 = mg_conf_load(NULL, NULL, err, sizeof(err));
    unsetenv("MOONGATE_LUA_SHARED_DICT");
    if (!ok(c1 && c2 && c3, "configs load")) {
        printf("# %s\n", err);
        return;
    }
    is_int(mg_shdict_create_all(c1, err, sizeof(err)), MG_OK, "create");
    is_int(mg_shdict_count(), 2, "two dictionaries");
    is_int(D("two"), 1, "found by name");
    is_int(D("three"), MG_DECLINED, "an undeclared name");
    z1 = mg_shdict_zone();
    put_num(D("one"), "n", 7, 0);

    is_int(mg_shdict_create_all(c2, err, sizeof(err)), MG_OK, "a reload");
    ok(mg_shdict_zone() == z1, "the same list keeps the mapping");
    ok(get_num(D("one"), "n", &v) == MG_OK && v == 7, "and its contents");
    mg_conf_free(c1);
    ok(mg_shdict_zones == z1 && z1->refs == 1, "still used by the new one");

    is_int(mg_shdict_create_all(c3, err, sizeof(err)), MG_OK,
           "a reload with another size");
    ok(mg_shdict_zone() != z1, "gets a new mapping");
    is_int(get_num(D("one"), "n", &v), MG_DECLINED, "which starts empty");
    is_int((long long) mg_shdict_capacity(D("two")), 128 * 1024, "capacity");
    mg_conf_free(c2);
    mg_conf_free(c3);
    ok(mg_shdict_zones == NULL && mg_shdict_binds == NULL,
       "freeing the configs unmaps");

    setenv("MOONGATE_LUA_SHARED_DICT", "bad", 1);
    c1 = mg_conf_load(NULL, NULL, err, sizeof(err));
    unsetenv("MOONGATE_LUA_SHARED_DICT");
    unsetenv("MOONGATE_MEM_CACHE_SIZE");
    is_int(mg_shdict_create_all(c1, err, sizeof(err)), MG_ERROR,
           "a bad list refuses the start");
    ok(strncmp(err, "lua_shared_dict: ", 17) == 0, "%s", err);
    mg_conf_free(c1);
}

/* kong.cache's dictionaries join lua_shared_dict's (mg_shdict_declare) */
static int
declare(const char *dicts, const char *mem, mg_shdict_decl_t *decl, int *n,
        char *err, size_t errlen)
{
    mg_conf_t *c;
    int        rc;

    if (dicts) {
        setenv("MOONGATE_LUA_SHARED_DICT", dicts, 1);
    }
    if (mem) {
        setenv("MOONGATE_MEM_CACHE_SIZE", mem, 1);
    }
    c = mg_conf_load(NULL, NULL, err, errlen);
    unsetenv("MOONGATE_LUA_SHARED_DICT");
    unsetenv("MOONGATE_MEM_CACHE_SIZE");
    if (c == NULL) {
        return -100;
    }
    rc = mg_shdict_declare(c, decl, n, err, errlen);
    mg_conf_free(c);
    return rc;
}

static void
test_declare(void)
{
    mg_shdict_decl_t decl[MG_SHDICT_MAX];
    char             err[1024];
    int              n = -1;

    is_int(declare(NULL, NULL, decl, &n, err, sizeof(err)), MG_OK,
           "the defaults");
    is_int(n, 5, "lua_shared_dict's four and kong_db_cache");
    is_str(decl[4].name, "kong_db_cache", "kong_db_cache");
    is_int((long long) decl[4].size, 128 * 1024 * 1024,
           "of mem_cache_size's default, 128m");
    is_str(decl[1].name, "kong_locks", "kong_locks from lua_shared_dict");

    is_int(declare("mine 1m", "1m", decl, &n, err, sizeof(err)), MG_OK,
           "a list without kong.cache's");
    is_int(n, 3, "gets both");
    ok(strcmp(decl[1].name, "kong_db_cache") == 0
       && decl[1].size == 1024 * 1024, "kong_db_cache: mem_cache_size");
    ok(strcmp(decl[2].name, "kong_locks") == 0
       && decl[2].size == 8 * 1024 * 1024, "kong_locks: 8m");

    is_int(declare("kong_db_cache 2m, kong_locks 64k", "1m", decl, &n, err,
                   sizeof(err)), MG_OK, "lua_shared_dict naming them");
    ok(n == 2 && decl[0].size == 2 * 1024 * 1024 && decl[1].size == 65536,
       "keeps its sizes");

    is_int(declare("", "0", decl, &n, err, sizeof(err)), MG_OK,
           "mem_cache_size = 0");
    is_int(n, 0, "declares nothing");

    is_int(declare(NULL, "16k", decl, &n, err, sizeof(err)), MG_ERROR,
           "mem_cache_size too small");
    ok(strncmp(err, "mem_cache_size: ", 16) == 0, "%s", err);
    is_int(declare(NULL, "3g", decl, &n, err, sizeof(err)), MG_ERROR,
           "mem_cache_size too large");
    ok(strstr(err, "too large") != NULL, "%s", err);
}

static void
test_ops(void)
{
    int          d = D("a"), f, type, flags, st;
    const char  *err, *s;
    size_t       sl;
    double       num;
    char         key[65537];

    is_str(get_str(d, "missing", 0, NULL), NULL, "get: absent");
    is_int(put(d, 0, "k", "hello", 0, 0, NULL, NULL), MG_OK, "set");
    is_str(get_str(d, "k", 0, NULL), "hello", "get");
    is_int(put(d, 0, "k", "world", 0, 42, NULL, NULL), MG_OK,
           "set, same size");
    mg_shdict_get(d, "k", 1, 0, &type, &num, &s, &sl, &flags, &st);
    ok(type == MG_SHDICT_STRING && sl == 5 && memcmp(s, "world", 5) == 0
       && flags == 42, "in place, with flags");
    is_int(put(d, 0, "k", "a longer value", 0, 0, NULL, NULL), MG_OK,
           "set, another size");
    is_str(get_str(d, "k", 0, NULL), "a longer value", "moved");
    is_int(put(d, 0, "k", "", 0, 0, NULL, NULL), MG_OK, "an empty string");
    is_str(get_str(d, "k", 0, NULL), "", "kept");

    put_num(d, "n", 3.5, 0);
    ok(get_num(d, "n", &num) == MG_OK && num == 3.5, "a number");
    mg_shdict_store(d, 0, "b", 1, MG_SHDICT_BOOLEAN, 1, NULL, 0, 0, 0, &f,
                    &err);
    mg_shdict_get(d, "b", 1, 0, &type, &num, &s, &sl, &flags, &st);
    ok(type == MG_SHDICT_BOOLEAN && num == 1, "true");
    mg_shdict_store(d, 0, "b", 1, MG_SHDICT_BOOLEAN, 0, NULL, 0, 0, 0, &f,
                    &err);
    mg_shdict_get(d, "b", 1, 0, &type, &num, &s, &sl, &flags, &st);
    ok(type == MG_SHDICT_BOOLEAN && num == 0, "false");

    is_int(put(d, MG_SHDICT_ADD, "k", "x", 0, 0, NULL, &err), MG_DECLINED,
           "add: a live key");
    is_str(err, "exists", "exists");
    is_int(put(d, MG_SHDICT_ADD, "new", "x", 0, 0, NULL, NULL), MG_OK,
           "add: a new key");
    is_int(put(d, MG_SHDICT_REPLACE, "nope", "x", 0, 0, NULL, &err),
           MG_DECLINED, "replace: an absent key");
    is_str(err, "not found", "not found");
    is_int(put(d, MG_SHDICT_REPLACE, "new", "y", 0, 0, NULL, NULL), MG_OK,
           "replace");
    is_str(get_str(d, "new", 0, NULL), "y", "replaced");
    is_int(mg_shdict_store(d, MG_SHDICT_ADD, "z", 1, MG_SHDICT_NIL, 0, NULL,
                           0, 0, 0, &f, &err), MG_ERROR, "add nil");
    is_str(err, "attempt to add or replace nil values", "refused");
    is_int(del(d, "new"), MG_OK, "delete (set nil)");
    is_str(get_str(d, "new", 0, NULL), NULL, "deleted");
    is_int(del(d, "new"), MG_OK, "delete an absent key");

    is_int(put(d, 0, "", "x", 0, 0, NULL, &err), MG_ERROR, "an empty key");
    is_str(err, "empty key", "empty key");
    memset(key, 'k', sizeof(key));
    key[65536] = '\0';
    is_int(put(d, 0, key, "x", 0, 0, NULL, &err), MG_ERROR, "65536 bytes");
    is_str(err, "key too long", "key too long");
    key[65535] = '\0';
    is_int(put(d, 0, key, "x", 0, 0, NULL, NULL), MG_OK, "a 65535-byte key");
    is_str(get_str(d, key, 0, NULL), "x", "found");
    del(d, key);
    is_int(mg_shdict_get(7, "k", 1, 0, &type, &num, &s, &sl, &flags, &st),
           MG_ERROR, "no such dictionary");
    ok(invariants(d) == NULL, "invariants: %s", invariants(d) ?: "ok");
}

static void
test_incr(void)
{
    int         d = D("a");
    const char *err;
    double      v;

    is_int(incr(d, "c", 1, 0, 0, 0, &v, &err), MG_DECLINED, "incr: absent");
    is_str(err, "not found", "not found");
    is_int(incr(d, "c", 1, 1, 10, 0, &v, NULL), MG_OK, "with init");
    ok(v == 11, "init + value");
    incr(d, "c", 5, 0, 0, 0, &v, NULL);
    ok(v == 16, "adds");
    incr(d, "c", -20.5, 1, 100, 0, &v, NULL);
    ok(v == -4.5, "init ignored when present, negative and fractions");
    ok(ttl(d, "c") == 0, "no ttl");
    put(d, 0, "s", "str", 0, 0, NULL, NULL);
    is_int(incr(d, "s", 1, 1, 0, 0, &v, &err), MG_ERROR, "a string");
    is_str(err, "not a number", "not a number");

    is_int(incr(d, "t", 1, 1, 0, 0.5, &v, NULL), MG_OK, "init_ttl");
    ok(v == 1 && ttl(d, "t") > 0.4 && ttl(d, "t") <= 0.5, "expires in 0.5 s");
    advance(300);
    incr(d, "t", 1, 1, 0, 0.5, &v, NULL);
    ok(v == 2 && ttl(d, "t") <= 0.2, "incr keeps the ttl");
    advance(300);
    is_int(get_num(d, "t", &v), MG_DECLINED, "expired");
    is_int(incr(d, "t", 1, 0, 0, 0, &v, &err), MG_DECLINED,
           "an expired key without init");
    incr(d, "t", 1, 1, 0, 0, &v, NULL);
    ok(v == 1 && ttl(d, "t") == 0, "re-initialised, no ttl");
    ok(invariants(d) == NULL, "invariants: %s", invariants(d) ?: "ok");
}

static void
test_ttl(void)
{
    int         d = D("a"), stale = 0, i;
    double      t, v;
    const char *p;
    size_t      n;

    put(d, 0, "e", "v", 1.5, 0, NULL, NULL);
    t = ttl(d, "e");
    ok(t > 1.4 && t <= 1.5, "ttl %.3f", t);
    advance(1000);
    t = ttl(d, "e");
    ok(t > 0.4 && t <= 0.5, "ttl after 1 s %.3f", t);
    advance(600);
    is_str(get_str(d, "e", 0, NULL), NULL, "get: expired");
    is_str(get_str(d, "e", 1, &stale), "v", "get_stale");
    is_int(stale, 1, "stale");
    ok(ttl(d, "e") < 0, "a negative ttl");
    is_int(put(d, MG_SHDICT_REPLACE, "e", "w", 0, 0, NULL, NULL), MG_DECLINED,
           "replace: expired is absent");
    is_int(put(d, MG_SHDICT_ADD, "e", "w", 0, 0, NULL, NULL), MG_OK,
           "add: expired is absent");
    is_int(mg_shdict_expire(d, "e", 1, 2), MG_OK, "expire");
    ok(ttl(d, "e") > 1.9, "new ttl");
    is_int(mg_shdict_expire(d, "e", 1, 0), MG_OK, "expire 0");
    ok(ttl(d, "e") == 0, "never");
    is_int(mg_shdict_expire(d, "zz", 2, 1), MG_DECLINED, "expire: absent");
    is_int(mg_shdict_ttl(d, "zz", 2, &t), MG_DECLINED, "ttl: absent");

    mg_shdict_flush_all(d);
    is_str(get_str(d, "e", 0, NULL), NULL, "flush_all expires");
    is_str(get_str(d, "e", 1, NULL), "w", "stale until flushed");
    put(d, 0, "live1", "1", 0, 0, NULL, NULL);
    put(d, 0, "live2", "2", 10, 0, NULL, NULL);
    ok(mg_shdict_flush_expired(d, 1) == 1, "flush_expired(1)");
    ok(mg_shdict_flush_expired(d, 0) > 1, "flush_expired(0)");
    is_str(get_str(d, "e", 1, NULL), NULL, "gone");
    is_int(SH(d)->count, 2, "the live ones stay");

    for (i = 0; i < 5; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        put(d, 0, k, "x", 0, 0, NULL, NULL);
    }
    is_int(mg_shdict_get_keys(d, 0, &p, &n), 7, "get_keys(0)");
    ok(n > 6 && memcmp(p, "2:k42:k3", 8) == 0, "MRU first: %.*s", (int) n, p);
    is_int(mg_shdict_get_keys(d, 2, &p, &n), 2, "get_keys(2)");
    ok(n == 8 && memcmp(p, "2:k42:k3", 8) == 0, "two records");
    advance(20000);
    is_int(mg_shdict_get_keys(d, 0, &p, &n), 6, "skips expired keys");
    (void) v;
}

static void
test_memory(void)
{
    int         d = D("a"), small = D("small"), f = 0, i, evicted;
    double      cap = mg_shdict_free_space(d), after;
    const char *err;
    char       *big, k[16], val[1001];

    ok(mg_shdict_capacity(d) == 256 * 1024, "capacity");
    big = malloc(100000);
    memset(big, 'b', 99999);
    big[99999] = '\0';
    is_int(put(d, 0, "big", big, 0, 0, NULL, NULL), MG_OK, "a 100k value");
    after = mg_shdict_free_space(d);
    ok(after <= cap - 100000, "takes pages: %.0f -> %.0f", cap, after);
    {
        int         type, flags, st;
        double      num;
        const char *s;
        size_t      sl;
        mg_shdict_get(d, "big", 3, 0, &type, &num, &s, &sl, &flags, &st);
        ok(sl == 99999 && memcmp(s, big, sl) == 0, "read back whole");
    }
    del(d, "big");
    ok(mg_shdict_free_space(d) == cap, "pages come back");
    free(big);

    /* "small" is 32k: 6 pages of two 2048-byte chunks each */
    memset(val, 'v', 1000);
    val[1000] = '\0';
    for (i = 0; i < 10; i++) {
        snprintf(k, sizeof(k), "e%d", i);
        put(small, 0, k, val, 0, 0, &f, NULL);
        if (f) break;
    }
    is_int(i, 10, "ten items fit without eviction");
    get_str(small, "e0", 0, NULL);            /* e0 is now recently used */
    evicted = 0;
    for (i = 10; i < 16; i++) {
        snprintf(k, sizeof(k), "e%d", i);
        is_int(put(small, 0, k, val, 0, 0, &f, NULL), MG_OK, "set %s", k);
        evicted += f;
    }
    ok(evicted > 0, "set reported forcible");
    ok(get_str(small, "e0", 0, NULL) != NULL, "a recently used item stays");
    ok(get_str(small, "e1", 0, NULL) == NULL, "the least recently used went");
    ok(get_str(small, "e15", 0, NULL) != NULL, "the new one is there");

    i = (int) SH(small)->count;
    is_int(put(small, MG_SHDICT_SAFE, "s1", val, 0, 0, &f, &err), MG_ERROR,
           "safe_set when full");
    is_str(err, "no memory", "no memory");
    ok(f == 0 && (int) SH(small)->count == i, "nothing evicted");
    is_int(put(small, MG_SHDICT_SAFE | MG_SHDICT_ADD, "s1", val, 0, 0, &f,
               &err), MG_ERROR, "safe_add when full");
    is_str(err, "no memory", "no memory");

    big = malloc(40000);
    memset(big, 'x', 39999);
    big[39999] = '\0';
    i = (int) SH(small)->count;
    is_int(put(small, 0, "huge", big, 0, 0, &f, &err), MG_ERROR,
           "a value larger than the dictionary");
    ok(f == 0 && (int) SH(small)->count == i, "evicts nothing");
    free(big);
    ok(invariants(small) == NULL, "invariants: %s",
       invariants(small) ?: "ok");
}

/* random sets and deletes against a model; safe_set so nothing is evicted
 * behind the model's back (a failed store deletes the old value, as ngx) */
static void
test_random(void)
{
    enum { NKEYS = 300, ROUNDS = 30000 };
    static char *model[NKEYS];
    int          d = D("a"), i, bad = 0, nomem = 0;
    double       cap = mg_shdict_free_space(d);
    char         k[16], *v;
    const char  *err, *why = NULL;
    unsigned     seed = 12345;

    mg_shdict_flush_all(d);
    mg_shdict_flush_expired(d, 0);
    cap = mg_shdict_free_space(d);
    v = malloc(9001);
    for (i = 0; i < ROUNDS && !why; i++) {
        int    key = (int) (rand_r(&seed) % NKEYS);
        size_t len = (rand_r(&seed) % 4 == 0) ? rand_r(&seed) % 9000
                                              : rand_r(&seed) % 300;
        snprintf(k, sizeof(k), "key%d", key);
        if (rand_r(&seed) % 5 == 0) {
            del(d, k);
            free(model[key]);
            model[key] = NULL;
        } else {
            memset(v, 'a' + (int) (len % 26), len);
            v[len] = '\0';
            free(model[key]);
            model[key] = NULL;
            if (put(d, MG_SHDICT_SAFE, k, v, 0, 0, NULL, &err) == MG_OK) {
                model[key] = strdup(v);
            } else {
                nomem++;
            }
        }
        if (i % 1000 == 0) {
            why = invariants(d);
        }
    }
    ok(why == NULL, "invariants hold under load: %s", why ?: "ok");
    for (i = 0; i < NKEYS; i++) {
        int         type, flags, st;
        double      num;
        const char *s;
        size_t      sl;
        int         rc;
        snprintf(k, sizeof(k), "key%d", i);
        rc = mg_shdict_get(d, k, strlen(k), 0, &type, &num, &s, &sl, &flags,
                           &st);
        if (model[i] == NULL ? rc != MG_DECLINED
            : (rc != MG_OK || sl != strlen(model[i])
               || memcmp(s, model[i], sl) != 0))
        {
            bad++;
        }
        del(d, k);
        free(model[i]);
    }
    is_int(bad, 0, "every value matches the model (%d no memory)", nomem);
    ok(mg_shdict_free_space(d) == cap, "all pages free and coalesced again");
    ok(invariants(d) == NULL, "invariants when empty");
    free(v);
}

static void
test_processes(void)
{
    int    d = D("a"), i, j, status, all = 1;
    pid_t  pids[4];
    double v;

    del(d, "hits");
    for (i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            for (j = 0; j < 10000; j++) {
                if (incr(d, "hits", 1, 1, 0, 0, &v, NULL) != MG_OK) {
                    _exit(1);
                }
            }
            _exit(0);
        }
    }
    for (i = 0; i < 4; i++) {
        waitpid(pids[i], &status, 0);
        all &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    ok(all, "4 processes x 10,000 incr");
    v = -1;
    get_num(d, "hits", &v);
    ok(v == 40000, "exactly 40000: %.0f", v);
}

static void
test_robust(void)
{
    int             d = D("a"), status, fds[2], i;
    pid_t           holder, others[2];
    char            c;
    double          v;
    mg_shdict_sh_t *sh = SH(d);

    put(d, 0, "keep", "me", 0, 0, NULL, NULL);
    alarm(20);                  /* a wedged lock fails the run, not hangs */

    /* killed holding the lock, before changing anything */
    if ((holder = fork()) == 0) {
        mg_shdict_lock(d);
        raise(SIGKILL);
    }
    waitpid(holder, &status, 0);
    ok(WIFSIGNALED(status), "the holder was killed");
    is_str(get_str(d, "keep", 0, NULL), "me", "the next locker goes on; "
           "contents kept");
    is_int(sh->recovered, 1, "recovered once");

    /* others waiting on the lock proceed when the holder dies */
    del(d, "w");
    if (pipe(fds) != 0) return;
    if ((holder = fork()) == 0) {
        mg_shdict_lock(d);
        mg_shdict_dirty(sh);
        if (write(fds[1], "x", 1) != 1) _exit(2);
        usleep(200 * 1000);
        raise(SIGKILL);
    }
    if (read(fds[0], &c, 1) != 1) return;
    for (i = 0; i < 2; i++) {
        if ((others[i] = fork()) == 0) {
            int j;
            for (j = 0; j < 1000; j++) {
                incr(d, "w", 1, 1, 0, 0, &v, NULL);
            }
            _exit(0);
        }
    }
    waitpid(holder, &status, 0);
    ok(WIFSIGNALED(status), "killed while changing the dictionary");
    for (i = 0; i < 2; i++) {
        waitpid(others[i], &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "a waiting process went on");
    }
    is_int(sh->recovered, 2, "recovered again");
    is_str(get_str(d, "keep", 0, NULL), NULL, "a torn dictionary is emptied");
    v = -1;
    get_num(d, "w", &v);
    ok(v == 2000, "the waiters' counts are exact: %.0f", v);
    ok(invariants(d) == NULL, "and consistent: %s", invariants(d) ?: "ok");
    alarm(0);
    close(fds[0]);
    close(fds[1]);
}

int
main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_parse();
    test_zones();
    test_declare();
    if (use("a 256k, small 32k") != MG_OK) {
        ok(0, "create the test zone");
        return done_testing();
    }
    is_int(D("small"), 1, "test zone");
    test_ops();
    test_incr();
    test_ttl();
    test_memory();
    test_random();
    test_processes();
    test_robust();
    mg_shdict_zone_destroy(mg_shdict_cur);
    free(mg_shdict_buf);
    return done_testing();
}
