/* auth.c - credentials, nonces and MACs on libsodium. See auth.h. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"

#define KEYRING_MAX_FILE (1u << 20)

_Static_assert(AUTH_MAC_BYTES == crypto_auth_hmacsha512256_BYTES, "MAC size");
_Static_assert(AUTH_KEY_BYTES == crypto_auth_hmacsha512256_KEYBYTES, "key size");

int auth_init(char *err, size_t errlen) {
    if (sodium_init() < 0) {
        err_set(err, errlen, "libsodium cannot start");
        return -1;
    }
    return 0;
}

bool auth_equal(const void *a, const void *b, size_t n) { return sodium_memcmp(a, b, n) == 0; }
bool auth_key_is_zero(const auth_key *k) { return sodium_is_zero(k->k, sizeof k->k) == 1; }

int auth_key_from(const void *cred, size_t len, auth_key *out, char *err, size_t errlen) {
    if (auth_init(err, errlen) != 0) return -1;
    if (len < AUTH_MIN_SECRET) {
        err_set(err, errlen, "is %zu bytes; at least %d are needed (make one with: head -c 32 /dev/urandom | base64)",
                len, AUTH_MIN_SECRET);
        return -1;
    }
    static const char domain[] = "baton credential v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof out->k);
    crypto_generichash_update(&st, (const unsigned char *)domain, sizeof domain);
    crypto_generichash_update(&st, cred, len);
    crypto_generichash_final(&st, out->k, sizeof out->k);
    sodium_memzero(&st, sizeof st);
    return 0;
}

/* Reads all of a file of at most max bytes into a malloc'd, NUL-terminated
 * buffer. 0 (loose set if group or others may read it), or -1 with a message. */
static int read_cred_file(const char *path, const char *what, size_t max, char **out, size_t *len, bool *loose,
                          char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, errlen, "%s file '%s': %s", what, path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        err_set(err, errlen, "%s file '%s' is not a regular file", what, path);
        close(fd);
        return -1;
    }
    if ((uint64_t)sb.st_size > max) {
        err_set(err, errlen, "%s file '%s' is %lld bytes; at most %zu are allowed", what, path,
                (long long)sb.st_size, max);
        close(fd);
        return -1;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    size_t n = 0;
    while (buf && n < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)sb.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf || n != (size_t)sb.st_size) {
        err_set(err, errlen, "%s file '%s' cannot be read", what, path);
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    *loose = (sb.st_mode & (S_IRGRP | S_IROTH)) != 0;
    return 0;
}

static bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* The warning a readable credential file gets; returns 1 (see auth_key_load). */
static int warn_loose(const char *path, const char *what, char *err, size_t errlen) {
    err_set(err, errlen, "warning: %s file '%s' can be read by other users; chmod 600 it", what, path);
    return 1;
}

int auth_cred_read(const char *path, const char *what, char **out, char *err, size_t errlen) {
    char *buf;
    size_t n;
    bool loose;
    *out = NULL;
    if (read_cred_file(path, what, AUTH_MAX_SECRET, &buf, &n, &loose, err, errlen) != 0) return -1;
    while (n && is_space(buf[n - 1])) buf[--n] = 0;
    if (n == 0) {
        err_set(err, errlen, "%s file '%s' is empty", what, path);
        free(buf);
        return -1;
    }
    if (n < AUTH_MIN_SECRET) {
        err_set(err, errlen, "%s in '%s' is %zu bytes; at least %d are needed (make one with: "
                "head -c 32 /dev/urandom | base64 > FILE)", what, path, n, AUTH_MIN_SECRET);
        auth_cred_free(buf);
        return -1;
    }
    *out = buf;
    return loose ? warn_loose(path, what, err, errlen) : 0;
}

void auth_cred_free(char *cred) {
    if (!cred) return;
    sodium_memzero(cred, strlen(cred));
    free(cred);
}

int auth_key_load(const char *path, const char *what, auth_key *out, char *err, size_t errlen) {
    char *cred;
    int rc = auth_cred_read(path, what, &cred, err, errlen);
    if (rc < 0) return -1;
    char why[200];
    if (auth_key_from(cred, strlen(cred), out, why, sizeof why) != 0) {
        err_set(err, errlen, "%s", why);
        rc = -1;
    }
    auth_cred_free(cred);
    return rc;
}

int auth_keyring_load(const char *path, auth_keyring *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t n;
    bool loose;
    if (read_cred_file(path, "API key", KEYRING_MAX_FILE, &buf, &n, &loose, err, errlen) != 0) return -1;
    int rc = 0, line = 0;
    for (char *p = buf, *next; rc == 0 && p < buf + n; p = next) {
        char *eol = memchr(p, '\n', (size_t)(buf + n - p));
        next = eol ? eol + 1 : buf + n;
        line++;
        char *e = eol ? eol : buf + n;
        while (p < e && is_space(*p)) p++;
        while (e > p && is_space(e[-1])) e--;
        if (p == e || *p == '#') continue;
        auth_key *nk = realloc(out->keys, (out->n + 1) * sizeof *nk);
        if (!nk) {
            err_set(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        out->keys = nk;
        char why[160];
        if (auth_key_from(p, (size_t)(e - p), &out->keys[out->n], why, sizeof why) != 0) {
            err_set(err, errlen, "API key on line %d of '%s' %s", line, path, why);
            rc = -1;
            break;
        }
        out->n++;
    }
    sodium_memzero(buf, n);
    free(buf);
    if (rc == 0 && out->n == 0) {
        err_set(err, errlen, "API key file '%s' holds no key", path);
        rc = -1;
    }
    if (rc < 0) auth_keyring_free(out);
    else if (loose) rc = warn_loose(path, "API key", err, errlen);
    return rc;
}

void auth_keyring_free(auth_keyring *r) {
    if (!r) return;
    if (r->keys) sodium_memzero(r->keys, r->n * sizeof *r->keys);
    free(r->keys);
    r->keys = NULL;
    r->n = 0;
}

void auth_nonce(uint8_t out[AUTH_NONCE_BYTES]) {
    if (sodium_init() < 0) abort(); /* no randomness: nothing safe to do */
    randombytes_buf(out, AUTH_NONCE_BYTES);
}

static const char *const purpose_names[] = {"node", "client", "admin", "link"}; /* by auth_purpose */
static const char *const side_names[] = {"connector", "acceptor"};

static void put_u32(crypto_auth_hmacsha512256_state *st, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    crypto_auth_hmacsha512256_update(st, b, sizeof b);
}

/* HMAC over: "baton-auth-1 PURPOSE SIDE" NUL, len+cluster id, both roles, both nonces. */
void auth_mac(const auth_key *k, auth_purpose purpose, auth_side side, const auth_transcript *t,
              uint8_t out[AUTH_MAC_BYTES]) {
    if (sodium_init() < 0) abort();
    char label[64];
    int ll = snprintf(label, sizeof label, "baton-auth-1 %s %s", purpose_names[purpose], side_names[side]);
    const char *cid = t->cluster_id ? t->cluster_id : "";
    size_t cl = strlen(cid);
    crypto_auth_hmacsha512256_state st;
    crypto_auth_hmacsha512256_init(&st, k->k, sizeof k->k);
    crypto_auth_hmacsha512256_update(&st, (const unsigned char *)label, (unsigned long long)ll + 1);
    put_u32(&st, (uint32_t)cl);
    crypto_auth_hmacsha512256_update(&st, (const unsigned char *)cid, cl);
    put_u32(&st, t->role_connector);
    put_u32(&st, t->role_acceptor);
    crypto_auth_hmacsha512256_update(&st, t->nonce_connector, AUTH_NONCE_BYTES);
    crypto_auth_hmacsha512256_update(&st, t->nonce_acceptor, AUTH_NONCE_BYTES);
    crypto_auth_hmacsha512256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

bool auth_verify(const auth_key *k, auth_purpose purpose, auth_side side, const auth_transcript *t,
                 const uint8_t *mac, size_t mac_len) {
    if (!mac || mac_len != AUTH_MAC_BYTES) return false; /* the length is no secret */
    uint8_t want[AUTH_MAC_BYTES];
    auth_mac(k, purpose, side, t, want);
    bool ok = auth_equal(want, mac, AUTH_MAC_BYTES);
    sodium_memzero(want, sizeof want);
    return ok;
}

int auth_keyring_match(const auth_keyring *r, auth_purpose purpose, auth_side side, const auth_transcript *t,
                       const uint8_t *mac, size_t mac_len) {
    int found = -1;
    for (size_t i = 0; r && i < r->n; i++) {
        bool ok = auth_verify(&r->keys[i], purpose, side, t, mac, mac_len);
        if (ok && found < 0) found = (int)i;
    }
    return found;
}
