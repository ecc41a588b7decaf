/*
 * mg_shdict.h -- ngx.shared-style dictionaries in shared memory.
 *
 * The `lua_shared_dict` property ("name size, ...") declares them, and
 * kong.cache's two are always there as in Kong's nginx template (unless
 * lua_shared_dict names them itself): `kong_db_cache`, its shared level,
 * sized by `mem_cache_size` (0: not declared, each worker caches alone),
 * and `kong_locks` (8m), its per-key locks and invalidation log
 * (lua/moongate/pdk/cache.lua).  The
 * master creates them all in ONE anonymous shared mapping before it forks
 * the workers of a generation (mg_shdict_create_all, from mg_gen_load), so
 * every worker sees the same bytes at the same address.  Each dictionary
 * is a region of that mapping: a robust process-shared mutex, a fixed hash
 * table, an LRU list and a slab-ish allocator over 4 KiB pages, all linked
 * by offsets inside the region.
 *
 * Lifecycle: the mapping belongs to the configs that declared it.  A reload
 * whose list is unchanged (same names, sizes, order) binds the new config
 * to the same mapping, so counters survive the reload; a reload that
 * changes the list gets a fresh, empty mapping, and old workers keep the
 * old one until they exit (the master unmaps its copy when the last config
 * using it is freed).  A worker finds its mapping through its config.
 *
 * Lua reaches the dictionaries through the FFI functions of
 * core/lua/mg_lua_api.h ("shared dictionaries"), implemented in
 * mg_shdict.c; moongate.shdict wraps them as ngx.shared.DICT.
 */
#ifndef MG_SHDICT_H
#define MG_SHDICT_H

#include "../mg_core.h"
#include "../conf/mg_conf.h"
#include "../lua/mg_lua_api.h"

#define MG_SHDICT_MAX        64                  /* dictionaries */
#define MG_SHDICT_NAME_MAX   63                  /* bytes of a name */
#define MG_SHDICT_MIN_SIZE   ((size_t) 32 * 1024)
#define MG_SHDICT_MAX_SIZE   ((size_t) 2047 * 1024 * 1024)
#define MG_SHDICT_KEY_MAX    65535               /* bytes of a key (ngx) */

/* value types: Lua's type tags, as ngx_lua stores them */
#define MG_SHDICT_NIL        0
#define MG_SHDICT_BOOLEAN    1
#define MG_SHDICT_NUMBER     3
#define MG_SHDICT_STRING     4

/* mg_shdict_store() ops, ngx_lua's bits: 0 is set */
#define MG_SHDICT_ADD        0x0001
#define MG_SHDICT_REPLACE    0x0002
#define MG_SHDICT_SAFE       0x0004              /* never evict: "no memory" */

/* kong.cache's dictionaries (Kong's names) */
#define MG_SHDICT_DB_CACHE   "kong_db_cache"     /* mem_cache_size bytes */
#define MG_SHDICT_LOCKS      "kong_locks"
#define MG_SHDICT_LOCKS_SIZE ((size_t) 8 * 1024 * 1024)

typedef struct {
    char   name[MG_SHDICT_NAME_MAX + 1];
    size_t size;                                 /* bytes, as declared */
} mg_shdict_decl_t;

/*
 * Parse a lua_shared_dict value into decl[0..*n) (at most MG_SHDICT_MAX).
 * An empty value gives *n = 0.  MG_ERROR with a message naming the entry
 * (bad size, duplicate or invalid name, too small or too large) in err.
 */
int mg_shdict_parse(const char *value, mg_shdict_decl_t *decl, int *n,
                    char *err, size_t errlen);

/*
 * Every dictionary conf declares: lua_shared_dict's (mg_shdict_parse),
 * then kong_db_cache (mem_cache_size bytes, unless mem_cache_size is 0) and
 * kong_locks when lua_shared_dict does not name them.  MG_ERROR with a
 * message in err.
 */
int mg_shdict_declare(const mg_conf_t *conf, mg_shdict_decl_t *decl, int *n,
                      char *err, size_t errlen);

/*
 * Master, once per config load, before fork: make conf's dictionaries
 * (mg_shdict_declare) exist for conf.  Reuses the mapping of a live config
 * with the same list, otherwise maps and initialises a new one.  The
 * binding is released by a cleanup on conf->pool (mg_conf_free).  MG_OK,
 * or MG_ERROR with a message in err.
 */
int mg_shdict_create_all(const mg_conf_t *conf, char *err, size_t errlen);

#endif /* MG_SHDICT_H */
