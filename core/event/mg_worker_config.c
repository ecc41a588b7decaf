/*
 * mg_worker_config.c -- live configuration: a worker notices that the
 * entity store moved to a new config version (an Admin API write, a POST
 * /config, an import) and swaps to a runtime built from it, between
 * requests, without dropping a connection.
 *
 * Noticing.  After every commit the store rewrites <prefix>/lmdb/version
 * (mg_store.h), so an inotify watch on that file wakes the worker at once;
 * the version itself is then read from the store (a read transaction,
 * well under a microsecond) and compared with the running runtime's.  A 1 s
 * timer repeats the check in case an event is missed (inotify queue
 * overflow, a file system without inotify).  Rejected: a pipe or signal
 * from the writer -- writers are several (the admin process, `moongate
 * config db_import`, a data plane's sync) and need not know the workers;
 * polling alone -- either slow (1 s) or a wake-up per worker every few
 * milliseconds for nothing.
 *
 * Swapping.  The new runtime (router, balancers, health, TLS
 * certificates, the plugins' per-route lists on the worker's one Lua VM)
 * is built in full first; any failure leaves the running one in place and
 * is logged once per version.  Requests in flight hold the runtime they
 * started on (mg_runtime_hold) and finish on it; the old one is freed when
 * the last of them ends.  Writes that arrive while a build runs coalesce:
 * the next check builds the newest version only.
 *
 * The admin process watches too, for one reason: GET /upstreams/{u}/health
 * reads the targets' state through a runtime of its own process
 * (mg_health_target_status).  There the new runtime is built without TLS
 * or plugins and kept beside the admin's own, which never changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include "mg_event.h"
#include "../base/mg_log.h"
#include "../base/mg_time.h"
#include "../conf/mg_config_store.h"
#include "../upstream/mg_upstream.h"
#include "../upstream/mg_health.h"
#include "../tls/mg_tls.h"
#include "../lua/mg_lua.h"

#define MG_CONFIG_POLL 1.0      /* s: the safety net under inotify */

static mg_store_t *mg_wc_store;
static int         mg_wc_fd = -1;
static ev_io       mg_wc_notify;
static ev_timer    mg_wc_poll;
static uint64_t    mg_wc_failed;   /* last version that did not build */
static mg_runtime_t *mg_wc_shadow;  /* admin process: the health view */

static mg_runtime_t *
mg_wc_build(mg_worker_t *w, uint64_t *version, char *err, size_t errlen)
{
    mg_config_t  *cf;
    mg_runtime_t *rt;
    size_t        i;

    cf = mg_config_from_store(mg_wc_store, version, err, errlen);
    if (cf == NULL) {
        return NULL;
    }
    rt = mg_runtime_build(cf, err, errlen);
    if (rt == NULL) {
        mg_config_free(cf);
        return NULL;
    }
    rt->version = *version;
    rt->health = mg_health_create(rt, err, errlen);
    if (rt->health == NULL) {
        goto failed;
    }
    if (w->admin) {
        return rt;
    }
    for (i = 0; i < w->conf->proxy_listen.n; i++) {
        if (w->conf->proxy_listen.elts[i].ssl) {
            rt->tls_server = mg_tls_server_create(w->conf, rt->cf, err,
                                                  errlen);
            if (rt->tls_server == NULL) {
                goto failed;
            }
            break;
        }
    }
    if (mg_lua_runtime_reconfigure(rt, w->rt, w->conf, err, errlen)
        != MG_OK)
    {
        goto failed;
    }
    return rt;

failed:
    mg_runtime_free(rt);
    return NULL;
}

/* Build and swap to the store's current version if it is new. */
static void
mg_wc_check(mg_worker_t *w)
{
    mg_runtime_t *rt, *old = w->rt;
    uint64_t      version;
    double        start;
    char          err[4096];

    if (w->shutting_down) {
        return;
    }
    if (w->admin && mg_wc_shadow) {
        old = mg_wc_shadow;
    }
    version = mg_store_version(mg_wc_store);
    if (version == 0 || (old && version == old->version)
        || version == mg_wc_failed)
    {
        return;
    }
    start = ev_time();
    rt = mg_wc_build(w, &version, err, sizeof(err));
    if (rt == NULL) {
        mg_wc_failed = version;
        mg_log_error("worker %d: configuration version %llu not applied, "
                     "keeping version %llu: %s", w->slot,
                     (unsigned long long) version,
                     (unsigned long long) (old ? old->version : 0), err);
        return;
    }
    if (w->admin) {
        if (mg_wc_shadow) {
            mg_runtime_free(mg_wc_shadow);
        }
        mg_wc_shadow = rt;
        return;
    }
    if (w->slot == 0 && old && old->health) {
        mg_health_stop_active(old->health);
    }
    w->rt = rt;
    if (w->slot == 0 && rt->health) {
        mg_health_start_active(rt->health, w->loop, rt);
    }
    if (old) {
        mg_runtime_retire(old);
    }
    mg_time_update(ev_time());
    mg_log_info("worker %d: configuration version %llu in effect (%zu "
                "routes, built in %.1f ms)", w->slot,
                (unsigned long long) version, rt->cf->routes_n,
                (ev_time() - start) * 1000);
}

static void
mg_wc_notify_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    char buf[4096];

    (void) loop;
    (void) revents;
    /* drain: one check covers every commit queued so far */
    while (read(io->fd, buf, sizeof(buf)) > 0) {}
    mg_wc_check(mg_worker);
    mg_worker_ready_flush();
}

static void
mg_wc_poll_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void) loop;
    (void) t;
    (void) revents;
    mg_wc_check(mg_worker);
    mg_worker_ready_flush();
}

void
mg_worker_config_init(mg_worker_t *w)
{
    char dir[4096], file[4200], err[512];

    mg_conf_path(w->conf, "lmdb", dir, sizeof(dir));
    mg_wc_store = mg_store_open(dir, w->conf->lmdb_map_size, err,
                                sizeof(err));
    if (mg_wc_store == NULL) {
        mg_log_error("worker %d: entity store unavailable, configuration "
                     "changes will not apply until a reload: %s", w->slot,
                     err);
        return;
    }
    snprintf(file, sizeof(file), "%s/version", dir);
    mg_wc_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (mg_wc_fd >= 0
        && inotify_add_watch(mg_wc_fd, file, IN_MODIFY | IN_CLOSE_WRITE) < 0)
    {
        mg_log_warn("worker %d: inotify on %s: %s; configuration changes "
                    "apply within %.0f s", w->slot, file, strerror(errno),
                    MG_CONFIG_POLL);
        close(mg_wc_fd);
        mg_wc_fd = -1;
    }
    if (mg_wc_fd >= 0) {
        ev_io_init(&mg_wc_notify, mg_wc_notify_cb, mg_wc_fd, EV_READ);
        ev_io_start(w->loop, &mg_wc_notify);
        ev_unref(w->loop);
    }
    ev_timer_init(&mg_wc_poll, mg_wc_poll_cb, MG_CONFIG_POLL, MG_CONFIG_POLL);
    ev_timer_start(w->loop, &mg_wc_poll);
    ev_unref(w->loop);
    /* a write may have landed between the master's build and now */
    mg_wc_check(w);
}

void
mg_worker_config_stop(mg_worker_t *w)
{
    if (mg_wc_store == NULL) {
        return;
    }
    if (mg_wc_fd >= 0) {
        ev_ref(w->loop);
        ev_io_stop(w->loop, &mg_wc_notify);
        close(mg_wc_fd);
        mg_wc_fd = -1;
    }
    ev_ref(w->loop);
    ev_timer_stop(w->loop, &mg_wc_poll);
}
