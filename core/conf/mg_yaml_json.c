/*
 * mg_yaml_json.c -- YAML (or JSON, a subset of it) text to compact JSON
 * text, for Lua: the declarative parser (lua/moongate/db/declarative.lua)
 * and POST /config hand the operator's file here and decode the result
 * with cjson.
 *
 * Scalars are typed exactly as the C declarative loader types them
 * (mg_decl_scalar_kind: YAML 1.2's core schema -- 1 is a number, "1" and
 * '1' are strings, true/false/null and ~), and the JSON is written by the
 * loader's own encoder (mg_decl_json), so a file means the same thing to
 * `moongate start` and to the Admin API.  Aliases are expanded under the
 * encoder's node limit (no billion laughs); keys must be scalars.
 *
 * Rejected: a YAML binding for Lua (lyaml) -- another C module to ship
 * and load into the VM, and a second set of scalar rules to keep equal to
 * the loader's.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mg_decl.h"
#include "../lua/mg_lua_api.h"

static int
mg_yaml_json_fail(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) {
        snprintf(err, errlen, "%s", msg);
    }
    return MG_ERROR;
}

int
mg_lua_yaml_to_json(const char *text, size_t len, char **out,
                    size_t *outlen, char *err, size_t errlen)
{
    yaml_parser_t   parser;
    yaml_document_t doc;
    yaml_node_t    *root;
    mg_decl_buf_t   b = { NULL, 0, 0, 0, 0 };
    char           *copy, msg[128];
    size_t          i;

    *out = NULL;
    *outlen = 0;
    if (text == NULL && len) {
        return mg_yaml_json_fail(err, errlen, "no input");
    }
    if (len > MG_DECL_MAX_FILE) {
        return mg_yaml_json_fail(err, errlen, "input too large");
    }
    /* A copy, as the loader reads it: JSON's surrogate pairs rewritten
     * (libyaml refuses them), and never a NULL input (libyaml asserts). */
    if ((copy = malloc(len + 1)) == NULL) {
        return mg_yaml_json_fail(err, errlen, "out of memory");
    }
    if (len) {
        memcpy(copy, text, len);
    }
    copy[len] = '\0';
    for (i = 0; i < len && isspace((unsigned char) copy[i]); i++) {}
    if (i < len && (copy[i] == '{' || copy[i] == '[')) {
        mg_decl_fix_surrogates(copy, &len);
    }
    if (mg_decl_yaml_depth_check(copy, len, msg, sizeof(msg)) != MG_OK) {
        free(copy);
        return mg_yaml_json_fail(err, errlen, msg);
    }
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *) copy, len);
    if (!yaml_parser_load(&parser, &doc)) {
        if (err && errlen) {
            mg_decl_yaml_error(&parser, copy, len, err, errlen);
        }
        yaml_parser_delete(&parser);
        free(copy);
        return MG_ERROR;
    }
    root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        PUTS(&b, "null");                  /* an empty document */
    } else {
        mg_decl_json(&b, &doc, root, NULL, NULL, 0);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(copy);
    if (b.failed || b.data == NULL) {
        free(b.data);
        return mg_yaml_json_fail(err, errlen, "cannot encode as JSON (keys "
                                 "must be strings; too deep or too large)");
    }
    *out = b.data;
    *outlen = b.len;
    return MG_OK;
}
