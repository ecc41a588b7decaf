/*
 * fuzz_decl.c -- libFuzzer target for the declarative path: the same
 * bytes go through mg_lua_yaml_to_json (what the Lua declarative parser
 * and POST /config read) and mg_declarative_load_string (the C loader:
 * `moongate start`/`check`, the config store's snapshot), so alias bombs,
 * deep nesting, surrogate rewriting, scalar typing and every entity
 * walker see the input.  Built and run by `make fuzz`
 * (clang -fsanitize=fuzzer,address,undefined); seeds in
 * spec/fuzz/corpus_decl.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "conf/mg_config.h"
#include "lua/mg_lua_api.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_config_errors_t errs;
    mg_config_t       *cf;
    char              *out = NULL, err[256];
    size_t             outlen = 0;

    if (mg_lua_yaml_to_json((const char *) data, size, &out, &outlen, err,
                            sizeof(err)) == MG_OK)
    {
        if (out == NULL || strlen(out) != outlen) {
            abort();                  /* JSON text never holds a NUL */
        }
        free(out);
    } else if (out != NULL || err[0] == '\0') {
        abort();                      /* a failure always says why */
    }

    memset(&errs, 0, sizeof(errs));
    cf = mg_declarative_load_string((const char *) data, size, &errs);
    if (cf != NULL) {
        mg_config_free(cf);
    }
    mg_config_errors_free(&errs);
    return 0;
}
