/*
 * mg_cli_plugin.c -- `moongate plugin install FILE` and `moongate plugin
 * list`: plugin rocks in a LuaRocks tree under the prefix.
 *
 * The tree is <prefix>/rocks, LuaRocks' Lua 5.1 layout (share/lua/5.1,
 * lib/lua/5.1).  The plugin runtime adds it to package.path and
 * package.cpath at start (lua/moongate/plugin_loader.lua), so a plugin
 * installed here needs only its name in the `plugins` property.  The work
 * is Debian's `luarocks` (MOONGATE_LUAROCKS names another command), run
 * with fork + execvp -- no shell, so a file name reaches it as one
 * argument whatever it holds -- and always with --deps-mode=none:
 * installing never goes to the network; a plugin's dependencies are
 * installed the same way, first.
 *
 * Which LuaRocks command:
 *   - FILE.rockspec, in a directory holding anything besides rockspecs
 *     and rocks (the plugin's checkout: sources next to the rockspec):
 *     `luarocks make` in that directory, building from those sources
 *     whatever source.url says;
 *   - FILE.rockspec alone (with other rockspecs or rocks only):
 *     `luarocks install`, which fetches source.url (file:// works offline);
 *   - FILE.rock (.src.rock, .all.rock, .<arch>.rock): `luarocks install`.
 *
 * Lifecycle: one short CLI process; every string it builds lives on the
 * stack or in one malloc'd output buffer per luarocks run.
 *
 * Rejected: reading the rock format (a zip with a manifest) in C --
 * LuaRocks is packaged by Debian, and its trees are what plugin authors
 * know (`luarocks --tree <prefix>/rocks list` works on ours).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "mg_cli.h"
#include "conf/mg_conf.h"

#define MG_CLI_OUT_MAX  (8 * 1024 * 1024)   /* luarocks output kept */
#define MG_CLI_ARGS_MAX 16

typedef struct {
    char   *data;               /* NUL-terminated, or NULL when empty */
    size_t  len;
    size_t  cap;
} mg_cli_out_t;

/* --- running luarocks ------------------------------------------------ */

static void
mg_cli_out_append(mg_cli_out_t *out, const char *p, size_t n)
{
    char   *d;
    size_t  cap;

    if (out->len + n > MG_CLI_OUT_MAX) {
        n = MG_CLI_OUT_MAX - out->len;      /* keep the head, drop the rest */
    }
    if (n == 0) {
        return;
    }
    if (out->len + n + 1 > out->cap) {
        cap = out->cap ? out->cap : 4096;
        while (cap < out->len + n + 1) {
            cap *= 2;
        }
        d = realloc(out->data, cap);
        if (d == NULL) {
            return;                         /* output is advisory */
        }
        out->data = d;
        out->cap = cap;
    }
    memcpy(out->data + out->len, p, n);
    out->len += n;
    out->data[out->len] = '\0';
}

/*
 * Run argv (argv[0] found on PATH) in directory cwd (NULL: ours), stdin
 * from /dev/null, stdout and stderr captured together into out (the caller
 * frees out->data).  Returns the exit status (128 + the signal when
 * killed), or -1 with errno set when the command could not be started
 * (ENOENT: not installed).  A close-on-exec pipe carries execvp's errno
 * back, so "not found" is told apart from a command that exits 127.
 */
static int
mg_cli_run(char *const argv[], const char *cwd, mg_cli_out_t *out)
{
    int     opipe[2], epipe[2], status, cerr, devnull;
    pid_t   pid;
    ssize_t n;
    char    buf[4096];

    memset(out, 0, sizeof(*out));
    if (pipe2(opipe, O_CLOEXEC) < 0) {
        return -1;
    }
    if (pipe2(epipe, O_CLOEXEC) < 0) {
        cerr = errno;
        close(opipe[0]);
        close(opipe[1]);
        errno = cerr;
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        cerr = errno;
        close(opipe[0]);
        close(opipe[1]);
        close(epipe[0]);
        close(epipe[1]);
        errno = cerr;
        return -1;
    }
    if (pid == 0) {
        devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
        }
        dup2(opipe[1], 1);      /* dup2 clears close-on-exec on 1 and 2 */
        dup2(opipe[1], 2);
        if (cwd == NULL || chdir(cwd) == 0) {
            execvp(argv[0], argv);
        }
        cerr = errno;
        if (write(epipe[1], &cerr, sizeof(cerr)) < 0) {
            /* nothing left to tell */
        }
        _exit(127);
    }
    close(opipe[1]);
    close(epipe[1]);
    do {
        n = read(epipe[0], &cerr, sizeof(cerr));
    } while (n < 0 && errno == EINTR);
    close(epipe[0]);
    if (n == (ssize_t) sizeof(cerr)) {
        close(opipe[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        errno = cerr;
        return -1;
    }
    for (;;) {
        n = read(opipe[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        mg_cli_out_append(out, buf, (size_t) n);
    }
    close(opipe[0]);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

/*
 * Run `luarocks --tree TREE --lua-version 5.1 ARGS...` (ARGS ends with
 * NULL) in cwd.  Returns 0 with the output in out; on failure reports it
 * (luarocks missing, or its exit code, command line and output) on stderr
 * and returns 1, the CLI's exit code.
 */
static int
mg_cli_luarocks(const char *tree, const char *cwd, mg_cli_out_t *out, ...)
{
    const char *argv[MG_CLI_ARGS_MAX];
    const char *s;
    va_list     ap;
    size_t      n = 0, i;
    int         rc;

    s = getenv("MOONGATE_LUAROCKS");
    argv[n++] = s && *s ? s : "luarocks";
    argv[n++] = "--tree";
    argv[n++] = tree;
    argv[n++] = "--lua-version";
    argv[n++] = "5.1";
    va_start(ap, out);
    while ((s = va_arg(ap, const char *)) != NULL
           && n < MG_CLI_ARGS_MAX - 1)
    {
        argv[n++] = s;
    }
    va_end(ap);
    argv[n] = NULL;

    rc = mg_cli_run((char *const *) argv, cwd, out);
    if (rc == 0) {
        return 0;
    }
    if (rc < 0) {
        if (errno == ENOENT) {
            fprintf(stderr, "moongate: %s not found: plugin rocks need "
                    "LuaRocks (bin/install-deps installs Debian's luarocks; "
                    "MOONGATE_LUAROCKS names another command)\n", argv[0]);
        } else {
            fprintf(stderr, "moongate: cannot run %s%s%s: %s\n", argv[0],
                    cwd ? " in " : "", cwd ? cwd : "", strerror(errno));
        }
        return 1;
    }
    fprintf(stderr, "moongate: luarocks failed (exit %d):", rc);
    for (i = 0; i < n; i++) {
        fprintf(stderr, " %s", argv[i]);
    }
    if (cwd) {
        fprintf(stderr, " (in %s)", cwd);
    }
    fprintf(stderr, "\n%s", out->data ? out->data : "");
    if (out->len && out->data[out->len - 1] != '\n') {
        fputc('\n', stderr);
    }
    free(out->data);
    out->data = NULL;
    return 1;
}

/* --- plugins in a rock ------------------------------------------------ */

/* Is plugin `name` in the `plugins` property?  "bundled" names only the
 * plugins/ folder, which rocks are not in; "off" anywhere disables all,
 * as in the runloop. */
static int
mg_cli_plugin_enabled(const char *plugins, const char *name)
{
    const char *p = plugins ? plugins : "bundled";
    size_t      len = strlen(name), n;
    int         found = 0;

    while (*p) {
        p += strspn(p, ", \t");
        n = strcspn(p, ", \t");
        if (n == 3 && strncmp(p, "off", 3) == 0) {
            return 0;
        }
        if (n == len && n && strncmp(p, name, n) == 0) {
            found = 1;
        }
        p += n;
    }
    return found;
}

/* "kong.plugins.NAME.handler" or "moongate.plugins.NAME.handler" -> NAME
 * into buf; NULL for any other module. */
static const char *
mg_cli_plugin_of(const char *mod, char *buf, size_t len)
{
    static const char *const prefixes[] = { "kong.plugins.",
                                            "moongate.plugins." };
    const char *name, *dot;
    size_t      i, n;

    for (i = 0; i < mg_nelems(prefixes); i++) {
        n = strlen(prefixes[i]);
        if (strncmp(mod, prefixes[i], n) != 0) {
            continue;
        }
        name = mod + n;
        dot = strchr(name, '.');
        if (dot == NULL || dot == name || strcmp(dot, ".handler") != 0
            || (size_t) (dot - name) >= len)
        {
            return NULL;
        }
        memcpy(buf, name, (size_t) (dot - name));
        buf[dot - name] = '\0';
        return buf;
    }
    return NULL;
}

/*
 * Print, one line each under `indent`, the Kong plugins among the modules
 * of rock NAME VERSION in tree and whether `plugins` enables them.
 * Returns 0, or 1 when luarocks failed (reported).
 */
static int
mg_cli_rock_plugins(const char *tree, const char *name, const char *version,
                    const mg_conf_t *conf, const char *indent)
{
    mg_cli_out_t out;
    char        *line, *save, *mod, *tab, pname[256];

    if (mg_cli_luarocks(tree, NULL, &out, "show", "--porcelain", name,
                        version, NULL) != 0)
    {
        return 1;
    }
    for (line = out.data ? strtok_r(out.data, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
    {
        if (strncmp(line, "module\t", 7) != 0) {
            continue;
        }
        mod = line + 7;
        tab = strchr(mod, '\t');
        if (tab) {
            *tab = '\0';
        }
        if (mg_cli_plugin_of(mod, pname, sizeof(pname)) == NULL) {
            continue;
        }
        if (mg_cli_plugin_enabled(conf->plugins, pname)) {
            printf("%splugin %s: enabled\n", indent, pname);
        } else {
            printf("%splugin %s: not enabled (plugins = %s; add %s)\n",
                   indent, pname, conf->plugins ? conf->plugins : "bundled",
                   pname);
        }
    }
    free(out.data);
    return 0;
}

/* --- the verbs -------------------------------------------------------- */

static int
mg_cli_has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Does dir hold anything besides rockspecs, rocks and dot files: the
 * sources `luarocks make` builds from? */
static int
mg_cli_dir_has_sources(const char *dir)
{
    DIR           *d = opendir(dir);
    struct dirent *e;
    int            found = 0;

    if (d == NULL) {
        return 0;
    }
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.'
            && !mg_cli_has_suffix(e->d_name, ".rockspec")
            && !mg_cli_has_suffix(e->d_name, ".rock"))
        {
            found = 1;
        }
    }
    closedir(d);
    return found;
}

/* "dir/NAME-VER-REV.rockspec" or "dir/NAME-VER-REV.ARCH.rock" -> NAME
 * and "VER-REV", LuaRocks' file naming.  Returns MG_OK or MG_ERROR. */
static int
mg_cli_rock_id(const char *file, char *name, size_t nlen, char *ver,
               size_t vlen)
{
    const char *base = strrchr(file, '/');
    char        tmp[NAME_MAX + 1], *p, *rev;

    base = base ? base + 1 : file;
    if (strlen(base) >= sizeof(tmp)) {
        return MG_ERROR;
    }
    strcpy(tmp, base);
    if (mg_cli_has_suffix(tmp, ".rockspec")) {
        tmp[strlen(tmp) - 9] = '\0';
    } else {
        tmp[strlen(tmp) - 5] = '\0';            /* ".rock" */
        p = strrchr(tmp, '.');                  /* ".all", ".src", arch */
        if (p == NULL) {
            return MG_ERROR;
        }
        *p = '\0';
    }
    rev = strrchr(tmp, '-');
    if (rev == NULL || rev == tmp) {
        return MG_ERROR;
    }
    *rev = '\0';
    p = strrchr(tmp, '-');
    *rev = '-';
    if (p == NULL || p == tmp || (size_t) (p - tmp) >= nlen
        || strlen(p + 1) >= vlen)
    {
        return MG_ERROR;
    }
    memcpy(name, tmp, (size_t) (p - tmp));
    name[p - tmp] = '\0';
    strcpy(ver, p + 1);
    return MG_OK;
}

static mg_conf_t *
mg_cli_conf(const char *conf_path, const char *prefix, char *tree,
            size_t len)
{
    char       err[4096];
    mg_conf_t *conf = mg_conf_load(conf_path, prefix, err, sizeof(err));

    if (conf == NULL) {
        fprintf(stderr, "moongate: %s\n", err);
        return NULL;
    }
    if ((size_t) snprintf(tree, len, "%s/rocks", conf->prefix) >= len) {
        fprintf(stderr, "moongate: prefix too long: %s\n", conf->prefix);
        mg_conf_free(conf);
        return NULL;
    }
    return conf;
}

int
mg_cli_plugin_install(const char *file, const char *conf_path,
                      const char *prefix)
{
    char         tree[PATH_MAX], path[PATH_MAX], name[256], ver[128];
    char        *slash, *dir, *base;
    struct stat  st;
    mg_cli_out_t out;
    mg_conf_t   *conf;
    int          rc;

    if (file == NULL) {
        fprintf(stderr, "moongate: plugin install needs a FILE (a .rockspec "
                "or a .rock)\n");
        return 2;
    }
    if (!mg_cli_has_suffix(file, ".rockspec")
        && !mg_cli_has_suffix(file, ".rock"))
    {
        fprintf(stderr, "moongate: %s: not a .rockspec or a .rock\n", file);
        return 1;
    }
    if (stat(file, &st) < 0 || realpath(file, path) == NULL) {
        fprintf(stderr, "moongate: cannot read %s: %s\n", file,
                strerror(errno));
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "moongate: %s: not a regular file\n", file);
        return 1;
    }
    conf = mg_cli_conf(conf_path, prefix, tree, sizeof(tree));
    if (conf == NULL) {
        return 1;
    }

    slash = strrchr(path, '/');             /* realpath: always one */
    if (mg_cli_has_suffix(path, ".rockspec")) {
        *slash = '\0';
        dir = slash == path ? "/" : path;
        base = slash + 1;
        if (mg_cli_dir_has_sources(dir)) {
            rc = mg_cli_luarocks(tree, dir, &out, "make", "--deps-mode=none",
                                 base, NULL);
        } else {
            *slash = '/';
            rc = mg_cli_luarocks(tree, NULL, &out, "install",
                                 "--deps-mode=none", path, NULL);
        }
        *slash = '/';
    } else {
        rc = mg_cli_luarocks(tree, NULL, &out, "install", "--deps-mode=none",
                             path, NULL);
    }
    if (rc != 0) {
        mg_conf_free(conf);
        return rc;
    }
    fputs(out.data ? out.data : "", stdout);
    free(out.data);

    if (mg_cli_rock_id(path, name, sizeof(name), ver, sizeof(ver)) != MG_OK) {
        printf("installed %s in %s\n", file, tree);
        mg_conf_free(conf);
        return 0;
    }
    printf("installed %s %s in %s\n", name, ver, tree);
    rc = mg_cli_rock_plugins(tree, name, ver, conf, "  ");
    mg_conf_free(conf);
    return rc;
}

int
mg_cli_plugin_list(const char *conf_path, const char *prefix)
{
    char         tree[PATH_MAX];
    char        *line, *save, *f[4];
    struct stat  st;
    mg_cli_out_t out;
    mg_conf_t   *conf;
    int          i, n = 0, rc = 0;

    conf = mg_cli_conf(conf_path, prefix, tree, sizeof(tree));
    if (conf == NULL) {
        return 1;
    }
    /* no tree yet: nothing installed, and no need for luarocks to say so */
    if (stat(tree, &st) < 0 || !S_ISDIR(st.st_mode)) {
        printf("no rocks in %s\n", tree);
        mg_conf_free(conf);
        return 0;
    }
    if (mg_cli_luarocks(tree, NULL, &out, "list", "--porcelain", NULL) != 0) {
        mg_conf_free(conf);
        return 1;
    }
    /* name \t version \t status \t tree; each rock's modules come from
     * a `luarocks show` of their own */
    for (line = out.data ? strtok_r(out.data, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
    {
        char *p = line;

        for (i = 0; i < 4; i++) {
            f[i] = p;
            p = p ? strchr(p, '\t') : NULL;
            if (p) {
                *p++ = '\0';
            }
        }
        if (f[1] == NULL || f[2] == NULL || strcmp(f[2], "installed") != 0) {
            continue;
        }
        if (n++ == 0) {
            printf("rocks in %s (plugins = %s):\n", tree,
                   conf->plugins ? conf->plugins : "bundled");
        }
        printf("  %s %s\n", f[0], f[1]);
        if (mg_cli_rock_plugins(tree, f[0], f[1], conf, "    ") != 0) {
            rc = 1;
        }
    }
    if (n == 0) {
        printf("no rocks in %s\n", tree);
    }
    free(out.data);
    mg_conf_free(conf);
    return rc;
}
