/*
 * mg_lua.c -- the LuaJIT VM, the phase runner and the C side of the FFI
 * API (mg_lua_api.h).  See mg_lua.h for the lifecycle.
 *
 * Registry refs kept per VM: the runloop's phase and finish functions.
 * Per request: the running coroutine (a registry ref, released as soon as
 * the phase returns) and the sleep timer, both torn down by
 * mg_lua_request_end() whatever way the request ends.
 *
 * Runaway plugins (lua_max_run_time, lua_max_memory): see "limits" below.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <lauxlib.h>
#include <lualib.h>
#include <lua.h>
#include <ev.h>
#include "mg_lua.h"
#include "mg_lua_socket.h"
#include "../base/mg_buf.h"
#include "../base/mg_log.h"
#include "../base/mg_pool.h"
#include "../base/mg_time.h"
#include "../http/mg_http.h"
#include "../tls/mg_tls.h"

typedef struct {
    lua_State *L;
    int        phase_ref;
    int        finish_ref;
    int        worker_start_ref;
    int        timer_ref;       /* runloop.run_timer, LUA_NOREF if absent */
    /* finished coroutines kept for reuse: a thread whose function
     * returned is back at its base level and can start another */
    lua_State *idle_co[64];
    int        idle_ref[64];
    int        nidle;
    int        refs;            /* runtimes using it */
    /* lua_max_memory: the allocator we wrap, bytes in use, the cap */
    lua_Alloc  alloc_f;
    void      *alloc_ud;
    size_t     mem_used;
    size_t     mem_max;
    size_t     mem_grace;       /* extra room once the cap was hit */
    int        mem_hit;
} mg_lua_vm_t;

/*
 * What a runtime (one config version) knows of the VM: the VM itself,
 * shared by every runtime a worker swaps to (plugins stay loaded, timers
 * and ngx.shared go on), and the per-route tables of this version.
 */
typedef struct {
    mg_lua_vm_t *vm;
    uint8_t     *routes;        /* 1 when route i enters Lua */
    uint16_t    *phases;        /* phases some plugin of route i has */
    size_t       nroutes;
    uint16_t     global_phases; /* phases some global plugin has */
} mg_lua_rt_t;

#define MG_LUA_VM(rt) (((mg_lua_rt_t *) (rt)->lua)->vm)

static char        mg_lua_err[512];
static const char *mg_lua_err_p = "";

static void
mg_lua_set_error(const char *fmt, const char *arg)
{
    snprintf(mg_lua_err, sizeof(mg_lua_err), fmt, arg);
    mg_lua_err_p = mg_lua_err;
}

const char *
mg_lua_last_error(void)
{
    return mg_lua_err_p;
}

/* --- phases ---------------------------------------------------------- */

static const struct {
    const char *name;
    int         bit;
} mg_lua_phase_table[] = {
#define MG_LUA_PHASE_ROW(name, bit) { #name, bit },
    MG_LUA_PHASES(MG_LUA_PHASE_ROW)
#undef MG_LUA_PHASE_ROW
    { NULL, 0 }
};

const char *
mg_lua_phase_name(int i)
{
    if (i < 0 || i >= (int) mg_nelems(mg_lua_phase_table)) {
        return NULL;
    }
    return mg_lua_phase_table[i].name;
}

int
mg_lua_phase_bit(int i)
{
    if (i < 0 || i >= (int) mg_nelems(mg_lua_phase_table)) {
        return 0;
    }
    return mg_lua_phase_table[i].bit;
}

static const char *
mg_lua_phase_str(int bit)
{
    size_t i;

    for (i = 0; mg_lua_phase_table[i].name; i++) {
        if (mg_lua_phase_table[i].bit == bit) {
            return mg_lua_phase_table[i].name;
        }
    }
    return "?";
}

/* --- limits: runaway plugins ----------------------------------------- */

/*
 * lua_max_run_time: one resume of a coroutine (a phase up to its next
 * yield) may run that long.  A timer on the process CPU clock
 * (timer_create CLOCK_PROCESS_CPUTIME_ID, so an idle worker gets no
 * signal) ticks every quarter of the limit; its handler sees whether the
 * same resume is still running and, at the limit, sets a LuaJIT count
 * hook (what lua.c does on SIGINT).  The hook raises an error in the
 * running code: the runloop logs it naming the plugin and the request
 * gets Kong's 500.  The hook is not called from JIT-compiled code, so
 * when the limit is on the runloop turns the JIT off for the handler
 * functions of a plugin that loops or tail-calls in its handler.lua
 * (runloop.guard_handler reads their bytecode; measured: `while true do
 * end` in a handler is then stopped within the limit); loop-free code
 * always leaves its trace, and the hook runs then.  A loop that still
 * cannot be reached (compiled code in a
 * module the handler calls, or a C function that never returns) is
 * ended at 3x the limit by exiting the worker: the master starts a new
 * one, which is better than a worker frozen forever.  Rejected: a
 * count hook on every resume -- it turns every instruction of every
 * plugin into a hook dispatch; siglongjmp out of compiled code -- it
 * leaves the VM inconsistent.
 *
 * lua_max_memory: the VM's allocator is wrapped and counts bytes; past
 * the cap an allocation fails, which LuaJIT raises as "not enough
 * memory" in the plugin (logged with its name, 500).  Once the cap was
 * hit a grace of 1/8 of it lets the error path run; a full collection
 * after the resume gives the memory back.
 */
#define MG_LUA_WATCH_TICKS 4

static void mg_lua_root(char *buf, size_t len);

static volatile sig_atomic_t mg_lua_running;    /* a resume is under way */
static volatile sig_atomic_t mg_lua_run_seq;    /* bumped per resume */
static volatile sig_atomic_t mg_lua_hooked;
static lua_State *volatile   mg_lua_run_L;
static int                   mg_lua_watch_armed;
static sig_atomic_t          mg_lua_watch_seq;
static int                   mg_lua_watch_ticks;
static char                  mg_lua_watch_msg[256];
static size_t                mg_lua_watch_msg_len;

static char   mg_lua_rt_src[PATH_MAX + 32];   /* "@<root>/lua/moongate/" */
static size_t mg_lua_rt_src_len;

/*
 * Armed until the resume ends: every instruction of plugin code raises,
 * so a plugin's own pcall cannot swallow it for long.  The runtime's own
 * files (lua/moongate/, bundled plugins excepted) are let through, so the
 * runloop can log the error with the plugin's name and end the phase.
 */
static void
mg_lua_runaway_hook(lua_State *L, lua_Debug *ar)
{
    if (lua_getinfo(L, "S", ar) && ar->source
        && (ar->what == NULL || strcmp(ar->what, "C") == 0
            || (strncmp(ar->source, mg_lua_rt_src, mg_lua_rt_src_len) == 0
                && strncmp(ar->source + mg_lua_rt_src_len, "plugins/", 8))))
    {
        return;
    }
    luaL_error(L, "plugin code ran for more than lua_max_run_time (%d ms) "
               "without yielding", mg_worker ? mg_worker->conf->lua_max_run_time
                                             : 0);
}

static void
mg_lua_watch_sig(int sig)
{
    int saved = errno;

    (void) sig;
    if (!mg_lua_running || mg_lua_run_seq != mg_lua_watch_seq) {
        mg_lua_watch_seq = mg_lua_run_seq;
        mg_lua_watch_ticks = 0;
        errno = saved;
        return;
    }
    mg_lua_watch_ticks++;
    if (mg_lua_watch_ticks >= 3 * MG_LUA_WATCH_TICKS) {
        /* the hook cannot reach it: compiled code or a C call */
        if (write(mg_log_fd(), mg_lua_watch_msg, mg_lua_watch_msg_len) < 0) {
            /* nothing better to do in a signal handler */
        }
        _exit(70);
    }
    if (mg_lua_watch_ticks == MG_LUA_WATCH_TICKS && mg_lua_run_L) {
        mg_lua_hooked = 1;
        lua_sethook(mg_lua_run_L, mg_lua_runaway_hook,
                    LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET, 1);
    }
    errno = saved;
}

/* In a worker, once: the CPU-clock ticker (lua_max_run_time > 0). */
static void
mg_lua_watch_arm(void)
{
    struct sigaction  sa;
    struct sigevent   sev;
    struct itimerspec its;
    timer_t           tid;
    long long         ns;
    int               ms = mg_worker->conf->lua_max_run_time;

    mg_lua_watch_armed = 1;
    if (ms <= 0) {
        return;
    }
    mg_lua_root(mg_lua_rt_src + 1, sizeof(mg_lua_rt_src) - 32);
    mg_lua_rt_src[0] = '@';
    strcat(mg_lua_rt_src, "/lua/moongate/");
    mg_lua_rt_src_len = strlen(mg_lua_rt_src);
    mg_lua_watch_msg_len = (size_t) snprintf(mg_lua_watch_msg,
        sizeof(mg_lua_watch_msg), "[emerg] %d#0: plugin code ran for more "
        "than 3x lua_max_run_time (%d ms) where the hook cannot stop it "
        "(JIT-compiled code or a C call): the worker exits, the master "
        "starts another\n", (int) getpid(), ms);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = mg_lua_watch_sig;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGXCPU;
    if (sigaction(SIGXCPU, &sa, NULL) != 0
        || timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &tid) != 0)
    {
        mg_log_error("lua_max_run_time: cannot start the watchdog: %s",
                     strerror(errno));
        return;
    }
    ns = (long long) ms * 1000000LL / MG_LUA_WATCH_TICKS;
    its.it_interval.tv_sec = (time_t) (ns / 1000000000LL);
    its.it_interval.tv_nsec = (long) (ns % 1000000000LL);
    its.it_value = its.it_interval;
    if (timer_settime(tid, 0, &its, NULL) != 0) {
        mg_log_error("lua_max_run_time: cannot start the watchdog: %s",
                     strerror(errno));
    }
}

static void *
mg_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    mg_lua_vm_t *vm = ud;
    void        *np;

    if (nsize > osize && vm->mem_max
        && vm->mem_used + (nsize - osize) > vm->mem_max + vm->mem_grace)
    {
        if (!vm->mem_hit) {
            vm->mem_hit = 1;
            vm->mem_grace = vm->mem_max / 8;
        }
        return NULL;
    }
    np = vm->alloc_f(vm->alloc_ud, ptr, osize, nsize);
    if (np != NULL || nsize == 0) {
        vm->mem_used = vm->mem_used - (ptr ? osize : 0) + nsize;
    }
    return np;
}

/* lua_resume with the watchdog told; after it, the memory cap's aftermath */
static int
mg_lua_resume_co(mg_lua_vm_t *vm, lua_State *co, int nargs)
{
    int rc;

    if (!mg_lua_watch_armed && mg_worker) {
        mg_lua_watch_arm();
    }
    mg_lua_run_L = co;
    mg_lua_run_seq++;
    mg_lua_running = 1;
    rc = lua_resume(co, nargs);
    mg_lua_running = 0;
    if (mg_lua_hooked) {
        mg_lua_hooked = 0;
        lua_sethook(co, NULL, 0, 0);
    }
    if (vm->mem_hit) {
        mg_log_error("lua_max_memory (%zu bytes) reached: the allocation "
                     "failed in the running plugin", vm->mem_max);
        lua_gc(vm->L, LUA_GCCOLLECT, 0);
        if (vm->mem_used < vm->mem_max) {
            vm->mem_hit = 0;
            vm->mem_grace = 0;
        }
    }
    return rc;
}

/* --- the init document ---------------------------------------------- */

typedef struct {
    char   *p;
    size_t  len;
    size_t  cap;
    int     oom;
} mg_jbuf_t;

static void
mg_jbuf_put(mg_jbuf_t *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 4096);
        char  *np;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

#define JLIT(b, lit) mg_jbuf_put((b), (lit), sizeof(lit) - 1)

static void
mg_jbuf_str(mg_jbuf_t *b, mg_str_t s)
{
    static const char hex[] = "0123456789abcdef";
    size_t            i;

    JLIT(b, "\"");
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char) s.data[i];
        char          e[6];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char) c;
            mg_jbuf_put(b, e, 2);
        } else if (c < 0x20) {
            e[0] = '\\'; e[1] = 'u'; e[2] = '0'; e[3] = '0';
            e[4] = hex[c >> 4]; e[5] = hex[c & 15];
            mg_jbuf_put(b, e, 6);
        } else {
            mg_jbuf_put(b, (const char *) &c, 1);
        }
    }
    JLIT(b, "\"");
}

static void
mg_jbuf_cstr(mg_jbuf_t *b, const char *s)
{
    mg_str_t v = { s ? s : "", s ? strlen(s) : 0 };
    mg_jbuf_str(b, v);
}

static void
mg_jbuf_id_or_null(mg_jbuf_t *b, const mg_str_t *id)
{
    if (id == NULL) {
        JLIT(b, "null");
    } else {
        mg_jbuf_str(b, *id);
    }
}

static void
mg_jbuf_strs(mg_jbuf_t *b, const mg_str_array_t *a)
{
    size_t i;

    JLIT(b, "[");
    for (i = 0; i < a->n; i++) {
        if (i) JLIT(b, ",");
        mg_jbuf_str(b, a->elts[i]);
    }
    JLIT(b, "]");
}

static char *
mg_lua_init_doc(const mg_runtime_t *rt, const mg_conf_t *conf)
{
    const mg_config_t *cf = rt->cf;
    mg_jbuf_t          b = { NULL, 0, 0, 0 };
    char               num[32];
    size_t             i;

    /* the store's config version: kong.cache tags its shared entries
     * with it, so a worker never trusts one loaded under another version */
    JLIT(&b, "{\"config_version\":");
    snprintf(num, sizeof(num), "%llu", (unsigned long long) rt->version);
    mg_jbuf_put(&b, num, strlen(num));
    JLIT(&b, ",\"plugins\":[");
    for (i = 0; i < cf->plugins_n; i++) {
        const mg_plugin_t *pl = cf->plugins[i];
        if (i) JLIT(&b, ",");
        JLIT(&b, "{\"id\":");
        mg_jbuf_str(&b, pl->id);
        JLIT(&b, ",\"name\":");
        mg_jbuf_str(&b, pl->name);
        JLIT(&b, ",\"instance_name\":");
        if (pl->instance_name.len) mg_jbuf_str(&b, pl->instance_name);
        else JLIT(&b, "null");
        JLIT(&b, ",\"enabled\":");
        if (pl->enabled) JLIT(&b, "true"); else JLIT(&b, "false");
        JLIT(&b, ",\"protocols\":");
        mg_jbuf_strs(&b, &pl->protocols);
        JLIT(&b, ",\"config\":");
        if (pl->config_json.len) {
            mg_jbuf_put(&b, pl->config_json.data, pl->config_json.len);
        } else {
            JLIT(&b, "{}");
        }
        JLIT(&b, ",\"route\":");
        mg_jbuf_id_or_null(&b, pl->route ? &pl->route->id : NULL);
        JLIT(&b, ",\"service\":");
        mg_jbuf_id_or_null(&b, pl->service ? &pl->service->id : NULL);
        JLIT(&b, ",\"consumer\":");
        mg_jbuf_id_or_null(&b, pl->consumer ? &pl->consumer->id : NULL);
        JLIT(&b, "}");
    }
    JLIT(&b, "],\"routes\":[");
    for (i = 0; i < cf->routes_n; i++) {
        const mg_route_t *ro = cf->routes[i];
        if (i) JLIT(&b, ",");
        JLIT(&b, "{\"id\":");
        mg_jbuf_str(&b, ro->id);
        JLIT(&b, ",\"name\":");
        if (ro->name.len) mg_jbuf_str(&b, ro->name); else JLIT(&b, "null");
        JLIT(&b, ",\"service\":");
        mg_jbuf_id_or_null(&b, ro->service ? &ro->service->id : NULL);
        snprintf(num, sizeof(num), ",\"index\":%zu}", i);
        mg_jbuf_put(&b, num, strlen(num));
    }
    JLIT(&b, "],\"services\":[");
    for (i = 0; i < cf->services_n; i++) {
        const mg_service_t *s = cf->services[i];
        if (i) JLIT(&b, ",");
        JLIT(&b, "{\"id\":");
        mg_jbuf_str(&b, s->id);
        JLIT(&b, ",\"name\":");
        if (s->name.len) mg_jbuf_str(&b, s->name); else JLIT(&b, "null");
        JLIT(&b, ",\"host\":");
        mg_jbuf_str(&b, s->host);
        snprintf(num, sizeof(num), ",\"port\":%u", (unsigned) s->port);
        mg_jbuf_put(&b, num, strlen(num));
        JLIT(&b, ",\"protocol\":");
        mg_jbuf_str(&b, s->protocol);
        JLIT(&b, ",\"path\":");
        if (s->path.len) mg_jbuf_str(&b, s->path); else JLIT(&b, "null");
        JLIT(&b, "}");
    }
    JLIT(&b, "],\"consumers\":[");
    for (i = 0; i < cf->consumers_n; i++) {
        const mg_consumer_t *co = cf->consumers[i];
        if (i) JLIT(&b, ",");
        JLIT(&b, "{\"id\":");
        mg_jbuf_str(&b, co->id);
        JLIT(&b, ",\"username\":");
        if (co->username.len) mg_jbuf_str(&b, co->username); else JLIT(&b, "null");
        JLIT(&b, ",\"custom_id\":");
        if (co->custom_id.len) mg_jbuf_str(&b, co->custom_id); else JLIT(&b, "null");
        JLIT(&b, "}");
    }
    JLIT(&b, "],\"enabled_plugins\":");
    mg_jbuf_cstr(&b, conf->plugins);
    JLIT(&b, ",\"trusted_ips\":[");
    for (i = 0; i < conf->trusted_ips_n; i++) {
        if (i) JLIT(&b, ",");
        mg_jbuf_str(&b, conf->trusted_ips[i]);
    }
    /* kong.configuration: every property (mg_conf_json: secrets left out) */
    JLIT(&b, "],\"configuration\":");
    {
        char *cj = mg_conf_json(conf);

        if (cj == NULL) {
            b.oom = 1;
        } else {
            mg_jbuf_put(&b, cj, strlen(cj));
            free(cj);
        }
    }
    JLIT(&b, "}");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* --- VM -------------------------------------------------------------- */

/* The installation root: bin/moongate (or build-asan/moongate) lives one
 * level below it, next to lua/ and plugins/. */
static void
mg_lua_root(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    char   *s;
    int     k;

    if (n <= 0) {
        snprintf(buf, len, ".");
        return;
    }
    buf[n] = '\0';
    for (k = 0; k < 2; k++) {
        s = strrchr(buf, '/');
        if (s == NULL) {
            snprintf(buf, len, ".");
            return;
        }
        *s = '\0';
    }
    if (buf[0] == '\0') {
        snprintf(buf, len, "/");
    }
}

/* A new VM with the runloop loaded; NULL with err set. */
static mg_lua_vm_t *
mg_lua_vm_create(const mg_conf_t *conf, char *err, size_t errlen)
{
    mg_lua_vm_t *vm;
    lua_State   *L;
    char         root[PATH_MAX], path[PATH_MAX * 4];

    mg_time_update(ev_time());  /* plugins may read the clock while loading */
    vm = calloc(1, sizeof(*vm));
    L = vm ? luaL_newstate() : NULL;
    if (L == NULL) {
        snprintf(err, errlen, "cannot create the Lua VM");
        free(vm);
        return NULL;
    }
    vm->L = L;
    vm->alloc_f = lua_getallocf(L, &vm->alloc_ud);
    vm->mem_used = (size_t) lua_gc(L, LUA_GCCOUNT, 0) * 1024
                   + (size_t) lua_gc(L, LUA_GCCOUNTB, 0);
    vm->mem_max = conf->lua_max_memory;
    lua_setallocf(L, mg_lua_alloc, vm);
    luaL_openlibs(L);

    mg_lua_root(root, sizeof(root));
    lua_getglobal(L, "package");
    snprintf(path, sizeof(path), "%s%s%s/lua/?.lua;%s/lua/?/init.lua;%s",
             conf->lua_package_path ? conf->lua_package_path : "",
             conf->lua_package_path && conf->lua_package_path[0]
                 && conf->lua_package_path[strlen(conf->lua_package_path) - 1] != ';'
                 ? ";" : "",
             root, root, ";");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    if (conf->lua_package_cpath && conf->lua_package_cpath[0]) {
        lua_getfield(L, -1, "cpath");
        snprintf(path, sizeof(path), "%s;%s", conf->lua_package_cpath,
                 lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushstring(L, path);
        lua_setfield(L, -2, "cpath");
    }
    lua_pop(L, 1);

    lua_newtable(L);
    lua_pushstring(L, root);
    lua_setfield(L, -2, "root");
    lua_pushstring(L, conf->prefix);
    lua_setfield(L, -2, "prefix");
    lua_pushstring(L, MOONGATE_VERSION);
    lua_setfield(L, -2, "version");
    lua_setglobal(L, "moongate");

    /* runloop = require "moongate.runloop" */
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.runloop");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "cannot load the plugin runtime: %s",
                 lua_tostring(L, -1));
        lua_close(L);
        free(vm);
        return NULL;
    }
    lua_getfield(L, -1, "phase");
    vm->phase_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "finish");
    vm->finish_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "worker_start");
    vm->worker_start_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "run_timer");
    vm->timer_ref = lua_isfunction(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX)
                                          : (lua_pop(L, 1), LUA_NOREF);
    lua_settop(L, 0);
    return vm;
}

static void
mg_lua_vm_release(mg_lua_vm_t *vm)
{
    if (vm && --vm->refs == 0) {
        lua_close(vm->L);
        free(vm);
    }
}

/* runloop.init(doc) for rt on vm, and rt's per-route tables. */
static int
mg_lua_configure(mg_lua_vm_t *vm, mg_runtime_t *rt, const mg_conf_t *conf,
                 char *err, size_t errlen)
{
    lua_State   *L = vm->L;
    mg_lua_rt_t *lrt;
    char        *doc;
    size_t       i;

    lrt = calloc(1, sizeof(*lrt));
    if (lrt == NULL) {
        snprintf(err, errlen, "out of memory");
        return MG_ERROR;
    }
    lrt->nroutes = rt->cf->routes_n;
    lrt->routes = calloc(lrt->nroutes + 1, 1);
    lrt->phases = calloc(lrt->nroutes + 1, sizeof(uint16_t));
    doc = mg_lua_init_doc(rt, conf);
    if (lrt->routes == NULL || lrt->phases == NULL || doc == NULL) {
        snprintf(err, errlen, "out of memory");
        free(doc);
        goto failed;
    }
    mg_time_update(ev_time());
    lua_settop(L, 0);
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.runloop");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "cannot load the plugin runtime: %s",
                 lua_tostring(L, -1));
        free(doc);
        goto failed;
    }
    lua_getfield(L, -1, "init");
    lua_pushstring(L, doc);
    free(doc);
    if (lua_pcall(L, 1, 2, 0) != 0) {
        snprintf(err, errlen, "plugin runtime init failed: %s",
                 lua_tostring(L, -1));
        goto failed;
    }
    /* stack: runloop, result, err */
    if (lua_isnil(L, -2)) {
        snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1)
                                                        : "invalid plugin configuration");
        goto failed;
    }
    if (lua_isboolean(L, -2) && lua_toboolean(L, -2)) {
        memset(lrt->routes, 1, lrt->nroutes);
    } else if (lua_istable(L, -2)) {
        size_t n = lua_objlen(L, -2);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, -2, (int) i);
            if (lua_isnumber(L, -1)) {
                lua_Integer k = lua_tointeger(L, -1);
                if (k >= 0 && (size_t) k < lrt->nroutes) {
                    lrt->routes[k] = 1;
                }
            }
            lua_pop(L, 1);
        }
    }
    /* which phases each route's plugins implement: phases nobody
     * implements are never entered */
    lua_pop(L, 2);
    lua_getfield(L, -1, "route_phases");
    for (i = 0; i < lrt->nroutes; i++) {
        if (!lrt->routes[i]) {
            continue;
        }
        lua_pushvalue(L, -1);
        lua_pushinteger(L, (lua_Integer) i);
        if (lua_pcall(L, 1, 1, 0) == 0 && lua_isnumber(L, -1)) {
            lrt->phases[i] = (uint16_t) lua_tointeger(L, -1);
        } else {
            lrt->phases[i] = 0xffff;
        }
        lua_pop(L, 1);
    }
    /* and the global plugins' (certificate runs those only) */
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    if (lua_pcall(L, 1, 1, 0) == 0 && lua_isnumber(L, -1)) {
        lrt->global_phases = (uint16_t) lua_tointeger(L, -1);
    } else {
        lrt->global_phases = 0xffff;
    }
    lua_settop(L, 0);
    lrt->vm = vm;
    vm->refs++;
    rt->lua = lrt;
    return MG_OK;

failed:
    lua_settop(L, 0);
    free(lrt->routes);
    free(lrt->phases);
    free(lrt);
    return MG_ERROR;
}

int
mg_lua_runtime_init(mg_runtime_t *rt, const mg_conf_t *conf, char *err,
                    size_t errlen)
{
    mg_lua_vm_t *vm;

    rt->lua = NULL;
    if (rt->cf->plugins_n == 0) {
        return MG_OK;           /* nothing enters Lua: no VM at all */
    }
    vm = mg_lua_vm_create(conf, err, errlen);
    if (vm == NULL) {
        return MG_ERROR;
    }
    if (mg_lua_configure(vm, rt, conf, err, errlen) != MG_OK) {
        lua_close(vm->L);
        free(vm);
        return MG_ERROR;
    }
    return MG_OK;
}

void
mg_lua_worker_start(mg_runtime_t *rt)
{
    lua_State *L;

    if (rt == NULL || rt->lua == NULL) {
        return;
    }
    L = MG_LUA_VM(rt)->L;
    mg_time_update(ev_time());
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, MG_LUA_VM(rt)->worker_start_ref);
    if (lua_pcall(L, 0, 0, 0) != 0) {
        mg_log_error("lua: runloop.worker_start failed: %s",
                     lua_tostring(L, -1));
    }
    lua_settop(L, 0);
}

int
mg_lua_runtime_reconfigure(mg_runtime_t *rt, const mg_runtime_t *prev,
                           const mg_conf_t *conf, char *err, size_t errlen)
{
    mg_lua_vm_t *vm = prev && prev->lua ? MG_LUA_VM(prev) : NULL;
    int          fresh = 0;

    rt->lua = NULL;
    if (vm == NULL) {
        if (rt->cf->plugins_n == 0) {
            return MG_OK;
        }
        vm = mg_lua_vm_create(conf, err, errlen);
        if (vm == NULL) {
            return MG_ERROR;
        }
        fresh = 1;
    }
    /* once a worker has a VM it keeps it, plugins or not: its timers and
     * plugin state live there */
    if (mg_lua_configure(vm, rt, conf, err, errlen) != MG_OK) {
        if (fresh) {
            lua_close(vm->L);
            free(vm);
        }
        return MG_ERROR;
    }
    return MG_OK;
}

static void mg_lua_continue(mg_request_t *r, int resuming);
static int mg_lua_run_sync(mg_request_t *r, int phase);

int
mg_lua_admin_init(mg_runtime_t *rt, const mg_conf_t *conf, char *err,
                  size_t errlen)
{
    mg_lua_vm_t *vm;
    mg_lua_rt_t *lrt;
    lua_State   *L;
    char        *doc;

    mg_lua_runtime_free(rt);    /* the plugins' VM has no use here */
    vm = mg_lua_vm_create(conf, err, errlen);
    if (vm == NULL) {
        return MG_ERROR;
    }
    L = vm->L;
    doc = mg_lua_init_doc(rt, conf);
    lrt = calloc(1, sizeof(*lrt));
    if (doc == NULL || lrt == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    /* runloop.admin_init(init document, master pid): the rest of what
     * moongate.admin.init takes derives from the document */
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.runloop");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto failed;
    }
    lua_getfield(L, -1, "admin_init");
    lua_pushstring(L, doc);
    lua_pushinteger(L, (lua_Integer) getppid());
    if (lua_pcall(L, 2, 2, 0) != 0 || lua_isnil(L, -2)) {
        snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1)
                                                        : "admin init failed");
        goto failed;
    }
    lua_settop(L, 0);
    free(doc);
    lrt->vm = vm;
    vm->refs++;
    rt->lua = lrt;
    return MG_OK;

failed:
    free(doc);
    free(lrt);
    lua_close(L);
    free(vm);
    return MG_ERROR;
}

int
mg_lua_cli(const mg_conf_t *conf, const char *fn, const char *arg, char *err,
           size_t errlen)
{
    mg_lua_vm_t *vm;
    lua_State   *L;
    char        *cj;
    int          rc = MG_ERROR;

    vm = mg_lua_vm_create(conf, err, errlen);
    if (vm == NULL) {
        return MG_ERROR;
    }
    L = vm->L;
    cj = mg_conf_json(conf);
    if (cj == NULL) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.cli");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto done;
    }
    lua_getfield(L, -1, fn);
    lua_pushstring(L, cj);
    if (arg) lua_pushstring(L, arg); else lua_pushnil(L);
    if (lua_pcall(L, 2, 2, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto done;
    }
    if (lua_isnil(L, -2) || (lua_isboolean(L, -2) && !lua_toboolean(L, -2))) {
        snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1)
                                                        : "failed");
        goto done;
    }
    snprintf(err, errlen, "%s", lua_isstring(L, -2) ? lua_tostring(L, -2)
                                                    : "");
    rc = MG_OK;

done:
    free(cj);
    lua_close(L);
    free(vm);
    return rc;
}

void
mg_lua_admin(mg_request_t *r)
{
    r->lua = 1;
    r->lua_mask = MG_LUA_PHASE_access;
    r->lua_bf = 0;
    r->lua_ref = LUA_NOREF;
    r->lua_stage = MG_LUA_PHASE_access;
    mg_lua_continue(r, 0);
}

void
mg_lua_runtime_free(mg_runtime_t *rt)
{
    mg_lua_rt_t *lrt = rt->lua;

    if (lrt == NULL) {
        return;
    }
    mg_lua_vm_release(lrt->vm);
    free(lrt->routes);
    free(lrt->phases);
    free(lrt);
    rt->lua = NULL;
}

int
mg_lua_route_has_plugins(const mg_runtime_t *rt, size_t route_index)
{
    const mg_lua_rt_t *lrt = rt->lua;
    return lrt && route_index < lrt->nroutes && lrt->routes[route_index];
}

/* --- running phases -------------------------------------------------- */

static void
mg_lua_drop_thread(mg_request_t *r)
{
    mg_lua_vm_t *vm = MG_LUA_VM(r->rt);
    lua_State   *co = r->lua_co;

    if (co == NULL) {
        return;
    }
    if (lua_status(co) == 0 && lua_gettop(co) == 0
        && vm->nidle < (int) mg_nelems(vm->idle_co))
    {
        vm->idle_co[vm->nidle] = co;
        vm->idle_ref[vm->nidle++] = r->lua_ref;
    } else {
        luaL_unref(vm->L, LUA_REGISTRYINDEX, r->lua_ref);
    }
    r->lua_co = NULL;
    r->lua_ref = LUA_NOREF;
}

/* Resume (or start, nargs pushed) r's coroutine.  MG_OK: the phase ran
 * to its end; MG_AGAIN: it waits; MG_DONE: kong.response.exit;
 * MG_ERROR: a plugin failed (logged). */
static int
mg_lua_resume(mg_request_t *r, int nargs)
{
    lua_State  *co = r->lua_co;
    int         rc = mg_lua_resume_co(MG_LUA_VM(r->rt), co, nargs);
    const char *res;

    if (rc == LUA_YIELD) {
        lua_settop(co, 0);
        return MG_AGAIN;
    }
    if (rc != 0) {
        mg_log_error("*%llu lua error in %s phase: %s",
                     (unsigned long long) r->conn->id,
                     mg_lua_phase_str(r->lua_stage),
                     lua_isstring(co, -1) ? lua_tostring(co, -1) : "?");
        mg_lua_drop_thread(r);
        return MG_ERROR;
    }
    res = lua_gettop(co) >= 1 && lua_isstring(co, 1) ? lua_tostring(co, 1) : NULL;
    /* the runloop forgot the request as the phase returned: no
     * runloop.finish at its end (runloop.phase's third value) */
    if (lua_gettop(co) >= 3 && lua_toboolean(co, 3)) {
        r->lua_forgotten = 1;
    }
    rc = MG_OK;
    if (res && strcmp(res, "exit") == 0) {
        rc = MG_DONE;
    } else if (res && strcmp(res, "error") == 0) {
        rc = MG_ERROR;          /* the runloop logged it with the plugin */
    }
    lua_settop(co, 0);          /* empty: the thread can be reused */
    mg_lua_drop_thread(r);
    return rc;
}

static int
mg_lua_start_args(mg_request_t *r, int phase, const char *chunk, size_t n,
                  int eof)
{
    mg_lua_vm_t *vm = MG_LUA_VM(r->rt);
    lua_State   *L = vm->L;
    lua_State   *co;

    r->lua_stage = phase;
    if (vm->nidle > 0) {
        vm->nidle--;
        co = vm->idle_co[vm->nidle];
        r->lua_ref = vm->idle_ref[vm->nidle];
    } else {
        co = lua_newthread(L);
        r->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    r->lua_co = co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->phase_ref);
    lua_pushinteger(co, phase);     /* the runloop maps the bit to a name */
    /* r as a number: the runloop casts it to the `void *` the PDK's FFI
     * calls take, which compiles (from a lightuserdata it would not);
     * user-space addresses are below 2^53, exact in a double */
    lua_pushnumber(co, (lua_Number) (uintptr_t) r);
    lua_pushlightuserdata(co, r);   /* req_id: unique among live requests */
    lua_pushinteger(co, r->route ? (lua_Integer) r->route->index : -1);
    if (phase == MG_LUA_PHASE_response) {
        /* the buffered body, a copy: set_raw_body replaces bf_in */
        lua_pushlstring(co, r->bf_in ? r->bf_in : "", r->bf_in_len);
        return mg_lua_resume(r, 5);
    }
    if (phase != MG_LUA_PHASE_body_filter) {
        return mg_lua_resume(r, 4);
    }
    lua_pushlstring(co, chunk ? chunk : "", n);
    lua_pushboolean(co, eof);
    return mg_lua_resume(r, 6);
}

static int
mg_lua_start(mg_request_t *r, int phase)
{
    return mg_lua_start_args(r, phase, NULL, 0, 0);
}

static void
mg_lua_continue(mg_request_t *r, int resuming)
{
    int rc;

    for (;;) {
        rc = resuming ? mg_lua_resume(r, 0) : mg_lua_start(r, r->lua_stage);
        resuming = 0;
        if (rc == MG_AGAIN) {
            return;             /* a watcher resumes it */
        }
        if (rc == MG_DONE) {
            r->lua_stage = 0;
            mg_http_send_lua_exit(r);
            return;
        }
        if (rc == MG_ERROR) {
            r->lua_stage = 0;
            mg_http_send_error(r, 500, NULL);
            return;
        }
        if (r->lua_stage == MG_LUA_PHASE_response) {
            r->lua_stage = 0;
            mg_proxy_send_buffered(r);
            return;
        }
        if (r->lua_stage == MG_LUA_PHASE_rewrite
            && (r->lua_mask & MG_LUA_PHASE_access))
        {
            r->lua_stage = MG_LUA_PHASE_access;
            continue;
        }
        break;
    }
    r->lua_stage = 0;
    if (r->route == NULL) {
        /* the Admin API answers every request itself */
        mg_log_error("*%llu admin API: no response produced",
                     (unsigned long long) r->conn->id);
        mg_http_send_error(r, 500, NULL);
        return;
    }
    mg_proxy_start(r);
}

void
mg_lua_access(mg_request_t *r)
{
    const mg_lua_rt_t *lrt = r->rt->lua;

    r->lua = 1;
    r->lua_mask = lrt->phases[r->route->index];
    r->lua_bf = (r->lua_mask & MG_LUA_PHASE_body_filter) != 0;
    r->lua_ref = LUA_NOREF;
    /* a phase no plugin of the route implements costs nothing */
    if (r->lua_mask & MG_LUA_PHASE_rewrite) {
        r->lua_stage = MG_LUA_PHASE_rewrite;
    } else if (r->lua_mask & MG_LUA_PHASE_access) {
        r->lua_stage = MG_LUA_PHASE_access;
    } else {
        mg_proxy_start(r);
        return;
    }
    mg_lua_continue(r, 0);
}

int
mg_lua_wants_certificate(const mg_runtime_t *rt)
{
    const mg_lua_rt_t *lrt = rt ? rt->lua : NULL;

    return lrt != NULL && (lrt->global_phases & MG_LUA_PHASE_certificate);
}

/*
 * The certificate phase of a TLS connection c (Kong's ssl_certificate:
 * the global plugins, once per full handshake, before the server's
 * certificate goes out).  No request exists yet: the PDK gets a request
 * of its own that holds only the connection (kong.client.get_ip, the
 * SNI, ngx.ctx for the phase) and a small pool; the phase checks keep
 * request functions out.  It runs to its end at once (OpenResty's
 * ssl_certificate_by_lua may wait; here a plugin that waits fails).
 * MG_OK: go on with the handshake; otherwise abort it (a plugin failed,
 * or called ngx.exit(ngx.ERROR)).
 */
int
mg_lua_certificate(mg_conn_t *c)
{
    mg_runtime_t *rt = mg_worker ? mg_worker->rt : NULL;
    mg_request_t  r;
    int           rc;

    if (!mg_lua_wants_certificate(rt)) {
        return MG_OK;
    }
    memset(&r, 0, sizeof(r));
    r.pool = mg_pool_create(1024);
    if (r.pool == NULL) {
        return MG_ERROR;
    }
    r.conn = c;
    r.rt = rt;
    r.lua = 1;
    r.lua_ref = LUA_NOREF;
    r.lua_mask = MG_LUA_PHASE_certificate;
    rc = mg_lua_run_sync(&r, MG_LUA_PHASE_certificate);
    mg_pool_destroy(r.pool);
    if (rc == MG_DONE) {
        mg_log_info("*%llu the certificate phase ended the handshake",
                    (unsigned long long) c->id);
    }
    return rc == MG_OK ? MG_OK : MG_ERROR;
}

void
mg_lua_response(mg_request_t *r)
{
    r->lua_stage = MG_LUA_PHASE_response;
    mg_lua_continue(r, 0);
}

int
mg_lua_resp_collect(void *ctx, const char *p, size_t n)
{
    mg_request_t *r = ctx;
    size_t        max = mg_worker->conf->response_phase_max_body_size;

    if (max && r->bf_in_len + n > max) {
        r->resp_too_large = 1;
        return 1;
    }
    return mg_lua_bf_collect(ctx, p, n);
}

/* A phase that must not wait: header_filter, log. */
static int
mg_lua_run_sync(mg_request_t *r, int phase)
{
    int rc = mg_lua_start(r, phase);

    if (rc == MG_AGAIN) {
        mg_log_error("*%llu a plugin tried to wait in the %s phase, where "
                     "yielding is not allowed", (unsigned long long) r->conn->id,
                     mg_lua_phase_str(phase));
        if (ev_is_active(&r->lua_timer)) {
            ev_timer_stop(mg_worker->loop, &r->lua_timer);
        }
        mg_lua_drop_thread(r);
        rc = MG_ERROR;
    }
    r->lua_stage = 0;
    return rc;
}

int
mg_lua_header_filter(mg_request_t *r)
{
    int rc;

    if (!r->lua || !(r->lua_mask & MG_LUA_PHASE_header_filter)) {
        return MG_OK;
    }
    rc = mg_lua_run_sync(r, MG_LUA_PHASE_header_filter);
    return rc == MG_ERROR ? MG_ERROR : MG_OK;
}

static void
mg_lua_free_cb(void *p)
{
    free(*(char **) p);
    *(char **) p = NULL;
}

/* Grow a request's malloc'd buffer (freed with the request's arena). */
static int
mg_lua_grow(mg_request_t *r, char **buf, size_t *cap, size_t need)
{
    size_t nc;
    char  *nb;

    if (need <= *cap) {
        return MG_OK;
    }
    nc = *cap ? *cap : 4096;
    while (nc < need) {
        nc *= 2;
    }
    if (*buf == NULL && mg_pool_cleanup_add(r->pool, mg_lua_free_cb, buf)
                            != MG_OK)
    {
        return MG_ERROR;
    }
    nb = realloc(*buf, nc);
    if (nb == NULL) {
        return MG_ERROR;
    }
    *buf = nb;
    *cap = nc;
    return MG_OK;
}

int
mg_lua_bf_collect(void *ctx, const char *p, size_t n)
{
    mg_request_t *r = ctx;

    if (mg_lua_grow(r, &r->bf_in, &r->bf_in_cap, r->bf_in_len + n) != MG_OK) {
        return 1;
    }
    memcpy(r->bf_in + r->bf_in_len, p, n);
    r->bf_in_len += n;
    return 0;
}

int
mg_lua_body_filter(mg_request_t *r, const char *p, size_t n, int eof,
                   const char **out, size_t *outn)
{
    int rc;

    r->bf_replaced = 0;
    rc = mg_lua_start_args(r, MG_LUA_PHASE_body_filter, p, n, eof);
    if (rc == MG_AGAIN) {
        mg_log_error("*%llu a plugin tried to wait in the body_filter phase, "
                     "where yielding is not allowed",
                     (unsigned long long) r->conn->id);
        if (ev_is_active(&r->lua_timer)) {
            ev_timer_stop(mg_worker->loop, &r->lua_timer);
        }
        mg_lua_drop_thread(r);
        rc = MG_ERROR;
    }
    r->lua_stage = 0;
    if (rc == MG_ERROR) {
        return MG_ERROR;
    }
    if (r->bf_replaced) {
        *out = r->bf_out;
        *outn = r->bf_out_len;
    } else {
        *out = p;
        *outn = n;
    }
    return MG_OK;
}

void
mg_lua_request_end(mg_request_t *r)
{
    mg_lua_vm_t *vm;
    lua_State   *L;

    if (!r->lua || r->lua_log_done) {
        return;
    }
    r->lua_log_done = 1;
    vm = MG_LUA_VM(r->rt);
    if (ev_is_active(&r->lua_timer)) {
        ev_timer_stop(mg_worker->loop, &r->lua_timer);
    }
    mg_lua_socket_owner_end(r, NULL);   /* cosockets it left open */
    mg_lua_drop_thread(r);      /* a phase cut short by an abort */
    if (r->lua_mask & MG_LUA_PHASE_log) {
        mg_lua_run_sync(r, MG_LUA_PHASE_log);
    }
    if (r->lua_forgotten) {
        return;
    }
    L = vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->finish_ref);
    lua_pushlightuserdata(L, r);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        mg_log_error("lua: runloop.finish failed: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

/* --- FFI API: the client request --------------------------------------- */

#define R ((mg_request_t *) r)
#define OUT(s) (*p = (s).data, *n = (s).len, MG_OK)

int mg_lua_req_method(void *r, const char **p, size_t *n) { return OUT(R->head.method); }
int mg_lua_req_path(void *r, const char **p, size_t *n) { return OUT(R->path); }
int mg_lua_req_query(void *r, const char **p, size_t *n) { return OUT(R->query); }
int mg_lua_req_host(void *r, const char **p, size_t *n) { return OUT(R->host); }
int mg_lua_req_port(void *r) { return R->conn->local_port; }

int
mg_lua_req_sni(void *r, const char **p, size_t *n)
{
    mg_str_t s;

    if (R->conn->tls == NULL) {
        return MG_DECLINED;
    }
    s = mg_tls_sni(R->conn->tls);
    if (s.len == 0) {
        return MG_DECLINED;
    }
    return OUT(s);
}

int
mg_lua_req_scheme(void *r, const char **p, size_t *n)
{
    mg_str_t s;
    if (R->conn->ssl) mg_str_set(&s, "https"); else mg_str_set(&s, "http");
    return OUT(s);
}

int
mg_lua_req_http_version(void *r)
{
    return R->head.http_major * 10 + R->head.http_minor;
}

int mg_lua_req_header_count(void *r) { return (int) R->head.nheaders; }

int
mg_lua_req_header_at(void *r, int i, const char **name, size_t *nl,
                     const char **value, size_t *vl)
{
    if (i < 0 || (size_t) i >= R->head.nheaders) {
        return MG_DECLINED;
    }
    *name = R->head.headers[i].name.data;
    *nl = R->head.headers[i].name.len;
    *value = R->head.headers[i].value.data;
    *vl = R->head.headers[i].value.len;
    return MG_OK;
}

int
mg_lua_req_header_find(void *r, const char *lname, size_t n,
                       const char **value, size_t *vl)
{
    mg_str_t name = { lname, n }, v;

    if (mg_http_request_header(r, name, &v, 1) == 0) {
        return MG_DECLINED;
    }
    *value = v.data;
    *vl = v.len;
    return MG_OK;
}

int
mg_lua_req_client_ip(void *r, char *buf, size_t len)
{
    return (int) mg_conn_peer_ip(R->conn, buf, len);
}

int
mg_lua_req_client_port(void *r)
{
    const mg_conn_t *c = R->conn;
    return ntohs(c->peer.sa.sa_family == AF_INET6 ? c->peer.sin6.sin6_port
                                                   : c->peer.sin.sin_port);
}

int
mg_lua_req_id(void *r, const char **p, size_t *n)
{
    *p = R->request_id;
    *n = 32;
    return MG_OK;
}

double mg_lua_req_start_time(void *r) { return R->start; }

/*
 * Reading the whole request body for a plugin.  The bytes go into one
 * arena block (Content-Length known: exactly that; chunked: grown by
 * doubling) bounded by client_max_body_size; when complete the block
 * becomes the body sent upstream (as a Content-Length body, so retries
 * can send it again) and the waiting coroutine is resumed.
 */
#define MG_LUA_BODY_CHUNKED_MAX (64 * 1024 * 1024)

static int
mg_lua_body_room(mg_request_t *r, size_t need)
{
    size_t max = mg_worker->conf->client_max_body_size;
    size_t cap;
    char  *nb;

    if (max == 0 || max > MG_LUA_BODY_CHUNKED_MAX) {
        max = MG_LUA_BODY_CHUNKED_MAX;
    }
    if (r->lua_body_len + need <= r->lua_body_cap) {
        return MG_OK;
    }
    if (r->lua_body_len + need > max) {
        r->body_too_large = 1;
        return MG_ERROR;
    }
    cap = r->lua_body_cap ? r->lua_body_cap * 2 : 16384;
    while (cap < r->lua_body_len + need) {
        cap *= 2;
    }
    if (cap > max) {
        cap = max;
    }
    nb = mg_pool_alloc(r->pool, cap);
    if (nb == NULL) {
        return MG_ERROR;
    }
    if (r->lua_body_len) {
        memcpy(nb, r->lua_body, r->lua_body_len);
    }
    r->lua_body = nb;
    r->lua_body_cap = cap;
    return MG_OK;
}

static int
mg_lua_body_chunk(void *ctx, const char *p, size_t n)
{
    mg_request_t *r = ctx;

    if (mg_lua_body_room(r, n) != MG_OK) {
        return 1;
    }
    memcpy(r->lua_body + r->lua_body_len, p, n);
    r->lua_body_len += n;
    return 0;
}

/* Take what c->in holds: MG_OK complete, MG_AGAIN more to come,
 * MG_ERROR bad framing or too large. */
static int
mg_lua_body_take(mg_request_t *r)
{
    mg_buf_t *b = r->conn->in;
    size_t    avail = mg_buf_len(b);

    if (r->body_chunked) {
        ssize_t k = avail ? mg_http_body_feed(&r->parser, b->pos, avail,
                                              mg_lua_body_chunk, r) : 0;
        if (k < 0) {
            return MG_ERROR;
        }
        b->pos += k;
        if (mg_buf_len(b) == 0) {
            b->pos = b->last = r->body_base;     /* the head stays in place */
        }
        if (!mg_http_parser_done(&r->parser)) {
            return MG_AGAIN;
        }
    } else {
        size_t n = mg_min(avail, (size_t) r->body_left);
        memcpy(r->lua_body + r->lua_body_len, b->pos, n);
        r->lua_body_len += n;
        r->body_left -= (int64_t) n;
        b->pos += n;
        if (mg_buf_len(b) == 0) {
            b->pos = b->last = r->body_base;
        }
        if (r->body_left > 0) {
            return MG_AGAIN;
        }
    }
    /* complete: it is now the body sent upstream, and may be sent again */
    r->lua_body_reading = 0;
    r->lua_body_done = 1;
    r->body_done = 1;
    r->body_replayable = 1;
    r->body_seen = r->lua_body_len;
    if (r->up_body.data == NULL) {
        r->up_body.data = r->lua_body;
        r->up_body.len = r->lua_body_len;
    }
    if (mg_buf_len(b) == 0) {
        b->pos = b->last = r->body_base;     /* the head stays in place */
    }
    mg_conn_timer_set(r->conn, 0);
    return MG_OK;
}

void
mg_lua_body_input(mg_request_t *r)
{
    int rc = mg_lua_body_take(r);

    if (rc == MG_AGAIN) {
        mg_conn_timer_set(r->conn, mg_worker->conf->client_body_timeout);
        mg_conn_read_resume(r->conn);
        return;
    }
    if (rc == MG_ERROR) {
        r->lua_body_reading = 0;
        r->keepalive = 0;
        mg_http_send_error(r, r->body_too_large ? 413 : 400, NULL);
        return;
    }
    mg_lua_continue(r, 1);
}

int
mg_lua_req_body(void *r, const char **p, size_t *n)
{
    mg_request_t *rq = R;
    int           rc;

    if (rq->lua_body_done) {
        *p = rq->lua_body;
        *n = rq->lua_body_len;
        return MG_OK;
    }
    if (!rq->has_body) {
        *p = "";
        *n = 0;
        return MG_OK;
    }
    if (rq->body_ptr) {
        *p = rq->body_ptr;
        *n = rq->body_len;
        return MG_OK;
    }
    if (rq->body_replayable && rq->lua_stage != 0) {
        /* before proxying the whole body sits right after the head */
        *p = rq->conn->in->pos;
        *n = (size_t) rq->head.content_length;
        return MG_OK;
    }
    if (rq->lua_co == NULL || (rq->lua_stage != MG_LUA_PHASE_rewrite
                               && rq->lua_stage != MG_LUA_PHASE_access))
    {
        mg_lua_set_error("%s", "the request body can only be read in "
                         "rewrite and access");
        return MG_ERROR;
    }
    if (!rq->body_chunked
        && mg_lua_body_room(rq, (size_t) rq->head.content_length) != MG_OK)
    {
        mg_lua_set_error("%s", "request body too large to buffer");
        return MG_ERROR;
    }
    if (rq->head.expect_continue && !rq->continue_sent
        && rq->head.http_minor >= 1)
    {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct iovec      ci = { (void *) cont, sizeof(cont) - 1 };
        if (rq->conn->io->writev(rq->conn, &ci, 1) != (ssize_t) sizeof(cont) - 1) {
            mg_lua_set_error("%s", "cannot send 100 Continue");
            return MG_ERROR;
        }
        rq->continue_sent = 1;
    }
    rc = mg_lua_body_take(rq);
    if (rc == MG_OK) {
        *p = rq->lua_body;
        *n = rq->lua_body_len;
        return MG_OK;
    }
    if (rc == MG_ERROR) {
        mg_lua_set_error("%s", rq->body_too_large ? "request body too large"
                                                  : "invalid chunked body");
        return MG_ERROR;
    }
    rq->lua_body_reading = 1;
    mg_conn_timer_set(rq->conn, mg_worker->conf->client_body_timeout);
    mg_conn_read_resume(rq->conn);
    return MG_AGAIN;            /* resumed by mg_lua_body_input */
}

int
mg_lua_req_route_id(void *r, const char **p, size_t *n)
{
    if (R->route == NULL) return MG_DECLINED;
    return OUT(R->route->id);
}

int
mg_lua_req_service_id(void *r, const char **p, size_t *n)
{
    if (R->route == NULL || R->route->service == NULL) return MG_DECLINED;
    return OUT(R->route->service->id);
}

int mg_lua_req_capture_count(void *r) { return (int) R->match.ncaptures; }

int
mg_lua_req_capture_at(void *r, int i, const char **name, size_t *nl,
                      const char **value, size_t *vl)
{
    if (i < 0 || (size_t) i >= R->match.ncaptures) {
        return MG_DECLINED;
    }
    *name = R->match.capture_names[i].data;
    *nl = R->match.capture_names[i].len;
    *value = R->match.captures[i].data;
    *vl = R->match.captures[i].len;
    return MG_OK;
}

/* --- FFI API: the upstream request ------------------------------------- */

static int
mg_lua_mod_add(mg_request_t *r, mg_hdr_mod_t **list, const char *name,
               size_t nl, const char *value, size_t vl, int add)
{
    mg_hdr_mod_t *m, **pp;

    if (nl == 0 || memchr(name, '\n', nl) || memchr(name, '\r', nl)
        || (value && (memchr(value, '\n', vl) || memchr(value, '\r', vl))))
    {
        mg_lua_set_error("%s", "invalid header name or value (CR/LF)");
        return MG_ERROR;
    }
    if (!add) {
        /* a set or a clear replaces earlier changes of that header */
        for (pp = list; *pp; ) {
            mg_str_t n2 = { name, nl };
            if (mg_str_caseeq((*pp)->name, n2)) {
                *pp = (*pp)->next;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    m = mg_pool_calloc(r->pool, sizeof(*m));
    if (m == NULL) {
        mg_lua_set_error("%s", "out of memory");
        return MG_ERROR;
    }
    m->name = mg_pool_str(r->pool, name, nl);
    if (value) {
        m->value = mg_pool_str(r->pool, value, vl);
    }
    m->add = add;
    for (pp = list; *pp; pp = &(*pp)->next) { }
    *pp = m;
    return MG_OK;
}

static int
mg_lua_before_upstream(mg_request_t *r)
{
    if (r->ustate != MG_REQ_UPSTREAM_NONE || r->uhead) {
        mg_lua_set_error("%s", "the upstream request was already sent");
        return MG_ERROR;
    }
    return MG_OK;
}

int
mg_lua_upstream_set_header(void *r, const char *name, size_t nl,
                           const char *value, size_t vl, int add)
{
    if (mg_lua_before_upstream(R) != MG_OK) return MG_ERROR;
    return mg_lua_mod_add(R, &R->up_mods, name, nl, value, vl, add);
}

int
mg_lua_upstream_set_path(void *r, const char *p, size_t n)
{
    char *np;

    if (mg_lua_before_upstream(R) != MG_OK) return MG_ERROR;
    if (n == 0 || p[0] != '/' || memchr(p, ' ', n) || memchr(p, '\n', n)
        || memchr(p, '\r', n) || memchr(p, '?', n))
    {
        mg_lua_set_error("%s", "path must start with / and contain no "
                         "spaces, CR/LF or '?'");
        return MG_ERROR;
    }
    np = mg_pool_alloc(R->pool, n);
    if (np == NULL) return MG_ERROR;
    memcpy(np, p, n);
    R->upath = np;
    R->upath_len = n;
    return MG_OK;
}

int
mg_lua_upstream_set_query(void *r, const char *p, size_t n)
{
    if (mg_lua_before_upstream(R) != MG_OK) return MG_ERROR;
    if (memchr(p, ' ', n) || memchr(p, '\n', n) || memchr(p, '\r', n)) {
        mg_lua_set_error("%s", "query must contain no spaces or CR/LF");
        return MG_ERROR;
    }
    R->up_query = mg_pool_str(R->pool, p, n);
    R->query = R->up_query;
    return MG_OK;
}

int
mg_lua_upstream_set_method(void *r, const char *p, size_t n)
{
    size_t i;

    if (mg_lua_before_upstream(R) != MG_OK) return MG_ERROR;
    for (i = 0; i < n; i++) {
        if (p[i] < 'A' || p[i] > 'Z') {
            mg_lua_set_error("%s", "method must be upper-case letters");
            return MG_ERROR;
        }
    }
    if (n == 0) return MG_ERROR;
    R->up_method = mg_pool_str(R->pool, p, n);
    return MG_OK;
}

int
mg_lua_upstream_set_body(void *r, const char *p, size_t n)
{
    if (mg_lua_before_upstream(R) != MG_OK) return MG_ERROR;
    if (R->has_body && !R->body_replayable) {
        mg_lua_set_error("%s", "the request body is still arriving; it can be "
                         "replaced only when it came with the request head");
        return MG_ERROR;
    }
    R->up_body = mg_pool_str(R->pool, p, n);
    if (R->up_body.data == NULL) return MG_ERROR;
    return MG_OK;
}

int
mg_lua_upstream_set_target(void *r, const char *host, size_t hl, int port)
{
    mg_peer_t *peer;
    mg_str_t   h = { host, hl };

    if (mg_lua_before_upstream(R) != MG_OK) return MG_ERROR;
    if (hl == 0 || port <= 0 || port > 65535) {
        mg_lua_set_error("%s", "invalid host or port");
        return MG_ERROR;
    }
    peer = mg_pool_calloc(R->pool, sizeof(*peer));
    if (peer == NULL || mg_peer_init(R->pool, peer, h, (uint16_t) port, 80)
                            != MG_OK)
    {
        return MG_ERROR;
    }
    peer->no_pool = 1;          /* arena memory: never a keep-alive pool */
    R->peer_override = peer;
    return MG_OK;
}

/* --- FFI API: the response ------------------------------------------- */

int mg_lua_resp_status(void *r) { return R->status; }

int
mg_lua_resp_set_status(void *r, int status)
{
    if (R->response_started || status < 100 || status > 999) {
        mg_lua_set_error("%s", "status can only be set before the response "
                         "head is sent, to 100..999");
        return MG_ERROR;
    }
    R->status = status;
    R->status_override = status;
    return MG_OK;
}

int
mg_lua_resp_header_count(void *r)
{
    return R->rhead.status ? (int) R->rhead.nheaders : 0;
}

int
mg_lua_resp_header_at(void *r, int i, const char **name, size_t *nl,
                      const char **value, size_t *vl)
{
    if (!R->rhead.status || i < 0 || (size_t) i >= R->rhead.nheaders) {
        return MG_DECLINED;
    }
    *name = R->rhead.headers[i].name.data;
    *nl = R->rhead.headers[i].name.len;
    *value = R->rhead.headers[i].value.data;
    *vl = R->rhead.headers[i].value.len;
    return MG_OK;
}

int
mg_lua_resp_set_header(void *r, const char *name, size_t nl,
                       const char *value, size_t vl, int add)
{
    if (R->response_started) {
        mg_lua_set_error("%s", "the response head was already sent");
        return MG_ERROR;
    }
    return mg_lua_mod_add(R, &R->resp_mods, name, nl, value, vl, add);
}

int
mg_lua_header_mod_at(void *r, int resp, int i, const char **name,
                     size_t *nl, const char **value, size_t *vl)
{
    const mg_hdr_mod_t *m = resp ? R->resp_mods : R->up_mods;

    for (; m != NULL && i > 0; m = m->next, i--) { }
    if (m == NULL || i < 0) {
        return -1;
    }
    *name = m->name.data;
    *nl = m->name.len;
    *value = m->value.data;
    *vl = m->value.len;
    return m->add ? 1 : 0;
}

int
mg_lua_resp_exit(void *r, int status, const char *body, size_t bl)
{
    if (R->response_started
        || (R->rhead.status && R->lua_stage != MG_LUA_PHASE_response))
    {
        mg_lua_set_error("%s", "exit is only possible before a response "
                         "from the upstream has started");
        return MG_ERROR;
    }
    if (status < 100 || status > 999) {
        mg_lua_set_error("%s", "exit status must be 100..999");
        return MG_ERROR;
    }
    R->exit_status = status;
    R->exit_body = body ? mg_pool_str(R->pool, body, bl) : (mg_str_t) { NULL, 0 };
    R->lua_exit = 1;
    return MG_OK;
}

const char *
mg_lua_resp_source(void *r)
{
    if (R->lua_exit) return "exit";
    if (R->rhead.status) return "service";
    return "error";
}

int
mg_lua_resp_set_chunk(void *r, const char *p, size_t n)
{
    if (R->lua_stage == MG_LUA_PHASE_response) {
        /* kong.response.set_raw_body: the buffered body itself */
        if (mg_lua_grow(R, &R->bf_in, &R->bf_in_cap, n + 1) != MG_OK) {
            mg_lua_set_error("%s", "out of memory");
            return MG_ERROR;
        }
        if (n) {
            memcpy(R->bf_in, p, n);
        }
        R->bf_in_len = n;
        return MG_OK;
    }
    if (R->lua_stage != MG_LUA_PHASE_body_filter) {
        mg_lua_set_error("%s", "the chunk can only be set in body_filter");
        return MG_ERROR;
    }
    if (mg_lua_grow(R, &R->bf_out, &R->bf_out_cap, n + 1) != MG_OK) {
        mg_lua_set_error("%s", "out of memory");
        return MG_ERROR;
    }
    if (n) {
        memcpy(R->bf_out, p, n);
    }
    R->bf_out_len = n;
    R->bf_replaced = 1;
    return MG_OK;
}

/* --- FFI API: waits and misc ------------------------------------------- */

static void
mg_lua_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_request_t *r = w->data;
    mg_conn_t    *c = r->conn;

    (void) revents;
    ev_timer_stop(loop, w);
    mg_time_update(ev_now(loop));
    MG_CONN_ENTER(c);
    mg_lua_continue(r, 1);
    MG_CONN_LEAVE(c);
    mg_worker_ready_flush();
}

int
mg_lua_sleep(void *r, double seconds)
{
    if (R->lua_co == NULL || (R->lua_stage != MG_LUA_PHASE_rewrite
                              && R->lua_stage != MG_LUA_PHASE_access
                              && R->lua_stage != MG_LUA_PHASE_response))
    {
        mg_lua_set_error("%s", "ngx.sleep can only wait in rewrite, access "
                         "and response");
        return MG_ERROR;
    }
    if (seconds < 0) {
        seconds = 0;
    }
    ev_timer_init(&R->lua_timer, mg_lua_timer_cb, seconds, 0.);
    R->lua_timer.data = r;
    ev_timer_start(mg_worker->loop, &R->lua_timer);
    return MG_AGAIN;
}

void
mg_lua_log(int level, const char *msg, size_t n)
{
    if (level < MG_LOG_DEBUG) level = MG_LOG_DEBUG;
    if (level > MG_LOG_EMERG) level = MG_LOG_EMERG;
    mg_log(level, "%.*s", (int) mg_min(n, 1900), msg);
}

double mg_lua_now(void) { return mg_time_now; }

double
mg_lua_update_time(void)
{
    if (mg_worker == NULL) {
        mg_time_update(ev_time());      /* the master, loading plugins */
        return mg_time_now;
    }
    ev_now_update(mg_worker->loop);
    mg_time_update(ev_now(mg_worker->loop));
    return mg_time_now;
}

/* --- timers (ngx.timer.at / every) ------------------------------------ */

/*
 * A timer owns its ev_timer and, while its callback runs, a coroutine of
 * its own (not a request's): ngx.sleep inside it re-arms the same watcher.
 * Timers live in the worker only; when the worker stops gracefully the
 * pending ones run at once with premature = true, as in OpenResty.
 */
typedef struct mg_lua_timer_s {
    ev_timer               w;
    int                    id;
    double                 every;
    int                    co_ref;
    lua_State             *co;
    unsigned               running:1;
    unsigned               sleeping:1;
    struct mg_lua_timer_s *prev, *next;
} mg_lua_timer_t;

static mg_lua_timer_t *mg_lua_timers;
static int             mg_lua_timers_pending, mg_lua_timers_running;

static void
mg_lua_timer_unlink(mg_lua_timer_t *t)
{
    if (t->prev) t->prev->next = t->next; else mg_lua_timers = t->next;
    if (t->next) t->next->prev = t->prev;
}

/* Start or resume t's coroutine; clean up or re-arm when it ends. */
static void
mg_lua_timer_run(mg_lua_timer_t *t, int premature, int resuming)
{
    mg_lua_vm_t *vm = MG_LUA_VM(mg_worker->rt);
    lua_State   *L = vm->L;
    int          rc;

    if (!resuming) {
        mg_lua_timers_pending--;
        mg_lua_timers_running++;
        t->running = 1;
        t->co = lua_newthread(L);
        t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_rawgeti(t->co, LUA_REGISTRYINDEX, vm->timer_ref);
        lua_pushinteger(t->co, t->id);
        lua_pushboolean(t->co, premature);
        lua_pushlightuserdata(t->co, t);
        rc = mg_lua_resume_co(vm, t->co, 3);
    } else {
        rc = mg_lua_resume_co(vm, t->co, 0);
    }
    if (rc == LUA_YIELD) {
        lua_settop(t->co, 0);
        return;                 /* sleeping: the watcher resumes it */
    }
    if (rc != 0) {
        mg_log_error("lua timer %d failed: %s", t->id,
                     lua_isstring(t->co, -1) ? lua_tostring(t->co, -1) : "?");
    }
    mg_lua_socket_owner_end(NULL, t);   /* cosockets it left open */
    luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref);
    t->co = NULL;
    t->running = 0;
    mg_lua_timers_running--;
    if (t->every > 0 && !premature && !mg_worker->shutting_down) {
        ev_timer_set(&t->w, t->every, 0.);
        ev_timer_start(mg_worker->loop, &t->w);
        mg_lua_timers_pending++;
        return;
    }
    mg_lua_timer_unlink(t);
    free(t);
}

static void
mg_lua_ngx_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_lua_timer_t *t = (mg_lua_timer_t *) w;

    (void) revents;
    ev_timer_stop(loop, w);
    mg_time_update(ev_now(loop));
    if (t->sleeping) {
        t->sleeping = 0;
        mg_lua_timer_run(t, 0, 1);
    } else {
        mg_lua_timer_run(t, 0, 0);
    }
    mg_worker_ready_flush();
}

int
mg_lua_timer_at(double delay, int id, double every)
{
    mg_lua_timer_t *t;

    if (mg_worker == NULL || mg_worker->rt == NULL || mg_worker->rt->lua == NULL
        || MG_LUA_VM(mg_worker->rt)->timer_ref == LUA_NOREF)
    {
        mg_lua_set_error("%s", "timers run in workers only");
        return MG_ERROR;
    }
    if (mg_worker->shutting_down) {
        mg_lua_set_error("%s", "process exiting");
        return MG_ERROR;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        mg_lua_set_error("%s", "out of memory");
        return MG_ERROR;
    }
    t->id = id;
    t->every = every;
    t->co_ref = LUA_NOREF;
    ev_timer_init(&t->w, mg_lua_ngx_timer_cb, delay < 0 ? 0 : delay, 0.);
    ev_timer_start(mg_worker->loop, &t->w);
    t->next = mg_lua_timers;
    if (mg_lua_timers) mg_lua_timers->prev = t;
    mg_lua_timers = t;
    mg_lua_timers_pending++;
    return MG_OK;
}

int
mg_lua_timer_sleep(void *tp, double seconds)
{
    mg_lua_timer_t *t = tp;

    if (t == NULL || !t->running) {
        mg_lua_set_error("%s", "not inside a timer");
        return MG_ERROR;
    }
    t->sleeping = 1;
    ev_timer_set(&t->w, seconds < 0 ? 0 : seconds, 0.);
    ev_timer_start(mg_worker->loop, &t->w);
    return MG_AGAIN;
}

int
mg_lua_timer_count(int running)
{
    return running ? mg_lua_timers_running : mg_lua_timers_pending;
}

void
mg_lua_timers_shutdown(void)
{
    mg_lua_timer_t *t, *next;

    for (t = mg_lua_timers; t; t = next) {
        next = t->next;
        if (!t->running) {
            ev_timer_stop(mg_worker->loop, &t->w);
            mg_lua_timer_run(t, 1, 0);      /* premature = true */
        }
    }
}

int mg_lua_worker_id(void) { return mg_worker ? mg_worker->slot : -1; }
int mg_lua_worker_count(void) { return mg_worker ? mg_worker->conf->worker_processes : 0; }
int mg_lua_worker_pid(void) { return (int) getpid(); }

/* --- cosocket hook (mg_lua_socket.h) ---------------------------------- */

void
mg_lua_wake(void *r, void *t)
{
    if (r != NULL) {
        mg_request_t *rq = r;
        mg_conn_t    *c = rq->conn;

        MG_CONN_ENTER(c);
        mg_lua_continue(rq, 1);
        MG_CONN_LEAVE(c);
    } else if (t != NULL) {
        mg_lua_timer_run(t, 0, 1);
    }
    mg_worker_ready_flush();
}
