/*
 * test_config_store.c -- a config snapshot from the entity store
 * (core/conf/mg_config_store.c): entities in Kong's Admin API shape, as
 * the Admin API writes them, come back as a snapshot with references
 * resolved; plugin-declared types are left out; a stored entity the
 * loader refuses is an error naming it; the version is the store's.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "conf/mg_config_store.h"
#include "tap.h"

static char tmpdir[] = "/tmp/mg_test_cfgstore_XXXXXX";

static mg_str_t
S(const char *s)
{
    mg_str_t r = { s, strlen(s) };
    return r;
}

static int
rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove(p);
}

#define SVC "0a1b2c3d-0000-4000-8000-000000000001"
#define RTE "0a1b2c3d-0000-4000-8000-000000000002"
#define UPS "0a1b2c3d-0000-4000-8000-000000000003"
#define TGT "0a1b2c3d-0000-4000-8000-000000000004"

static int
put(mg_store_t *s, const char *type, const char *id, const char *json,
    const mg_store_ref_t *refs, size_t nrefs)
{
    mg_store_entity_t e;
    mg_store_err_t    err;
    int               rc;

    memset(&e, 0, sizeof(e));
    e.type = type;
    e.id = S(id);
    e.json = S(json);
    e.refs = refs;
    e.nrefs = nrefs;
    rc = mg_store_insert(s, &e, &err);
    if (rc != MG_OK) {
        printf("# insert %s: %s\n", type, err.msg);
    }
    return rc;
}

int
main(void)
{
    mg_store_t     *s;
    mg_config_t    *cf;
    char            err[4096];
    uint64_t        version = 0;
    mg_store_ref_t  rref = { { "service", 7 }, { "services", 8 },
                             { RTE, 0 }, 0 };
    mg_store_ref_t  tref = { { "upstream", 8 }, { "upstreams", 9 },
                             { UPS, 0 }, 0 };

    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    s = mg_store_open(tmpdir, 0, err, sizeof(err));
    ok(s != NULL, "store opens");
    if (s == NULL) {
        return done_testing();
    }

    cf = mg_config_from_store(s, &version, err, sizeof(err));
    ok(cf != NULL && cf->services_n == 0 && cf->routes_n == 0,
       "an empty store is an empty snapshot");
    is_int(version, 0, "version 0 before any write");
    mg_config_free(cf);

    rref.id = S(SVC);
    tref.id = S(UPS);
    is_int(put(s, "services", SVC,
               "{\"id\":\"" SVC "\",\"name\":\"s1\",\"protocol\":\"http\","
               "\"host\":\"u1\",\"port\":80,\"path\":\"/base\",\"retries\":5,"
               "\"connect_timeout\":60000,\"write_timeout\":60000,"
               "\"read_timeout\":60000,\"tags\":null,"
               "\"client_certificate\":null,\"tls_verify\":null,"
               "\"tls_verify_depth\":null,\"ca_certificates\":null,"
               "\"enabled\":true,\"created_at\":1700000000,"
               "\"updated_at\":1700000000}", NULL, 0), MG_OK,
           "service stored");
    is_int(put(s, "routes", RTE,
               "{\"id\":\"" RTE "\",\"name\":\"r1\",\"protocols\":[\"http\","
               "\"https\"],\"methods\":null,\"hosts\":null,\"paths\":[\"/a\"],"
               "\"headers\":null,\"https_redirect_status_code\":426,"
               "\"regex_priority\":0,\"strip_path\":true,"
               "\"path_handling\":\"v0\",\"preserve_host\":false,"
               "\"request_buffering\":true,\"response_buffering\":true,"
               "\"tags\":[\"t1\"],\"service\":{\"id\":\"" SVC "\"},"
               "\"created_at\":1700000000,\"updated_at\":1700000000,"
               "\"snis\":null,\"sources\":null,\"destinations\":null}",
               &rref, 1), MG_OK, "route stored");
    is_int(put(s, "upstreams", UPS,
               "{\"id\":\"" UPS "\",\"name\":\"u1\",\"algorithm\":"
               "\"round-robin\",\"slots\":10000,\"tags\":null}", NULL, 0),
           MG_OK, "upstream stored");
    is_int(put(s, "targets", TGT,
               "{\"id\":\"" TGT "\",\"target\":\"127.0.0.1:9002\","
               "\"weight\":100,\"upstream\":{\"id\":\"" UPS "\"},"
               "\"created_at\":1700000000.123}", &tref, 1), MG_OK,
           "target stored (Kong's millisecond timestamp)");
    is_int(put(s, "my_plugin_things", "x1", "{\"id\":\"x1\",\"any\":1}",
               NULL, 0), MG_OK, "a plugin-declared entity stored");

    cf = mg_config_from_store(s, &version, err, sizeof(err));
    ok(cf != NULL, "snapshot builds from Admin API shaped entities");
    if (cf == NULL) {
        printf("# %s\n", err);
        return done_testing();
    }
    is_int(version, 5, "its version is the store's (5 writes)");
    is_int(cf->services_n, 1, "one service");
    is_int(cf->routes_n, 1, "one route");
    is_int(cf->targets_n, 1, "one target");
    ok(cf->routes_n == 1 && cf->routes[0]->service == cf->services[0],
       "the route's service reference is resolved");
    ok(cf->services_n == 1 && cf->services[0]->upstream != NULL,
       "the service's host names the upstream");
    ok(cf->routes_n == 1 && mg_str_eq_lit(cf->routes[0]->id, RTE),
       "ids are the stored ones");
    mg_config_free(cf);

    /* a stored entity the loader refuses: an error naming it, no crash */
    is_int(put(s, "routes", "0a1b2c3d-0000-4000-8000-000000000009",
               "{\"id\":\"0a1b2c3d-0000-4000-8000-000000000009\","
               "\"paths\":[\"/b\"],\"strip_path\":\"yes\"}", NULL, 0), MG_OK,
           "a bad route stored behind the loader's back");
    cf = mg_config_from_store(s, &version, err, sizeof(err));
    ok(cf == NULL, "the snapshot is refused");
    ok(strstr(err, "strip_path") != NULL, "the error names the field");
    mg_config_free(cf);

    mg_store_close(s);
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
