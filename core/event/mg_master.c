/*
 * mg_master.c -- the master process: reads the configuration, opens the
 * listening sockets, forks workers, restarts a worker that dies, and
 * handles SIGHUP (reload), SIGQUIT (graceful stop) and SIGTERM/SIGINT
 * (fast stop).
 *
 * The master holds every listening socket for its whole life.  With
 * `reuseport`, each proxy_listen entry gets one socket per worker slot and
 * worker N accepts on socket N; a reload hands the same sockets to the new
 * generation, and an old worker just stops accepting, so connections
 * queued on a socket are never reset by a reload (closing a reuseport
 * socket drops its queue).  Without `reuseport` all workers share one
 * socket.
 *
 * The master runs no event loop: it sleeps in sigsuspend() and acts on
 * flags set by signal handlers (nginx's master cycle).  Rejected: a libev
 * loop here -- its fork handling would then have to be undone in every
 * worker, and the master has nothing else to wait for.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include "mg_event.h"
#include "../base/mg_log.h"
#include "../base/mg_pool.h"
#include "../conf/mg_config.h"
#include "../upstream/mg_upstream.h"
#include "../upstream/mg_health.h"
#include "../tls/mg_tls.h"
#include "../lua/mg_lua.h"
#include "../store/mg_shdict.h"
#include "../conf/mg_config_store.h"

#define MG_MAX_WORKERS 256

typedef struct {
    pid_t pid;
    int   slot;
    int   generation;
    int   exiting;
} mg_proc_t;

typedef struct {
    mg_conf_t    *conf;
    mg_runtime_t *rt;
    int          *fds;        /* [listen entry][slot], -1 where unused */
    size_t        nlisten;
    int           nslots;     /* sockets per entry (workers or 1) */
    int           admin_fds[MG_CONF_MAX_LISTEN];
    size_t        nadmin;     /* admin_listen sockets (0: no admin) */
    size_t        ncluster;   /* cluster_listen sockets, after the admin
                                 ones in admin_fds (control plane) */
    int           cluster_role; /* 1 control plane, 2 data plane */
    double        load_ms;    /* configuration read to runtime built */
    char          listen_key[4096];
} mg_gen_t;

static volatile sig_atomic_t mg_sig_reload, mg_sig_quit, mg_sig_term,
                             mg_sig_child;
static mg_proc_t mg_procs[MG_MAX_WORKERS * 2];
static int       mg_nprocs;
static int       mg_generation;
static const char *mg_conf_file;
static const char *mg_prefix;

static void
mg_master_signal(int sig)
{
    switch (sig) {
    case SIGHUP:  mg_sig_reload = 1; break;
    case SIGQUIT: mg_sig_quit = 1; break;
    case SIGTERM:
    case SIGINT:  mg_sig_term = 1; break;
    case SIGCHLD: mg_sig_child = 1; break;
    }
}

static int
mg_mkdirs(const char *prefix)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s", prefix);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/logs", prefix);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/pids", prefix);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s", prefix);
    return access(p, W_OK) == 0 ? MG_OK : MG_ERROR;
}

static int
mg_listen_open(const mg_listen_t *ls, char *err, size_t errlen)
{
    int fd, one = 1;

    fd = socket(ls->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket() for %.*s failed: %s",
                 (int) ls->text.len, ls->text.data, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls->reuseport) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    if (ls->addr.ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (const struct sockaddr *) &ls->addr, ls->addrlen) < 0) {
        snprintf(err, errlen, "bind() to %.*s failed: %s", (int) ls->text.len,
                 ls->text.data, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, ls->backlog > 0 ? ls->backlog : 511) < 0) {
        snprintf(err, errlen, "listen() on %.*s failed: %s",
                 (int) ls->text.len, ls->text.data, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void
mg_listen_key(const mg_conf_t *conf, char *key, size_t len)
{
    size_t i, n = 0;

    n += (size_t) snprintf(key + n, len - n, "%d|", conf->worker_processes);
    for (i = 0; i < conf->proxy_listen.n && n < len; i++) {
        const mg_listen_t *l = &conf->proxy_listen.elts[i];
        n += (size_t) snprintf(key + n, len - n, "%.*s/%d/%d/%d,",
                               (int) l->text.len, l->text.data, l->reuseport,
                               l->ssl, l->backlog);
    }
    for (i = 0; i < conf->admin_listen.n && n < len; i++) {
        const mg_listen_t *l = &conf->admin_listen.elts[i];
        n += (size_t) snprintf(key + n, len - n, "a:%.*s/%d/%d,",
                               (int) l->text.len, l->text.data, l->ssl,
                               l->backlog);
    }
    if (strcmp(conf->role, "control_plane") == 0) {
        for (i = 0; i < conf->cluster_listen.n && n < len; i++) {
            const mg_listen_t *l = &conf->cluster_listen.elts[i];
            n += (size_t) snprintf(key + n, len - n, "c:%.*s/%d,",
                                   (int) l->text.len, l->text.data,
                                   l->backlog);
        }
    }
}

static void
mg_gen_close_fds(mg_gen_t *g)
{
    size_t i;

    for (i = 0; i < g->nadmin + g->ncluster; i++) {
        close(g->admin_fds[i]);
    }
    g->nadmin = 0;
    g->ncluster = 0;
    if (g->fds == NULL) {
        return;
    }
    for (i = 0; i < g->nlisten * (size_t) g->nslots; i++) {
        if (g->fds[i] >= 0) {
            close(g->fds[i]);
        }
    }
    free(g->fds);
    g->fds = NULL;
}

static int
mg_gen_open_fds(mg_gen_t *g, char *err, size_t errlen)
{
    size_t i;
    int    s;

    g->nlisten = g->conf->proxy_listen.n;
    g->nslots = g->conf->worker_processes;
    g->fds = malloc(sizeof(int) * (g->nlisten * (size_t) g->nslots + 1));
    if (g->fds == NULL) {
        snprintf(err, errlen, "out of memory");
        return MG_ERROR;
    }
    for (i = 0; i < g->nlisten * (size_t) g->nslots; i++) {
        g->fds[i] = -1;
    }
    for (i = 0; i < g->nlisten; i++) {
        const mg_listen_t *ls = &g->conf->proxy_listen.elts[i];
        for (s = 0; s < g->nslots; s++) {
            if (s > 0 && !ls->reuseport) {
                g->fds[i * (size_t) g->nslots + (size_t) s] =
                    g->fds[i * (size_t) g->nslots];
                continue;
            }
            g->fds[i * (size_t) g->nslots + (size_t) s] = mg_listen_open(ls, err,
                                                                         errlen);
            if (g->fds[i * (size_t) g->nslots + (size_t) s] < 0) {
                return MG_ERROR;
            }
        }
    }
    for (i = 0; i < g->conf->admin_listen.n; i++) {
        int fd = mg_listen_open(&g->conf->admin_listen.elts[i], err, errlen);
        if (fd < 0) {
            return MG_ERROR;
        }
        g->admin_fds[g->nadmin++] = fd;
    }
    /* the control plane's cluster listener: served by the admin process
     * with the cluster TLS server (mg_worker.c); the config checked that
     * admin and cluster addresses fit admin_fds together */
    for (i = 0; g->cluster_role == 1 && i < g->conf->cluster_listen.n; i++) {
        int fd = mg_listen_open(&g->conf->cluster_listen.elts[i], err,
                                errlen);
        if (fd < 0) {
            return MG_ERROR;
        }
        g->admin_fds[g->nadmin + g->ncluster++] = fd;
    }
    /* shared sockets were stored several times: mark the copies so
     * close_fds closes each once */
    for (i = 0; i < g->nlisten; i++) {
        if (!g->conf->proxy_listen.elts[i].reuseport) {
            for (s = 1; s < g->nslots; s++) {
                g->fds[i * (size_t) g->nslots + (size_t) s] = -2 - g->fds[i * (size_t) g->nslots];
            }
        }
    }
    return MG_OK;
}

static int
mg_gen_fd(const mg_gen_t *g, size_t entry, int slot)
{
    int fd = g->fds[entry * (size_t) g->nslots + (size_t) slot];
    return fd <= -2 ? -2 - fd : fd;
}

/* The snapshot the store holds now.  The master's handle is closed
 * before anything forks (an LMDB environment must not cross fork). */
static mg_config_t *
mg_gen_config_from_store(const mg_conf_t *conf, uint64_t *version, char *err,
                         size_t errlen)
{
    mg_store_t  *s;
    mg_config_t *cf;
    char         dir[4096], serr[512];

    mg_conf_path(conf, "lmdb", dir, sizeof(dir));
    s = mg_store_open(dir, conf->lmdb_map_size, serr, sizeof(serr));
    if (s == NULL) {
        snprintf(err, errlen, "entity store %s: %s", dir, serr);
        return NULL;
    }
    cf = mg_config_from_store(s, version, err, errlen);
    mg_store_close(s);
    return cf;
}

/*
 * Hybrid mode: g->cluster_role from conf->role, and the cluster
 * certificate and key loaded once here, so a missing or mismatched pair
 * refuses the start (or the reload) instead of failing in the admin
 * process later.
 */
static int
mg_gen_cluster_check(mg_gen_t *g, char *err, size_t errlen)
{
    char             cert[4096], key[4096];
    mg_tls_server_t *s;

    g->cluster_role = strcmp(g->conf->role, "control_plane") == 0 ? 1
                      : strcmp(g->conf->role, "data_plane") == 0 ? 2 : 0;
    if (g->cluster_role == 0) {
        return MG_OK;
    }
    if (g->conf->cluster_cert == NULL || g->conf->cluster_cert_key == NULL) {
        snprintf(err, errlen, "cluster certificate and key must be provided "
                 "(cluster_cert, cluster_cert_key) when role = \"%s\"",
                 g->conf->role);
        return MG_ERROR;
    }
    mg_conf_path(g->conf, g->conf->cluster_cert, cert, sizeof(cert));
    mg_conf_path(g->conf, g->conf->cluster_cert_key, key, sizeof(key));
    s = mg_tls_cluster_server_create(cert, key, err, errlen);
    if (s == NULL) {
        return MG_ERROR;
    }
    mg_tls_server_free(s);
    return MG_OK;
}

/* Read conf and the configuration into g; errors go to err. */
static int
mg_gen_load(mg_gen_t *g, char *err, size_t errlen)
{
    mg_config_errors_t errs = { NULL, 0, 0 };
    mg_config_t       *cf;
    char               path[4096];
    size_t             i, n;
    uint64_t           version = 0;
    int                db_off;
    struct timespec    t0, t1;

    memset(g, 0, sizeof(*g));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g->conf = mg_conf_load(mg_conf_file, mg_prefix, err, errlen);
    if (g->conf == NULL) {
        return MG_ERROR;
    }
    if (g->conf->worker_processes > MG_MAX_WORKERS) {
        snprintf(err, errlen, "worker_processes: at most %d", MG_MAX_WORKERS);
        return MG_ERROR;
    }
    db_off = strcmp(g->conf->database, "off") == 0;
    if (mg_gen_cluster_check(g, err, errlen) != MG_OK) {
        return MG_ERROR;
    }
    if (g->cluster_role == 2) {
        /* a data plane serves what its store holds: the last config the
         * control plane sent (kept across restarts, so a node starts and
         * serves while the control plane is down); the admin process
         * replaces it when a new one arrives (moongate.cluster) */
        if (g->conf->declarative_config) {
            mg_log_warn("declarative_config is ignored when role = "
                        "data_plane: the configuration comes from the "
                        "control plane");
        }
    } else if (db_off && g->conf->declarative_config) {
        mg_conf_path(g->conf, g->conf->declarative_config, path, sizeof(path));
    } else if (!db_off && g->conf->declarative_config) {
        mg_log_warn("declarative_config is ignored with database = %s "
                    "(load it with `moongate config db_import`, or set "
                    "database = off)", g->conf->database);
    }
    if (db_off && g->cluster_role != 2) {
        /* DB-less: the file (or nothing) replaces what the store holds,
         * in one transaction, through the same import as POST /config */
        char msg[8192];
        if (mg_lua_cli(g->conf, "import_declarative",
                       g->conf->declarative_config ? path : NULL, msg,
                       sizeof(msg)) != MG_OK)
        {
            /* nothing was written.  The C loader words a file's mistakes
             * as `moongate check` does (file, line, entity, field): its
             * errors when it refuses the file too, else the import's */
            cf = g->conf->declarative_config
                 ? mg_declarative_load_file(path, &errs) : NULL;
            if (cf == NULL && errs.n > 0) {
                n = (size_t) snprintf(err, errlen, "declarative config %s "
                                      "is invalid:", path);
                for (i = 0; i < errs.n && n < errlen; i++) {
                    n += (size_t) snprintf(err + n, errlen - n, "\n  %s",
                                           errs.lines[i]);
                }
            } else {
                snprintf(err, errlen, "%s", msg);
            }
            mg_config_errors_free(&errs);
            mg_config_free(cf);
            return MG_ERROR;
        }
    }
    cf = mg_gen_config_from_store(g->conf, &version, err, errlen);
    if (cf == NULL) {
        return MG_ERROR;
    }
    g->rt = mg_runtime_build(cf, err, errlen);
    if (g->rt == NULL) {
        mg_config_free(cf);
        return MG_ERROR;
    }
    g->rt->version = version;
    /* health state lives in one arena shared by every process, made
     * before the first fork and kept across reloads: a target keeps its
     * state when the config changes */
    if (mg_health_arena_get() == NULL) {
        mg_health_arena_t *ha = mg_health_arena_create(MG_HEALTH_ARENA_SLOTS,
                                                       err, errlen);
        if (ha == NULL) {
            return MG_ERROR;
        }
        mg_health_arena_set(ha);
    }
    g->rt->health = mg_health_create(g->rt, err, errlen);
    if (g->rt->health == NULL) {
        return MG_ERROR;
    }
    /* ngx.shared dictionaries: one shared mapping, before the workers
     * fork and before the plugins load (init-time code may use them); an
     * unchanged lua_shared_dict keeps the mapping, and so its contents */
    if (mg_shdict_create_all(g->conf, err, errlen) != MG_OK) {
        return MG_ERROR;
    }
    /* plugins load (and their configs validate) here, before any worker
     * exists: a bad plugin refuses the start or the reload */
    if (mg_lua_runtime_init(g->rt, g->conf, err, errlen) != MG_OK) {
        return MG_ERROR;
    }
    for (i = 0; i < g->conf->proxy_listen.n; i++) {
        if (g->conf->proxy_listen.elts[i].ssl) {
            /* certificates by SNI; a default one is made under the
             * prefix at first start when none is configured */
            g->rt->tls_server = mg_tls_server_create(g->conf, g->rt->cf, err,
                                                     errlen);
            if (g->rt->tls_server == NULL) {
                return MG_ERROR;
            }
            break;
        }
    }
    mg_listen_key(g->conf, g->listen_key, sizeof(g->listen_key));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    g->load_ms = (double) (t1.tv_sec - t0.tv_sec) * 1e3
                 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6;
    return MG_OK;
}

static void
mg_gen_free(mg_gen_t *g)
{
    if (g->rt) {
        mg_runtime_free(g->rt);
        g->rt = NULL;
    }
    if (g->conf) {
        mg_conf_free(g->conf);
        g->conf = NULL;
    }
}

static pid_t
mg_spawn(mg_gen_t *g, int slot)
{
    pid_t  pid, master;
    int    fds[MG_CONF_MAX_LISTEN];
    size_t i;

    master = getpid();
    pid = fork();
    if (pid < 0) {
        mg_log_crit("fork() failed: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGQUIT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGCHLD, &sa, NULL);
        /* a master that dies (kill -9, a crash) takes its workers with
         * it, gracefully: nobody would respawn, reload or stop them, and
         * the pid file names the dead master */
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
        if (getppid() != master) {
            _exit(0);
        }
        if (slot < 0) {
            mg_admin_run(g->conf, g->rt, g->admin_fds,
                         g->nadmin + g->ncluster);
        }
        for (i = 0; i < g->nlisten; i++) {
            fds[i] = mg_gen_fd(g, i, slot);
        }
        mg_worker_run(g->conf, g->rt, slot, fds, g->nlisten);
    }
    mg_procs[mg_nprocs].pid = pid;
    mg_procs[mg_nprocs].slot = slot;
    mg_procs[mg_nprocs].generation = mg_generation;
    mg_procs[mg_nprocs].exiting = 0;
    mg_nprocs++;
    return pid;
}

static void
mg_signal_workers(int sig, int only_old)
{
    int i;

    for (i = 0; i < mg_nprocs; i++) {
        if (only_old && mg_procs[i].generation == mg_generation) {
            continue;
        }
        if (sig == SIGQUIT || sig == SIGTERM) {
            mg_procs[i].exiting = 1;
        }
        kill(mg_procs[i].pid, sig);
    }
}

static void
mg_reap(mg_gen_t *g, int respawn)
{
    pid_t pid;
    int   status, i;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (i = 0; i < mg_nprocs; i++) {
            if (mg_procs[i].pid == pid) {
                break;
            }
        }
        if (i == mg_nprocs) {
            continue;
        }
        mg_proc_t p = mg_procs[i];
        mg_procs[i] = mg_procs[--mg_nprocs];
        if (p.exiting) {
            /* asked to stop: whichever way it went is expected */
            mg_log_info("worker process %d exited (status %d)", (int) pid,
                        status);
            continue;
        }
        if (WIFSIGNALED(status)) {
            mg_log_crit("%s process %d exited on signal %d%s",
                        p.slot < 0 ? "admin" : "worker", (int) pid,
                        WTERMSIG(status), WCOREDUMP(status) ? " (core dumped)" : "");
        } else {
            mg_log_crit("%s process %d exited with code %d",
                        p.slot < 0 ? "admin" : "worker", (int) pid,
                        WEXITSTATUS(status));
            if (p.slot < 0 && WEXITSTATUS(status) == 2) {
                /* it could not start: respawning would loop */
                mg_log_crit("the Admin API stays off until a reload");
                continue;
            }
        }
        if (respawn && !p.exiting && p.generation == mg_generation) {
            pid_t np = mg_spawn(g, p.slot);
            mg_log_notice("started worker process %d in slot %d", (int) np,
                          p.slot);
        }
    }
}

static int
mg_pidfile_write(const mg_conf_t *conf)
{
    char path[4096], buf[32];
    int  fd, n;

    mg_conf_path(conf, conf->pid_file, path, sizeof(path));
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return MG_ERROR;
    }
    n = snprintf(buf, sizeof(buf), "%d\n", (int) getpid());
    if (write(fd, buf, (size_t) n) != n) {
        close(fd);
        return MG_ERROR;
    }
    close(fd);
    return MG_OK;
}

static void
mg_pidfile_remove(const mg_conf_t *conf)
{
    char path[4096];
    mg_conf_path(conf, conf->pid_file, path, sizeof(path));
    unlink(path);
}

static int
mg_running_pid(const mg_conf_t *conf)
{
    char  path[4096], buf[32];
    int   fd, pid;
    ssize_t n;

    mg_conf_path(conf, conf->pid_file, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    pid = atoi(buf);
    if (pid > 0 && pid != getpid() && kill(pid, 0) == 0) {
        return pid;
    }
    return 0;
}

static int
mg_open_error_log(const mg_conf_t *conf)
{
    char path[4096];
    mg_conf_path(conf, conf->proxy_error_log, path, sizeof(path));
    if (mg_log_open(path, conf->log_level) != MG_OK) {
        fprintf(stderr, "moongate: cannot open error log %s: %s\n", path,
                strerror(errno));
        return MG_ERROR;
    }
    return MG_OK;
}

static void
mg_master_reload(mg_gen_t *cur)
{
    mg_gen_t g;
    char     err[8192];
    int      s, same_listen;

    mg_log_notice("reloading configuration");
    if (mg_gen_load(&g, err, sizeof(err)) != MG_OK) {
        mg_log_error("reload failed, keeping the running configuration: %s", err);
        if (g.rt) mg_gen_free(&g);
        else if (g.conf) mg_conf_free(g.conf);
        return;
    }
    same_listen = strcmp(g.listen_key, cur->listen_key) == 0;
    if (same_listen) {
        g.fds = cur->fds;
        g.nlisten = cur->nlisten;
        g.nslots = cur->nslots;
        cur->fds = NULL;
        memcpy(g.admin_fds, cur->admin_fds, sizeof(g.admin_fds));
        g.nadmin = cur->nadmin;
        g.ncluster = cur->ncluster;
        cur->nadmin = 0;
        cur->ncluster = 0;
    } else if (mg_gen_open_fds(&g, err, sizeof(err)) != MG_OK) {
        mg_log_error("reload failed, keeping the running configuration: %s", err);
        mg_gen_close_fds(&g);
        mg_gen_free(&g);
        return;
    }
    mg_open_error_log(g.conf);
    mg_generation++;
    for (s = 0; s < g.conf->worker_processes; s++) {
        mg_spawn(&g, s);
    }
    if (g.nadmin > 0 || g.cluster_role != 0) {
        /* a control plane serves cluster_listen there, a data plane runs
         * its sync loop there, even with admin_listen = off */
        mg_spawn(&g, -1);
    }
    mg_signal_workers(SIGQUIT, 1);
    /* the new workers hold copies now; the master drops the old ones */
    mg_gen_close_fds(cur);
    mg_gen_free(cur);
    *cur = g;
    mg_log_notice("configuration reloaded (generation %d, version %llu: "
                  "%zu services, %zu routes, loaded in %.1f ms)",
                  mg_generation, (unsigned long long) g.rt->version,
                  g.rt->cf->services_n, g.rt->cf->routes_n, g.load_ms);
}

int
mg_master_run(const char *conf_path, const char *prefix, int daemonize)
{
    mg_gen_t         g;
    char             err[8192];
    struct sigaction sa;
    sigset_t         set, old;
    int              s, pid, readyfd[2] = { -1, -1 };

    mg_conf_file = conf_path;
    mg_prefix = prefix;
    if (mg_gen_load(&g, err, sizeof(err)) != MG_OK) {
        fprintf(stderr, "moongate: %s\n", err);
        goto failed;
    }
    if (mg_mkdirs(g.conf->prefix) != MG_OK) {
        fprintf(stderr, "moongate: prefix %s is not writable\n", g.conf->prefix);
        goto failed;
    }
    if ((pid = mg_running_pid(g.conf)) != 0) {
        fprintf(stderr, "moongate: already running in %s (pid %d)\n",
                g.conf->prefix, pid);
        goto failed;
    }
    if (mg_gen_open_fds(&g, err, sizeof(err)) != MG_OK) {
        fprintf(stderr, "moongate: %s\n", err);
        goto failed;
    }
    if (daemonize) {
        char c;
        int  ok, nul;
        if (pipe(readyfd) < 0) {
            perror("moongate: pipe");
            goto failed;
        }
        pid = fork();
        if (pid < 0) {
            perror("moongate: fork");
            goto failed;
        }
        if (pid > 0) {
            close(readyfd[1]);
            ok = read(readyfd[0], &c, 1) == 1 && c == '1';
            close(readyfd[0]);
            /* the daemon has its own copies of everything */
            mg_gen_close_fds(&g);
            mg_gen_free(&g);
            if (ok) {
                return 0;
            }
            fprintf(stderr, "moongate: failed to start, see the error log\n");
            return 1;
        }
        close(readyfd[0]);
        setsid();
        nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, STDIN_FILENO);
            dup2(nul, STDOUT_FILENO);
            dup2(nul, STDERR_FILENO);
            if (nul > 2) close(nul);
        }
    }
    if (mg_open_error_log(g.conf) != MG_OK) {
        goto failed;
    }
    if (mg_pidfile_write(g.conf) != MG_OK) {
        mg_log_crit("cannot write pid file: %s", strerror(errno));
        goto failed;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = mg_master_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);

    for (s = 0; s < g.conf->worker_processes; s++) {
        mg_spawn(&g, s);
    }
    if (g.nadmin > 0 || g.cluster_role != 0) {
        /* a control plane serves cluster_listen there, a data plane runs
         * its sync loop there, even with admin_listen = off */
        mg_spawn(&g, -1);
    }
    mg_log_notice("moongate %s started, %d workers, pid %d", MOONGATE_VERSION,
                  g.conf->worker_processes, (int) getpid());
    mg_log_notice("configuration version %llu: %zu services, %zu routes, "
                  "loaded in %.1f ms", (unsigned long long) g.rt->version,
                  g.rt->cf->services_n, g.rt->cf->routes_n, g.load_ms);
    if (daemonize) {
        if (write(readyfd[1], "1", 1) != 1) { /* parent gone */ }
        close(readyfd[1]);
    }

    for (;;) {
        sigset_t wait_set;
        sigemptyset(&wait_set);
        sigsuspend(&wait_set);

        if (mg_sig_child) {
            mg_sig_child = 0;
            mg_reap(&g, !(mg_sig_quit || mg_sig_term));
        }
        if (mg_sig_term) {
            int i;
            mg_log_notice("fast stop");
            mg_signal_workers(SIGTERM, 0);
            for (i = 0; i < 100 && mg_nprocs > 0; i++) {
                usleep(50 * 1000);
                mg_reap(&g, 0);
            }
            if (mg_nprocs > 0) {
                mg_signal_workers(SIGKILL, 0);
                while (mg_nprocs > 0 && waitpid(-1, NULL, 0) > 0) {
                    mg_nprocs--;
                }
            }
            break;
        }
        if (mg_sig_quit) {
            if (mg_sig_quit == 1) {
                mg_log_notice("graceful stop");
                mg_signal_workers(SIGQUIT, 0);
                mg_sig_quit = 2;
            }
            if (mg_nprocs == 0) {
                break;
            }
            continue;
        }
        if (mg_sig_reload) {
            mg_sig_reload = 0;
            mg_master_reload(&g);
        }
    }
    mg_pidfile_remove(g.conf);
    mg_log_notice("exit");
    mg_gen_close_fds(&g);
    mg_gen_free(&g);
    return 0;

failed:
    mg_gen_close_fds(&g);
    mg_gen_free(&g);
    return 1;
}
