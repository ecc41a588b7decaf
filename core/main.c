/*
 * main.c -- the command line: start, stop, quit, reload, check, plugin,
 * version, help.  `start` runs the master (mg_master.c) in the foreground
 * unless --daemon is given; the signal verbs find the master through the
 * pid file under the prefix; `plugin` is core/cli/mg_cli_plugin.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include "mg_core.h"
#include "base/mg_log.h"
#include "cli/mg_cli.h"
#include "conf/mg_conf.h"
#include "conf/mg_config.h"
#include "event/mg_event.h"
#include "lua/mg_lua.h"
#include "upstream/mg_upstream.h"

static void
mg_usage(FILE *f)
{
    fprintf(f,
        "Usage: moongate COMMAND [OPTIONS]\n"
        "\n"
        "Commands:\n"
        "  start [-c FILE] [-p PREFIX] [--daemon]  start the gateway (foreground\n"
        "                                          unless --daemon)\n"
        "  stop [-p PREFIX]                        fast stop (SIGTERM)\n"
        "  quit [-p PREFIX] [--wait SECONDS]       graceful stop: finish in-flight\n"
        "                                          requests (SIGQUIT)\n"
        "  reload [-p PREFIX]                      re-read moongate.conf and the\n"
        "                                          declarative file (SIGHUP)\n"
        "  check FILE                              validate a declarative file\n"
        "                                          (.yml/.yaml/.json) or a\n"
        "                                          moongate.conf (.conf)\n"
        "  plugin install FILE [-p PREFIX]         install a plugin rock (.rockspec\n"
        "                                          or .rock) into PREFIX/rocks,\n"
        "                                          offline, with luarocks\n"
        "  plugin list [-p PREFIX]                 the rocks in PREFIX/rocks and\n"
        "                                          whether their plugins are enabled\n"
        "  config db_import FILE [-c F] [-p P]     load a declarative file into the\n"
        "                                          entity store (database = lmdb),\n"
        "                                          replacing what it holds\n"
        "  config db_export FILE [-c F] [-p P]     write every entity as a\n"
        "                                          declarative file (YAML; JSON for\n"
        "                                          *.json; - for stdout)\n"
        "  version                                 print the version\n"
        "  help                                    this text\n"
        "\n"
        "Properties come from -c FILE (or PREFIX/moongate.conf), then\n"
        "MOONGATE_<NAME> environment variables.\n");
}

typedef struct {
    const char *conf;
    const char *prefix;
    int         daemon;
    int         wait;
    const char *file;
} mg_args_t;

/* Options and the one FILE operand from argv[first] on. */
static int
mg_parse_args(int argc, char **argv, int first, mg_args_t *a)
{
    int i;

    memset(a, 0, sizeof(*a));
    a->wait = 60;
    for (i = first; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--conf") == 0)
            && i + 1 < argc)
        {
            a->conf = argv[++i];
        } else if ((strcmp(argv[i], "-p") == 0 || strcmp(argv[i], "--prefix") == 0)
                   && i + 1 < argc)
        {
            a->prefix = argv[++i];
        } else if (strcmp(argv[i], "--daemon") == 0 || strcmp(argv[i], "-d") == 0) {
            a->daemon = 1;
        } else if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc) {
            a->wait = atoi(argv[++i]);
        } else if ((argv[i][0] != '-' || strcmp(argv[i], "-") == 0)
                   && a->file == NULL)
        {
            a->file = argv[i];
        } else {
            fprintf(stderr, "moongate: unknown option \"%s\"\n", argv[i]);
            return MG_ERROR;
        }
    }
    return MG_OK;
}

/* The conf path: -c, else PREFIX/moongate.conf when it exists. */
static const char *mg_conf_default(const mg_args_t *a, char *buf, size_t len);

/*
 * config db_import / db_export: straight on the store, running gateway or
 * not -- LMDB serializes writers, and the workers of a running gateway
 * pick an import up as any other config change.
 */
static int
mg_cmd_config(const mg_args_t *a, const char *verb)
{
    char       err[4096], cbuf[4096], path[4096];
    char      *msg;
    mg_conf_t *conf;
    int        rc;

    conf = mg_conf_load(mg_conf_default(a, cbuf, sizeof(cbuf)), a->prefix, err,
                        sizeof(err));
    if (conf == NULL) {
        fprintf(stderr, "moongate: %s\n", err);
        return 1;
    }
    if (strcmp(verb, "db_import") == 0 && strcmp(conf->database, "off") == 0) {
        fprintf(stderr, "moongate: db_import needs database = lmdb (with "
                "database = off the declarative_config file is the "
                "configuration)\n");
        mg_conf_free(conf);
        return 1;
    }
    mkdir(conf->prefix, 0755);
    if (strcmp(a->file, "-") == 0 || a->file[0] == '/') {
        snprintf(path, sizeof(path), "%s", a->file);
    } else if (getcwd(path, sizeof(path) - strlen(a->file) - 2) != NULL) {
        strcat(path, "/");
        strcat(path, a->file);
    } else {
        snprintf(path, sizeof(path), "%s", a->file);
    }
    msg = malloc(65536);
    if (msg == NULL) {
        mg_conf_free(conf);
        return 1;
    }
    rc = mg_lua_cli(conf, verb, path, msg, 65536);
    if (rc != MG_OK) {
        fprintf(stderr, "moongate: %s\n", msg);
    } else if (msg[0]) {
        fprintf(strcmp(a->file, "-") == 0 ? stderr : stdout, "%s\n", msg);
    }
    free(msg);
    mg_conf_free(conf);
    return rc == MG_OK ? 0 : 1;
}

static const char *
mg_conf_default(const mg_args_t *a, char *buf, size_t len)
{
    const char *prefix = a->prefix ? a->prefix : getenv("MOONGATE_PREFIX");

    if (a->conf) {
        return a->conf;
    }
    if (prefix) {
        snprintf(buf, len, "%s/moongate.conf", prefix);
        if (access(buf, R_OK) == 0) {
            return buf;
        }
    }
    return NULL;
}

static int
mg_cmd_signal(const mg_args_t *a, int sig, const char *verb)
{
    char       err[4096], path[4096], buf[32], cbuf[4096];
    mg_conf_t *conf;
    FILE      *f;
    int        pid, i;

    conf = mg_conf_load(mg_conf_default(a, cbuf, sizeof(cbuf)), a->prefix, err,
                        sizeof(err));
    if (conf == NULL) {
        fprintf(stderr, "moongate: %s\n", err);
        return 1;
    }
    mg_conf_path(conf, conf->pid_file, path, sizeof(path));
    f = fopen(path, "r");
    if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
        fprintf(stderr, "moongate: not running in %s (no pid file %s)\n",
                conf->prefix, path);
        if (f) fclose(f);
        mg_conf_free(conf);
        return 1;
    }
    fclose(f);
    pid = atoi(buf);
    if (pid <= 0 || kill(pid, sig) < 0) {
        fprintf(stderr, "moongate: cannot signal pid %d: %s\n", pid,
                strerror(errno));
        mg_conf_free(conf);
        return 1;
    }
    if (sig == SIGHUP) {
        printf("moongate: reload signalled (pid %d)\n", pid);
        mg_conf_free(conf);
        return 0;
    }
    for (i = 0; i < a->wait * 10; i++) {
        if (kill(pid, 0) < 0 && errno == ESRCH) {
            printf("moongate: %s\n", verb);
            mg_conf_free(conf);
            return 0;
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "moongate: pid %d still running after %d s\n", pid, a->wait);
    mg_conf_free(conf);
    return 1;
}

static int
mg_has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static int
mg_cmd_check(const mg_args_t *a)
{
    mg_config_errors_t errs = { NULL, 0, 0 };
    mg_config_t       *cf;
    char               err[8192];
    size_t             i;

    if (a->file == NULL) {
        fprintf(stderr, "moongate: check needs a FILE\n");
        return 2;
    }
    if (mg_has_suffix(a->file, ".conf")) {
        mg_conf_t *conf = mg_conf_load(a->file, NULL, err, sizeof(err));
        if (conf == NULL) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        mg_conf_free(conf);
        printf("%s: ok\n", a->file);
        return 0;
    }
    cf = mg_declarative_load_file(a->file, &errs);
    if (cf == NULL) {
        for (i = 0; i < errs.n; i++) {
            fprintf(stderr, "%s: %s\n", a->file, errs.lines[i]);
        }
        if (errs.n == 0) {
            fprintf(stderr, "%s: invalid\n", a->file);
        }
        mg_config_errors_free(&errs);
        return 1;
    }
    mg_config_errors_free(&errs);
    if (cf->plugins_n > 0) {
        /* plugins: load them and validate their configs against their
         * schemas exactly as a start would (the `plugins` property and
         * lua_package_path come from -c FILE / the environment) */
        char          cbuf[4096];
        mg_conf_t    *conf = mg_conf_load(mg_conf_default(a, cbuf, sizeof(cbuf)),
                                          a->prefix, err, sizeof(err));
        mg_runtime_t *rt;
        int           rc;

        if (conf == NULL) {
            fprintf(stderr, "%s\n", err);
            mg_config_free(cf);
            return 1;
        }
        rt = mg_runtime_build(cf, err, sizeof(err));
        rc = rt ? mg_lua_runtime_init(rt, conf, err, sizeof(err)) : MG_ERROR;
        if (rc != MG_OK) {
            fprintf(stderr, "%s: %s\n", a->file, err);
        } else {
            printf("%s: ok (%zu services, %zu routes, %zu upstreams, "
                   "%zu targets, %zu consumers, %zu plugins)\n", a->file,
                   cf->services_n, cf->routes_n, cf->upstreams_n,
                   cf->targets_n, cf->consumers_n, cf->plugins_n);
        }
        if (rt) {
            mg_runtime_free(rt);        /* frees cf with it */
        } else {
            mg_config_free(cf);
        }
        mg_conf_free(conf);
        return rc == MG_OK ? 0 : 1;
    }
    printf("%s: ok (%zu services, %zu routes, %zu upstreams, %zu targets, "
           "%zu consumers, %zu plugins)\n", a->file, cf->services_n,
           cf->routes_n, cf->upstreams_n, cf->targets_n, cf->consumers_n,
           cf->plugins_n);
    mg_config_free(cf);
    return 0;
}

int
main(int argc, char **argv)
{
    mg_args_t   a;
    const char *cmd;
    char        cbuf[4096];

    if (argc < 2) {
        mg_usage(stderr);
        return 2;
    }
    cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0
        || strcmp(cmd, "--help") == 0)
    {
        mg_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "-v") == 0
        || strcmp(cmd, "--version") == 0)
    {
        printf("moongate %s\n", MOONGATE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "plugin") == 0) {
        /* moongate plugin VERB [FILE] [options] */
        const char *verb = argc > 2 ? argv[2] : "";

        if (mg_parse_args(argc, argv, 3, &a) != MG_OK) {
            return 2;
        }
        if (strcmp(verb, "install") == 0) {
            return mg_cli_plugin_install(a.file, a.conf, a.prefix);
        }
        if (strcmp(verb, "list") == 0 && a.file == NULL) {
            return mg_cli_plugin_list(a.conf, a.prefix);
        }
        fprintf(stderr, "moongate: plugin needs install FILE or list\n\n");
        mg_usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "config") == 0) {
        /* moongate config db_import|db_export FILE [options] (Kong's) */
        const char *verb = argc > 2 ? argv[2] : "";

        if (mg_parse_args(argc, argv, 3, &a) != MG_OK) {
            return 2;
        }
        if ((strcmp(verb, "db_import") == 0 || strcmp(verb, "db_export") == 0)
            && a.file)
        {
            return mg_cmd_config(&a, verb);
        }
        fprintf(stderr, "moongate: config needs db_import FILE or db_export "
                "FILE\n\n");
        mg_usage(stderr);
        return 2;
    }
    if (mg_parse_args(argc, argv, 2, &a) != MG_OK) {
        return 2;
    }
    if (strcmp(cmd, "start") == 0) {
        return mg_master_run(mg_conf_default(&a, cbuf, sizeof(cbuf)), a.prefix,
                             a.daemon);
    }
    if (strcmp(cmd, "stop") == 0) {
        return mg_cmd_signal(&a, SIGTERM, "stopped");
    }
    if (strcmp(cmd, "quit") == 0) {
        return mg_cmd_signal(&a, SIGQUIT, "stopped gracefully");
    }
    if (strcmp(cmd, "reload") == 0) {
        return mg_cmd_signal(&a, SIGHUP, "reloaded");
    }
    if (strcmp(cmd, "check") == 0) {
        return mg_cmd_check(&a);
    }
    fprintf(stderr, "moongate: unknown command \"%s\"\n\n", cmd);
    mg_usage(stderr);
    return 2;
}
