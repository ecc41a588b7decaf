/*
 * mg_health_lua.c -- the health state as Lua sees it (core/lua/
 * mg_lua_api.h, "upstream health" section): the Admin API's GET
 * /upstreams/{u}/health reads a target's state through it.
 *
 * Kept apart from mg_health.c so the FFI surface of the subsystem is one
 * small file, and so the C unit test of mg_health.c need not drag the
 * Lua API in.  Rejected: a lua_CFunction returning a table of every
 * target -- the Admin API already has the target list from the store and
 * asks per target; a table would be built on every call for nothing.
 */
#include "mg_health.h"
#include "../lua/mg_lua_api.h"

int
mg_lua_health_target_status(const char *upstream, size_t ul,
                            const char *target, size_t tl, int *healthy)
{
    if (upstream == NULL || target == NULL || healthy == NULL) {
        return MG_DECLINED;
    }
    return mg_health_target_status(upstream, ul, target, tl, healthy);
}
