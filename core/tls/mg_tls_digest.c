/*
 * mg_tls_digest.c -- MD5, SHA-1, SHA-256 and their HMACs for Lua
 * (ngx.md5, ngx.sha1_bin, ngx.hmac_sha1, the declarative loader's v5
 * UUIDs), from mbedTLS: the FFI functions mg_lua_digest and mg_lua_hmac
 * of core/lua/mg_lua_api.h.  They live here because mbedTLS stays behind
 * core/tls.  lua/moongate/digest.lua keeps its pure-Lua versions for the
 * unit specs, which run without the binary.
 */
#include <mbedtls/md.h>
#include "../mg_core.h"
#include "../lua/mg_lua_api.h"

static const mbedtls_md_info_t *
mg_digest_info(int alg)
{
    switch (alg) {
    case 0:  return mbedtls_md_info_from_type(MBEDTLS_MD_MD5);
    case 1:  return mbedtls_md_info_from_type(MBEDTLS_MD_SHA1);
    case 2:  return mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    default: return NULL;
    }
}

int
mg_lua_digest(int alg, const char *p, size_t n, unsigned char *out)
{
    const mbedtls_md_info_t *md = mg_digest_info(alg);

    if (md == NULL || mbedtls_md(md, (const unsigned char *) p, n, out) != 0) {
        return MG_ERROR;
    }
    return MG_OK;
}

int
mg_lua_hmac(int alg, const char *key, size_t kl, const char *p, size_t n,
            unsigned char *out)
{
    const mbedtls_md_info_t *md = mg_digest_info(alg);

    if (md == NULL
        || mbedtls_md_hmac(md, (const unsigned char *) key, kl,
                           (const unsigned char *) p, n, out) != 0)
    {
        return MG_ERROR;
    }
    return MG_OK;
}
