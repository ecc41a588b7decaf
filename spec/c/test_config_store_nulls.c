/*
 * test_config_store_nulls.c -- the flat document of mg_config_store.c
 * leaves an entity's top-level null members out (mg_cs_put_entity): the
 * scanner keeps everything else byte for byte and hands anything it does
 * not understand to the loader as it is; and a store of entities as the
 * Lua DAO writes them (every field, unset ones null) loads to the same
 * snapshot with the nulls left out as with them.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../../core/conf/mg_config_store.c"
#include "tap.h"

static char tmpdir[] = "/tmp/mg_test_cfgnulls_XXXXXX";

static int
rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove(p);
}

/* one entity through the scanner, as text */
static char *
strip(const char *in)
{
    mg_cs_buf_t b = { NULL, 0, 0, 0 };

    if (mg_cs_put_entity(&b, in, strlen(in)) != MG_OK) {
        free(b.data);
        return NULL;
    }
    if (b.data == NULL) {
        return strdup("");
    }
    return b.data;
}

static void
check_strip(const char *in, const char *want, const char *what)
{
    char *got = strip(in);

    is_str(got, want, "%s", what);
    free(got);
}

/* rows written by moongate.db.declarative for spec/..., timestamps fixed */
static const struct {
    const char *type, *id, *json;
} rows[] = {
    { "certificates", "9c3c2f44-92a6-4e4a-9e2f-0b0f5f2d3a11",
      "{\"cert\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIF"
      "ICATE-----\\n\",\"cert_alt\":null,\"created_at\":1700000000,\"id"
      "\":\"9c3c2f44-92a6-4e4a-9e2f-0b0f5f2d3a11\",\"key\":\"-----BEGIN"
      " PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n\",\"key_"
      "alt\":null,\"tags\":[\"c\"],\"updated_at\":1700000000}" },
    { "ca_certificates", "7c3c2f44-92a6-4e4a-9e2f-0b0f5f2d3a11",
      "{\"cert\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIF"
      "ICATE-----\\n\",\"cert_digest\":null,\"created_at\":1700000000,\""
      "id\":\"7c3c2f44-92a6-4e4a-9e2f-0b0f5f2d3a11\",\"tags\":null,\"up"
      "dated_at\":1700000000}" },
    { "snis", "a3532a86-e42d-5acc-97e8-d59cd5613182",
      "{\"certificate\":{\"id\":\"9c3c2f44-92a6-4e4a-9e2f-0b0f5f2d3a11\""
      "},\"created_at\":1700000000,\"id\":\"a3532a86-e42d-5acc-97e8-d59"
      "cd5613182\",\"name\":\"b.test\",\"tags\":null,\"updated_at\":170"
      "0000000}" },
    { "snis", "f0e95707-eab6-5e8e-adc5-c4807da3f83d",
      "{\"certificate\":{\"id\":\"9c3c2f44-92a6-4e4a-9e2f-0b0f5f2d3a11\""
      "},\"created_at\":1700000000,\"id\":\"f0e95707-eab6-5e8e-adc5-c48"
      "07da3f83d\",\"name\":\"a.test\",\"tags\":null,\"updated_at\":170"
      "0000000}" },
    { "services", "0a1a0873-bf9b-5357-9407-379bd07cd97f",
      "{\"ca_certificates\":null,\"client_certificate\":null,\"connect_"
      "timeout\":1,\"created_at\":1700000000,\"enabled\":false,\"host\""
      ":\"up1\",\"id\":\"0a1a0873-bf9b-5357-9407-379bd07cd97f\",\"name\""
      ":\"s2\",\"path\":\"/p\",\"port\":80,\"protocol\":\"http\",\"read"
      "_timeout\":2,\"retries\":0,\"tags\":null,\"tls_verify\":null,\"t"
      "ls_verify_depth\":null,\"updated_at\":1700000000,\"write_timeout"
      "\":3}" },
    { "services", "18379bd9-6f9b-5008-ae7d-0960c66c6085",
      "{\"ca_certificates\":[\"7c3c2f44-92a6-4e4a-9e2f-0b0f5f2d3a11\"],"
      "\"client_certificate\":{\"id\":\"9c3c2f44-92a6-4e4a-9e2f-0b0f5f2"
      "d3a11\"},\"connect_timeout\":60000,\"created_at\":1700000000,\"e"
      "nabled\":true,\"host\":\"h3.test\",\"id\":\"18379bd9-6f9b-5008-a"
      "e7d-0960c66c6085\",\"name\":\"s3\",\"path\":null,\"port\":80,\"p"
      "rotocol\":\"https\",\"read_timeout\":60000,\"retries\":5,\"tags\""
      ":null,\"tls_verify\":true,\"tls_verify_depth\":3,\"updated_at\":"
      "1700000000,\"write_timeout\":60000}" },
    { "services", "b390a6d5-1b56-5b17-bcdf-5f64259d7908",
      "{\"ca_certificates\":null,\"client_certificate\":null,\"connect_"
      "timeout\":60000,\"created_at\":1700000000,\"enabled\":true,\"hos"
      "t\":\"example.com\",\"id\":\"b390a6d5-1b56-5b17-bcdf-5f64259d790"
      "8\",\"name\":\"s1\",\"path\":\"/v1\",\"port\":8443,\"protocol\":"
      "\"https\",\"read_timeout\":60000,\"retries\":5,\"tags\":[\"a\",\""
      "b\"],\"tls_verify\":null,\"tls_verify_depth\":null,\"updated_at\""
      ":1700000000,\"write_timeout\":60000}" },
    { "routes", "0358fb21-ccaf-55f3-9d51-f03ce0298d80",
      "{\"created_at\":1700000000,\"destinations\":null,\"headers\":nul"
      "l,\"hosts\":null,\"https_redirect_status_code\":426,\"id\":\"035"
      "8fb21-ccaf-55f3-9d51-f03ce0298d80\",\"methods\":null,\"name\":nu"
      "ll,\"path_handling\":\"v0\",\"paths\":[\"/unnamed\"],\"preserve_"
      "host\":false,\"protocols\":[\"http\",\"https\"],\"regex_priority"
      "\":0,\"request_buffering\":true,\"response_buffering\":true,\"se"
      "rvice\":{\"id\":\"b390a6d5-1b56-5b17-bcdf-5f64259d7908\"},\"snis"
      "\":null,\"sources\":null,\"strip_path\":true,\"tags\":null,\"upd"
      "ated_at\":1700000000}" },
    { "routes", "187c2748-b064-5fae-ae45-b2f12693e954",
      "{\"created_at\":1700000000,\"destinations\":[{\"ip\":null,\"port"
      "\":80}],\"headers\":null,\"hosts\":null,\"https_redirect_status_"
      "code\":426,\"id\":\"187c2748-b064-5fae-ae45-b2f12693e954\",\"met"
      "hods\":null,\"name\":\"tcp1\",\"path_handling\":\"v0\",\"paths\""
      ":null,\"preserve_host\":false,\"protocols\":[\"tcp\",\"tls\"],\""
      "regex_priority\":0,\"request_buffering\":true,\"response_bufferi"
      "ng\":true,\"service\":{\"id\":\"b390a6d5-1b56-5b17-bcdf-5f64259d"
      "7908\"},\"snis\":[\"t.test\"],\"sources\":[{\"ip\":\"10.0.0.0/8\""
      ",\"port\":null}],\"strip_path\":true,\"tags\":null,\"updated_at\""
      ":1700000000}" },
    { "routes", "2a45fb1d-9aec-5e6e-b7b0-9331bec6e61d",
      "{\"created_at\":1700000000,\"destinations\":null,\"headers\":nul"
      "l,\"hosts\":null,\"https_redirect_status_code\":426,\"id\":\"2a4"
      "5fb1d-9aec-5e6e-b7b0-9331bec6e61d\",\"methods\":null,\"name\":\""
      "uni\",\"path_handling\":\"v0\",\"paths\":[\"/été\"],\"preserve_h"
      "ost\":false,\"protocols\":[\"http\",\"https\"],\"regex_priority\""
      ":0,\"request_buffering\":true,\"response_buffering\":true,\"serv"
      "ice\":{\"id\":\"b390a6d5-1b56-5b17-bcdf-5f64259d7908\"},\"snis\""
      ":null,\"sources\":null,\"strip_path\":true,\"tags\":[\"✓\"],\"up"
      "dated_at\":1700000000}" },
    { "routes", "496d4283-4489-551e-8b5b-6114a1258a80",
      "{\"created_at\":1700000000,\"destinations\":null,\"headers\":nul"
      "l,\"hosts\":[\"g.test\"],\"https_redirect_status_code\":426,\"id"
      "\":\"496d4283-4489-551e-8b5b-6114a1258a80\",\"methods\":null,\"n"
      "ame\":\"grpc1\",\"path_handling\":\"v0\",\"paths\":null,\"preser"
      "ve_host\":false,\"protocols\":[\"grpc\",\"grpcs\"],\"regex_prior"
      "ity\":0,\"request_buffering\":true,\"response_buffering\":true,\""
      "service\":{\"id\":\"b390a6d5-1b56-5b17-bcdf-5f64259d7908\"},\"sn"
      "is\":null,\"sources\":null,\"strip_path\":true,\"tags\":null,\"u"
      "pdated_at\":1700000000}" },
    { "routes", "53166da4-5d02-5dd8-b46b-631670ba152b",
      "{\"created_at\":1700000000,\"destinations\":null,\"headers\":{\""
      "x-a\":[\"1\",\"2\"]},\"hosts\":[\"*.example.com\",\"x.test:8080\""
      "],\"https_redirect_status_code\":301,\"id\":\"53166da4-5d02-5dd8"
      "-b46b-631670ba152b\",\"methods\":[\"GET\",\"POST\"],\"name\":\"r"
      "1\",\"path_handling\":\"v1\",\"paths\":[\"/a\",\"~/v(?<v>\\\\d+)"
      "/x$\"],\"preserve_host\":true,\"protocols\":[\"https\"],\"regex_"
      "priority\":5,\"request_buffering\":true,\"response_buffering\":t"
      "rue,\"service\":{\"id\":\"b390a6d5-1b56-5b17-bcdf-5f64259d7908\""
      "},\"snis\":null,\"sources\":null,\"strip_path\":false,\"tags\":n"
      "ull,\"updated_at\":1700000000}" },
    { "routes", "bb09c010-2bb8-5910-9138-dbd3a51f188a",
      "{\"created_at\":1700000000,\"destinations\":null,\"headers\":nul"
      "l,\"hosts\":[\"f2.test\"],\"https_redirect_status_code\":426,\"i"
      "d\":\"bb09c010-2bb8-5910-9138-dbd3a51f188a\",\"methods\":null,\""
      "name\":\"flat2\",\"path_handling\":\"v0\",\"paths\":null,\"prese"
      "rve_host\":false,\"protocols\":[\"http\",\"https\"],\"regex_prio"
      "rity\":0,\"request_buffering\":true,\"response_buffering\":true,"
      "\"service\":{\"id\":\"18379bd9-6f9b-5008-ae7d-0960c66c6085\"},\""
      "snis\":null,\"sources\":null,\"strip_path\":true,\"tags\":null,\""
      "updated_at\":1700000000}" },
    { "routes", "edf0aba0-faf3-533f-a10a-c80785851193",
      "{\"created_at\":1700000000,\"destinations\":null,\"headers\":nul"
      "l,\"hosts\":null,\"https_redirect_status_code\":426,\"id\":\"edf"
      "0aba0-faf3-533f-a10a-c80785851193\",\"methods\":null,\"name\":\""
      "flat1\",\"path_handling\":\"v0\",\"paths\":[\"/flat\"],\"preserv"
      "e_host\":false,\"protocols\":[\"http\",\"https\"],\"regex_priori"
      "ty\":0,\"request_buffering\":true,\"response_buffering\":true,\""
      "service\":{\"id\":\"0a1a0873-bf9b-5357-9407-379bd07cd97f\"},\"sn"
      "is\":null,\"sources\":null,\"strip_path\":true,\"tags\":null,\"u"
      "pdated_at\":1700000000}" },
    { "upstreams", "e4717033-97e9-56f5-b97a-74573d753597",
      "{\"algorithm\":\"least-connections\",\"client_certificate\":null"
      ",\"created_at\":1700000000,\"hash_fallback\":\"none\",\"hash_fal"
      "lback_header\":null,\"hash_fallback_query_arg\":null,\"hash_fall"
      "back_uri_capture\":null,\"hash_on\":\"none\",\"hash_on_cookie\":"
      "null,\"hash_on_cookie_path\":\"/\",\"hash_on_header\":null,\"has"
      "h_on_query_arg\":null,\"hash_on_uri_capture\":null,\"healthcheck"
      "s\":{\"active\":{\"concurrency\":10,\"headers\":null,\"healthy\""
      ":{\"http_statuses\":[200,302],\"interval\":5,\"successes\":0},\""
      "http_path\":\"/\",\"https_sni\":null,\"https_verify_certificate\""
      ":true,\"timeout\":1,\"type\":\"http\",\"unhealthy\":{\"http_fail"
      "ures\":0,\"http_statuses\":[429,404,500,501,502,503,504,505],\"i"
      "nterval\":0,\"tcp_failures\":0,\"timeouts\":0}},\"passive\":{\"h"
      "ealthy\":{\"http_statuses\":[200,201,202,203,204,205,206,207,208"
      ",226,300,301,302,303,304,305,306,307,308],\"successes\":0},\"typ"
      "e\":\"http\",\"unhealthy\":{\"http_failures\":0,\"http_statuses\""
      ":[429,500,503],\"tcp_failures\":0,\"timeouts\":0}},\"threshold\""
      ":2.5},\"host_header\":null,\"id\":\"e4717033-97e9-56f5-b97a-7457"
      "3d753597\",\"name\":\"up1\",\"slots\":100,\"tags\":null,\"update"
      "d_at\":1700000000,\"use_srv_name\":false}" },
    { "upstreams", "ef1f2916-383b-5f34-b9ac-94bd25ccd746",
      "{\"algorithm\":\"consistent-hashing\",\"client_certificate\":nul"
      "l,\"created_at\":1700000000,\"hash_fallback\":\"ip\",\"hash_fall"
      "back_header\":null,\"hash_fallback_query_arg\":null,\"hash_fallb"
      "ack_uri_capture\":null,\"hash_on\":\"header\",\"hash_on_cookie\""
      ":null,\"hash_on_cookie_path\":\"/\",\"hash_on_header\":\"X-User\""
      ",\"hash_on_query_arg\":null,\"hash_on_uri_capture\":null,\"healt"
      "hchecks\":{\"active\":{\"concurrency\":10,\"headers\":null,\"hea"
      "lthy\":{\"http_statuses\":[200,302],\"interval\":0,\"successes\""
      ":0},\"http_path\":\"/\",\"https_sni\":null,\"https_verify_certif"
      "icate\":true,\"timeout\":1,\"type\":\"http\",\"unhealthy\":{\"ht"
      "tp_failures\":0,\"http_statuses\":[429,404,500,501,502,503,504,5"
      "05],\"interval\":0,\"tcp_failures\":0,\"timeouts\":0}},\"passive"
      "\":{\"healthy\":{\"http_statuses\":[200,201,202,203,204,205,206,"
      "207,208,226,300,301,302,303,304,305,306,307,308],\"successes\":0"
      "},\"type\":\"http\",\"unhealthy\":{\"http_failures\":0,\"http_st"
      "atuses\":[429,500,503],\"tcp_failures\":0,\"timeouts\":0}},\"thr"
      "eshold\":0},\"host_header\":null,\"id\":\"ef1f2916-383b-5f34-b9a"
      "c-94bd25ccd746\",\"name\":\"up2\",\"slots\":10000,\"tags\":null,"
      "\"updated_at\":1700000000,\"use_srv_name\":false}" },
    { "targets", "1b3d1633-bc3e-5d92-b535-2618cbfe13e3",
      "{\"created_at\":1700000000,\"id\":\"1b3d1633-bc3e-5d92-b535-2618"
      "cbfe13e3\",\"tags\":null,\"target\":\"[::1]:9000\",\"updated_at\""
      ":1700000000,\"upstream\":{\"id\":\"e4717033-97e9-56f5-b97a-74573"
      "d753597\"},\"weight\":100}" },
    { "targets", "f026465d-83d4-5362-9c09-e87e1a519f7e",
      "{\"created_at\":1700000000,\"id\":\"f026465d-83d4-5362-9c09-e87e"
      "1a519f7e\",\"tags\":[\"t\"],\"target\":\"b.internal:8000\",\"upd"
      "ated_at\":1700000000,\"upstream\":{\"id\":\"ef1f2916-383b-5f34-b"
      "9ac-94bd25ccd746\"},\"weight\":100}" },
    { "targets", "f9ff076a-c99c-5d21-9ef8-c983711527d0",
      "{\"created_at\":1700000000,\"id\":\"f9ff076a-c99c-5d21-9ef8-c983"
      "711527d0\",\"tags\":null,\"target\":\"10.0.0.1:8080\",\"updated_"
      "at\":1700000000,\"upstream\":{\"id\":\"e4717033-97e9-56f5-b97a-7"
      "4573d753597\"},\"weight\":50}" },
    { "consumers", "68031247-5b2b-5a17-9321-7e9230b9c04a",
      "{\"created_at\":1700000000,\"custom_id\":\"only-custom\",\"id\":"
      "\"68031247-5b2b-5a17-9321-7e9230b9c04a\",\"tags\":null,\"updated"
      "_at\":1700000000,\"username\":null}" },
    { "consumers", "75456bc5-e882-5e09-8b53-f55e68e0a3d8",
      "{\"created_at\":1700000000,\"custom_id\":\"1001\",\"id\":\"75456"
      "bc5-e882-5e09-8b53-f55e68e0a3d8\",\"tags\":null,\"updated_at\":1"
      "700000000,\"username\":\"alice\"}" },
    { "keyauth_credentials", "da8e8ac7-a617-5efb-b1b3-bf81497ad825",
      "{\"consumer\":{\"id\":\"75456bc5-e882-5e09-8b53-f55e68e0a3d8\"},"
      "\"created_at\":1700000000,\"id\":\"da8e8ac7-a617-5efb-b1b3-bf814"
      "97ad825\",\"key\":\"alice-key\",\"tags\":null,\"ttl\":null}" },
    { "basicauth_credentials", "60292d19-915c-5de3-bfd7-7d0568cd48cc",
      "{\"consumer\":{\"id\":\"75456bc5-e882-5e09-8b53-f55e68e0a3d8\"},"
      "\"created_at\":1700000000,\"id\":\"60292d19-915c-5de3-bfd7-7d056"
      "8cd48cc\",\"password\":\"fccbffcd03d86d2a00898a51285fd99e301bc1b"
      "5\",\"tags\":null,\"username\":\"alice\"}" },
    { "jwt_secrets", "2ea7fd1d-3112-58db-b524-75ee2195b1c3",
      "{\"algorithm\":\"HS256\",\"consumer\":{\"id\":\"75456bc5-e882-5e"
      "09-8b53-f55e68e0a3d8\"},\"created_at\":1700000000,\"id\":\"2ea7f"
      "d1d-3112-58db-b524-75ee2195b1c3\",\"key\":\"iss-a\",\"rsa_public"
      "_key\":null,\"secret\":\"sec\",\"tags\":null}" },
    { "acls", "0cfa4b40-1791-5664-9718-1008ce6d749c",
      "{\"consumer\":{\"id\":\"75456bc5-e882-5e09-8b53-f55e68e0a3d8\"},"
      "\"created_at\":1700000000,\"group\":\"admins\",\"id\":\"0cfa4b40"
      "-1791-5664-9718-1008ce6d749c\",\"tags\":null}" },
    { "acls", "b01a1d83-cf61-5dc8-80a9-0e1c800b259c",
      "{\"consumer\":{\"id\":\"75456bc5-e882-5e09-8b53-f55e68e0a3d8\"},"
      "\"created_at\":1700000000,\"group\":\"users\",\"id\":\"b01a1d83-"
      "cf61-5dc8-80a9-0e1c800b259c\",\"tags\":null}" },
    { "plugins", "107b62b5-88a5-521b-8615-157259b88982",
      "{\"config\":{\"name\":\"X-Y\",\"value\":\"v\"},\"consumer\":null"
      ",\"created_at\":1700000000,\"enabled\":true,\"id\":\"107b62b5-88"
      "a5-521b-8615-157259b88982\",\"instance_name\":null,\"name\":\"he"
      "aders\",\"protocols\":[\"grpc\",\"grpcs\",\"http\",\"https\"],\""
      "route\":null,\"service\":{\"id\":\"b390a6d5-1b56-5b17-bcdf-5f642"
      "59d7908\"},\"tags\":null,\"updated_at\":1700000000}" },
    { "plugins", "4a5cb341-8149-5f9f-bab2-376c5cd7bf4a",
      "{\"config\":{\"request\":{\"add\":{},\"remove\":{},\"set\":{\"x-"
      "q\":\"\\\"quoted\\\" \\\\ back\\tslash\\n\"}},\"response\":{\"ad"
      "d\":{},\"remove\":{},\"set\":{}}},\"consumer\":null,\"created_at"
      "\":1700000000,\"enabled\":true,\"id\":\"4a5cb341-8149-5f9f-bab2-"
      "376c5cd7bf4a\",\"instance_name\":null,\"name\":\"mg-header-rewri"
      "te\",\"protocols\":[\"grpc\",\"grpcs\",\"http\",\"https\"],\"rou"
      "te\":{\"id\":\"53166da4-5d02-5dd8-b46b-631670ba152b\"},\"service"
      "\":null,\"tags\":null,\"updated_at\":1700000000}" },
    { "plugins", "581e555c-83f3-5514-9fae-335345cd6263",
      "{\"config\":{\"name\":\"X-Plugin\",\"value\":\"z\"},\"consumer\""
      ":null,\"created_at\":1700000000,\"enabled\":false,\"id\":\"581e5"
      "55c-83f3-5514-9fae-335345cd6263\",\"instance_name\":null,\"name\""
      ":\"headers\",\"protocols\":[\"http\"],\"route\":{\"id\":\"edf0ab"
      "a0-faf3-533f-a10a-c80785851193\"},\"service\":null,\"tags\":null"
      ",\"updated_at\":1700000000}" },
    { "plugins", "94ca72ec-0aff-5c74-bc6e-8b673b9f2375",
      "{\"config\":{\"request\":{\"add\":{},\"remove\":{},\"set\":{}},\""
      "response\":{\"add\":{},\"remove\":{},\"set\":{}}},\"consumer\":n"
      "ull,\"created_at\":1700000000,\"enabled\":true,\"id\":\"94ca72ec"
      "-0aff-5c74-bc6e-8b673b9f2375\",\"instance_name\":\"hr1\",\"name\""
      ":\"mg-header-rewrite\",\"protocols\":[\"grpc\",\"grpcs\",\"http\""
      ",\"https\"],\"route\":null,\"service\":{\"id\":\"b390a6d5-1b56-5"
      "b17-bcdf-5f64259d7908\"},\"tags\":null,\"updated_at\":1700000000"
      "}" },
    { "plugins", "9f2d63a4-9994-5377-a467-c6bb8f10c868",
      "{\"config\":{\"name\":\"X-Plugin\",\"value\":\"yes\"},\"consumer"
      "\":{\"id\":\"75456bc5-e882-5e09-8b53-f55e68e0a3d8\"},\"created_a"
      "t\":1700000000,\"enabled\":true,\"id\":\"9f2d63a4-9994-5377-a467"
      "-c6bb8f10c868\",\"instance_name\":null,\"name\":\"headers\",\"pr"
      "otocols\":[\"grpc\",\"grpcs\",\"http\",\"https\"],\"route\":null"
      ",\"service\":null,\"tags\":null,\"updated_at\":1700000000}" },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* the document as it was laid out before: every row verbatim */
static int
verbatim_each(void *data, const mg_store_entity_t *e)
{
    mg_cs_ctx_t *ctx = data;
    size_t       i;

    for (i = 0; i < MG_CS_NTYPES; i++) {
        if (strcmp(e->type, mg_cs_types[i]) == 0) {
            break;
        }
    }
    if (i == MG_CS_NTYPES) {
        return MG_OK;
    }
    if ((ctx->bufs[i].count++ ? mg_cs_put(&ctx->bufs[i], ",", 1) : MG_OK)
            != MG_OK
        || mg_cs_put(&ctx->bufs[i], e->json.data, e->json.len) != MG_OK)
    {
        return MG_ERROR;
    }
    return MG_OK;
}

static char *
verbatim_document(mg_store_t *s)
{
    mg_cs_ctx_t    ctx;
    mg_cs_buf_t    doc = { NULL, 0, 0, 0 };
    mg_store_err_t serr;
    uint64_t       version;
    size_t         i;
    char           key[64];
    int            n;

    memset(&ctx, 0, sizeof(ctx));
    if (mg_store_export(s, verbatim_each, &ctx, &version, &serr) != MG_OK) {
        return NULL;
    }
    mg_cs_put(&doc, "{\"_format_version\":\"3.0\"", 24);
    for (i = 0; i < MG_CS_NTYPES; i++) {
        if (ctx.bufs[i].count) {
            n = snprintf(key, sizeof(key), ",\"%s\":[", mg_cs_types[i]);
            mg_cs_put(&doc, key, (size_t) n);
            mg_cs_put(&doc, ctx.bufs[i].data, ctx.bufs[i].len);
            mg_cs_put(&doc, "]", 1);
        }
        free(ctx.bufs[i].data);
    }
    mg_cs_put(&doc, "}", 1);
    return doc.data;
}

/* --- comparing two snapshots, field by field ----------------------------- */

static int            diffs;
static const mg_str_t none = { NULL, 0 };

static void
same_str(mg_str_t a, mg_str_t b, const char *what, size_t i)
{
    if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)) {
        printf("#   %s[%zu]: '%.*s' vs '%.*s'\n", what, i, (int) a.len,
               a.data ? a.data : "", (int) b.len, b.data ? b.data : "");
        diffs++;
    }
}

static void
same_int(long long a, long long b, const char *what, size_t i)
{
    if (a != b) {
        printf("#   %s[%zu]: %lld vs %lld\n", what, i, a, b);
        diffs++;
    }
}

static void
same_arr(const mg_str_array_t *a, const mg_str_array_t *b, const char *what,
         size_t i)
{
    size_t j;

    same_int((long long) a->n, (long long) b->n, what, i);
    for (j = 0; j < a->n && j < b->n; j++) {
        same_str(a->elts[j], b->elts[j], what, i);
    }
}

#define SAME_S(f) same_str(x->f, y->f, #f, i)
#define SAME_I(f) same_int((long long) x->f, (long long) y->f, #f, i)
#define SAME_A(f) same_arr(&x->f, &y->f, #f, i)
#define SAME_P(f) \
    same_str(x->f ? x->f->id : none, y->f ? y->f->id : none, #f, i)

static void
same_config(const mg_config_t *a, const mg_config_t *b)
{
    size_t i, j;

    same_int((long long) a->services_n, (long long) b->services_n,
             "services_n", 0);
    for (i = 0; i < a->services_n && i < b->services_n; i++) {
        const mg_service_t *x = a->services[i], *y = b->services[i];

        SAME_S(id); SAME_S(name); SAME_S(protocol); SAME_S(host);
        SAME_I(port); SAME_S(path); SAME_I(retries); SAME_I(connect_timeout);
        SAME_I(write_timeout); SAME_I(read_timeout); SAME_I(enabled);
        SAME_I(tls_verify); SAME_I(tls_verify_depth); SAME_A(ca_certificates);
        SAME_S(client_certificate); SAME_A(tags); SAME_I(created_at);
        SAME_I(updated_at); SAME_P(upstream);
    }
    same_int((long long) a->routes_n, (long long) b->routes_n, "routes_n",
             0);
    for (i = 0; i < a->routes_n && i < b->routes_n; i++) {
        const mg_route_t *x = a->routes[i], *y = b->routes[i];

        SAME_S(id); SAME_S(name); SAME_P(service); SAME_A(protocols);
        SAME_A(methods); SAME_A(hosts); SAME_A(paths); SAME_I(nheaders);
        for (j = 0; j < x->nheaders && j < y->nheaders; j++) {
            same_str(x->headers[j].name, y->headers[j].name, "header", i);
            same_arr(&x->headers[j].values, &y->headers[j].values,
                     "header values", i);
        }
        SAME_A(snis); SAME_I(https_redirect_status_code);
        SAME_I(regex_priority); SAME_I(strip_path); SAME_I(preserve_host);
        SAME_I(request_buffering); SAME_I(response_buffering);
        SAME_S(path_handling); SAME_A(tags); SAME_I(created_at);
        SAME_I(updated_at);
    }
    same_int((long long) a->upstreams_n, (long long) b->upstreams_n,
             "upstreams_n", 0);
    for (i = 0; i < a->upstreams_n && i < b->upstreams_n; i++) {
        const mg_upstream_t *x = a->upstreams[i], *y = b->upstreams[i];

        SAME_S(id); SAME_S(name); SAME_S(algorithm); SAME_I(slots);
        SAME_S(hash_on); SAME_S(hash_fallback); SAME_S(hash_on_header);
        SAME_S(hash_fallback_header); SAME_S(hash_on_cookie);
        SAME_S(hash_on_cookie_path); SAME_S(hash_on_query_arg);
        SAME_S(hash_fallback_query_arg); SAME_S(hash_on_uri_capture);
        SAME_S(hash_fallback_uri_capture); SAME_S(host_header);
        SAME_S(healthchecks_json); SAME_A(tags); SAME_I(created_at);
        SAME_I(ntargets);
    }
    same_int((long long) a->targets_n, (long long) b->targets_n,
             "targets_n", 0);
    for (i = 0; i < a->targets_n && i < b->targets_n; i++) {
        const mg_target_t *x = a->targets[i], *y = b->targets[i];

        SAME_S(id); SAME_S(target); SAME_S(host); SAME_I(port);
        SAME_I(weight); SAME_A(tags); SAME_I(created_at); SAME_P(upstream);
    }
    same_int((long long) a->consumers_n, (long long) b->consumers_n,
             "consumers_n", 0);
    for (i = 0; i < a->consumers_n && i < b->consumers_n; i++) {
        const mg_consumer_t *x = a->consumers[i], *y = b->consumers[i];

        SAME_S(id); SAME_S(username); SAME_S(custom_id); SAME_A(tags);
        SAME_I(created_at);
    }
    same_int((long long) a->plugins_n, (long long) b->plugins_n,
             "plugins_n", 0);
    for (i = 0; i < a->plugins_n && i < b->plugins_n; i++) {
        const mg_plugin_t *x = a->plugins[i], *y = b->plugins[i];

        SAME_S(id); SAME_S(name); SAME_S(instance_name); SAME_S(config_json);
        SAME_I(enabled); SAME_A(protocols); SAME_P(route); SAME_P(service);
        SAME_P(consumer); SAME_A(tags); SAME_I(created_at);
    }
    same_int((long long) a->certificates_n, (long long) b->certificates_n,
             "certificates_n", 0);
    for (i = 0; i < a->certificates_n && i < b->certificates_n; i++) {
        const mg_certificate_t *x = a->certificates[i];
        const mg_certificate_t *y = b->certificates[i];

        SAME_S(id); SAME_S(cert); SAME_S(key); SAME_S(cert_alt);
        SAME_S(key_alt); SAME_A(tags); SAME_I(created_at);
    }
    same_int((long long) a->snis_n, (long long) b->snis_n, "snis_n", 0);
    for (i = 0; i < a->snis_n && i < b->snis_n; i++) {
        const mg_sni_t *x = a->snis[i], *y = b->snis[i];

        SAME_S(id); SAME_S(name); SAME_P(certificate); SAME_A(tags);
        SAME_I(created_at);
    }
    same_int((long long) a->ca_certificates_n,
             (long long) b->ca_certificates_n, "ca_certificates_n", 0);
    for (i = 0; i < a->ca_certificates_n && i < b->ca_certificates_n; i++) {
        const mg_ca_certificate_t *x = a->ca_certificates[i];
        const mg_ca_certificate_t *y = b->ca_certificates[i];

        SAME_S(id); SAME_S(cert); SAME_S(cert_digest); SAME_A(tags);
        SAME_I(created_at);
    }
}

int
main(void)
{
    mg_store_t        *s;
    mg_store_entity_t  e;
    mg_store_err_t     serr;
    mg_config_t       *with, *without;
    mg_config_errors_t errs = { NULL, 0, 0 };
    char               err[4096], *old, *doc;
    uint64_t           version;
    size_t             i, len, stored = 0;

    check_strip("{\"a\":1,\"b\":null,\"c\":\"x\"}", "{\"a\":1,\"c\":\"x\"}",
                "a null member is left out");
    check_strip("{\"b\":null,\"a\":1}", "{\"a\":1}", "the first one too");
    check_strip("{\"a\":1,\"b\":null}", "{\"a\":1}", "the last one too");
    check_strip("{\"a\":null,\"b\":null}", "{}", "all of them: {}");
    check_strip("{}", "{}", "an empty object stays");
    check_strip(" { \"a\" : null , \"b\" : [ 1 , null ] } ",
                "{\"b\" : [ 1 , null ]}",
                "whitespace anywhere; a kept member is copied as it is");
    check_strip("{\"a\":{\"x\":null},\"b\":[null],\"c\":\"null\"}",
                "{\"a\":{\"x\":null},\"b\":[null],\"c\":\"null\"}",
                "nested nulls and the string \"null\" stay");
    check_strip("{\"a\\\"b\":null,\"c\\\\\":\"}{,\\\"null\",\"d\":nullx}",
                "{\"c\\\\\":\"}{,\\\"null\",\"d\":nullx}",
                "escapes in keys and strings are followed");
    check_strip("{\"a\":[{\"b\":\"]\"},[]],\"n\":null,\"z\":-1.5e3}",
                "{\"a\":[{\"b\":\"]\"},[]],\"z\":-1.5e3}",
                "nesting with brackets inside strings");
    check_strip("[1,null]", "[1,null]", "not an object: as it is");
    check_strip("{\"a\":null", "{\"a\":null", "unterminated: as it is");
    check_strip("{\"a\":null} x", "{\"a\":null} x",
                "trailing text: as it is");
    check_strip("{\"a\":null,}", "{\"a\":null,}", "a trailing comma: as it is");
    check_strip("{a:null,\"b\":null}", "{a:null,\"b\":null}",
                "an unquoted key: as it is");
    check_strip("{\"a\":,\"b\":1}", "{\"a\":,\"b\":1}",
                "a missing value: as it is");
    check_strip("{\"a\":\"x", "{\"a\":\"x", "an open string: as it is");
    check_strip("", "", "nothing: nothing");

    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    s = mg_store_open(tmpdir, 0, err, sizeof(err));
    ok(s != NULL, "store opens");
    if (s == NULL) {
        return done_testing();
    }
    for (i = 0; i < NROWS; i++) {
        memset(&e, 0, sizeof(e));
        e.type = rows[i].type;
        e.id.data = rows[i].id;
        e.id.len = strlen(rows[i].id);
        e.json.data = rows[i].json;
        e.json.len = strlen(rows[i].json);
        stored += mg_store_insert(s, &e, &serr) == MG_OK;
    }
    is_int(stored, NROWS, "every row stored");

    doc = mg_config_store_document(s, &version, &len, err, sizeof(err));
    ok(doc != NULL && strstr(doc, "\"hosts\":null") == NULL
       && strstr(doc, "\"client_certificate\":null") == NULL
       && strstr(doc, "\"consumer\":null") == NULL,
       "the entities' null fields are left out");
    ok(doc != NULL && strstr(doc, "\"https_sni\":null") != NULL,
       "nested ones stay (an upstream's healthchecks)");
    old = verbatim_document(s);
    ok(old != NULL && doc != NULL && strlen(old) > len,
       "it is shorter than the rows laid out as they are (%zu < %zu)", len,
       old ? strlen(old) : 0);

    with = old ? mg_declarative_load_string(old, strlen(old), &errs) : NULL;
    for (i = 0; i < errs.n; i++) {
        printf("#   %s\n", errs.lines[i]);
    }
    ok(with != NULL, "the rows as they are load");
    mg_config_errors_free(&errs);
    without = mg_config_from_store(s, &version, err, sizeof(err));
    ok(without != NULL, "the document without nulls loads");
    if (without == NULL) {
        printf("#   %s\n", err);
    }
    if (with && without) {
        ok(with->services_n == 3 && with->routes_n == 7
           && with->plugins_n == 5 && with->upstreams_n == 2
           && with->targets_n == 3 && with->consumers_n == 2
           && with->certificates_n == 1 && with->snis_n == 2
           && with->ca_certificates_n == 1, "every type is there");
        diffs = 0;
        same_config(with, without);
        is_int(diffs, 0, "both snapshots are the same, field by field");
    }
    mg_config_free(with);
    mg_config_free(without);
    free(old);
    free(doc);
    mg_store_close(s);
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
