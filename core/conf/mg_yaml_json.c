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

typedef struct {
    const char  *key;
    size_t       len;
    size_t       line;
} mg_yaml_key_t;

static int
mg_yaml_key_cmp(const void *a, const void *b)
{
    const mg_yaml_key_t *x = a, *y = b;
    size_t               n = x->len < y->len ? x->len : y->len;
    int                  c = memcmp(x->key, y->key, n);

    if (c != 0) {
        return c;
    }
    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return x->line < y->line ? -1 : x->line > y->line;
}

/*
 * A mapping that repeats a key is refused, as the C loader refuses it
 * (mg_decl_pair): libyaml keeps both pairs and JSON would keep the last,
 * so `moongate check` and POST /config would disagree on the file.
 * Sorting the keys of each mapping keeps a huge mapping from costing
 * n^2 compares.
 */
static int
mg_yaml_dup_keys(yaml_document_t *doc, char *msg, size_t msglen)
{
    yaml_node_t      *n, *k;
    yaml_node_pair_t *p;
    mg_yaml_key_t    *keys = NULL, *nk;
    size_t            cap = 0, cnt, i;
    int               rc = MG_OK;

    for (n = doc->nodes.start; n < doc->nodes.top && rc == MG_OK; n++) {
        if (n->type != YAML_MAPPING_NODE) {
            continue;
        }
        cnt = 0;
        for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++)
        {
            k = yaml_document_get_node(doc, p->key);
            if (k == NULL || k->type != YAML_SCALAR_NODE) {
                continue;           /* the encoder refuses those */
            }
            if (cnt == cap) {
                cap = cap ? cap * 2 : 64;
                if ((nk = realloc(keys, cap * sizeof(*keys))) == NULL) {
                    snprintf(msg, msglen, "out of memory");
                    rc = MG_ERROR;
                    break;
                }
                keys = nk;
            }
            keys[cnt].key = (const char *) k->data.scalar.value;
            keys[cnt].len = k->data.scalar.length;
            keys[cnt].line = k->start_mark.line + 1;
            cnt++;
        }
        if (rc != MG_OK || cnt < 2) {
            continue;
        }
        qsort(keys, cnt, sizeof(*keys), mg_yaml_key_cmp);
        for (i = 1; i < cnt; i++) {
            if (keys[i].len == keys[i - 1].len
                && memcmp(keys[i].key, keys[i - 1].key, keys[i].len) == 0)
            {
                snprintf(msg, msglen, "duplicate key '%.*s' (line %zu)",
                         (int) (keys[i].len > 64 ? 64 : keys[i].len),
                         keys[i].key, keys[i].line);
                rc = MG_ERROR;
                break;
            }
        }
    }
    free(keys);
    return rc;
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
    if (mg_yaml_dup_keys(&doc, msg, sizeof(msg)) != MG_OK) {
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        free(copy);
        return mg_yaml_json_fail(err, errlen, msg);
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
