/*
 * mg_cli.h -- command-line verbs bigger than a few lines.  core/main.c
 * parses argv and calls these; each returns the process's exit code
 * (0 done, 1 failed, 2 usage) and writes its own messages to stdout and
 * stderr.  Nothing here runs inside the gateway's processes.
 */
#ifndef MG_CLI_H
#define MG_CLI_H

#include "../mg_core.h"

/*
 * `moongate plugin install FILE`: install a .rockspec or a .rock into the
 * rocks tree <prefix>/rocks with LuaRocks (offline, --deps-mode=none),
 * then print the rock and the Kong plugins it holds.  conf_path (-c, may
 * be NULL) and prefix (-p, may be NULL) are resolved as by `start`.
 */
int mg_cli_plugin_install(const char *file, const char *conf_path,
                          const char *prefix);

/*
 * `moongate plugin list`: the rocks of <prefix>/rocks and, for each Kong
 * plugin among their modules, whether the `plugins` property enables it.
 */
int mg_cli_plugin_list(const char *conf_path, const char *prefix);

#endif /* MG_CLI_H */
