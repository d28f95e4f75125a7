/* auth.h - who may talk to a Baton cluster: secrets, nonces and MACs.
 *
 * Three credentials, each a string of at least AUTH_MIN_SECRET bytes:
 *   - the cluster secret (a file every node holds): coordinator and workers prove
 *     it to each other on every node link, both ways;
 *   - the admin token (a file on the coordinator and the admin): admin calls;
 *   - API keys (a file of keys, one per line, on the coordinator; one key on a
 *     client): client calls, when the coordinator has keys.
 * And one key that is not a file: the link key, 32 random bytes the coordinator
 * makes for each plan and sends with each assignment; the two workers of a stage
 * link prove it to each other, so only members of the current plan connect.
 * None of them ever crosses the wire. Each connection starts with a fresh random
 * nonce from both sides; a side proves a credential by sending a MAC keyed with
 * it over both nonces, both roles, the cluster id and what is being proved (the
 * purpose and which side proves it). A MAC is good for one connection only: an
 * eavesdropper cannot replay it, and one side's MAC is never valid as the other's.
 * The wire protocol that carries these is in net.c (the hello) and baton_client.c.
 *
 *     auth_key secret;
 *     char msg[256];
 *     int rc = auth_key_load("/etc/baton/secret", "cluster secret", &secret, msg, sizeof msg);
 *     if (rc < 0) die(msg); if (rc > 0) warn(msg);
 *     auth_transcript t = {cluster_id, role_connector, role_acceptor, nonce_c, nonce_a};
 *     uint8_t mac[AUTH_MAC_BYTES];
 *     auth_mac(&secret, AUTH_NODE, AUTH_CONNECTOR, &t, mac);          // prover
 *     bool ok = auth_verify(&secret, AUTH_NODE, AUTH_CONNECTOR, &t, mac, sizeof mac); // checker
 *
 * Built on libsodium: keys are BLAKE2b-256 of the credential, MACs are
 * HMAC-SHA-512-256 (crypto_auth), comparisons are constant-time (sodium_memcmp).
 * This authenticates; it does not encrypt: traffic after the handshake is plain
 * TCP, so run clusters on a private network or through a tunnel.
 */
#ifndef BATON_AUTH_H
#define BATON_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_NONCE_BYTES 32
#define AUTH_MAC_BYTES 32
#define AUTH_KEY_BYTES 32
#define AUTH_MIN_SECRET 16   /* bytes a credential needs at least */
#define AUTH_MAX_SECRET 4096 /* bytes a credential (or a secret file) may have at most */

/* A credential, reduced to a MAC key. */
typedef struct auth_key {
    uint8_t k[AUTH_KEY_BYTES];
} auth_key;

/* The API keys a coordinator accepts. */
typedef struct auth_keyring {
    auth_key *keys;
    size_t n;
} auth_keyring;

/* What a MAC proves: the cluster secret, an API key, the admin token, the
 * per-plan link key of a stage link (peer to peer, net_config.link_key). */
typedef enum auth_purpose { AUTH_NODE = 0, AUTH_CLIENT = 1, AUTH_ADMIN = 2, AUTH_LINK = 3 } auth_purpose;
/* Who proves it: the side that connected or the side that accepted. */
typedef enum auth_side { AUTH_CONNECTOR = 0, AUTH_ACCEPTOR = 1 } auth_side;

/* What both sides know about one connection once the hellos have crossed. */
typedef struct auth_transcript {
    const char *cluster_id;
    uint32_t role_connector, role_acceptor; /* Baton__Role of each side */
    const uint8_t *nonce_connector, *nonce_acceptor; /* AUTH_NONCE_BYTES each */
} auth_transcript;

/* Starts libsodium. 0, or -1 with a message. Every function below calls it. */
int auth_init(char *err, size_t errlen);

/* Derives the key of a credential given as bytes (not NUL-terminated; no
 * trimming). 0, or -1 with a message if it is shorter than AUTH_MIN_SECRET. */
int auth_key_from(const void *cred, size_t len, auth_key *out, char *err, size_t errlen);

/* Reads a credential file (what: "cluster secret", "admin token" for messages)
 * into a malloc'd string without trailing whitespace (free it with
 * auth_cred_free). 0; 1 with a warning in err if the file's permissions let
 * group or others read it; -1 with a message if it is missing, unreadable,
 * empty, shorter than AUTH_MIN_SECRET or larger than AUTH_MAX_SECRET bytes. */
int auth_cred_read(const char *path, const char *what, char **out, char *err, size_t errlen);
void auth_cred_free(char *cred); /* wipes it; accepts NULL */

/* auth_cred_read, then auth_key_from: returns as auth_cred_read. */
int auth_key_load(const char *path, const char *what, auth_key *out, char *err, size_t errlen);

/* Reads an API-key file: one key per line; blank lines and lines starting with
 * '#' are skipped, whitespace around a key is ignored. Returns as auth_key_load
 * (at least one key is required; a short key is an error naming its line). */
int auth_keyring_load(const char *path, auth_keyring *out, char *err, size_t errlen);
void auth_keyring_free(auth_keyring *r); /* accepts NULL; wipes the keys */

/* Fills a nonce with random bytes. */
void auth_nonce(uint8_t out[AUTH_NONCE_BYTES]);

/* The MAC that `side` sends to prove `purpose` with key k on the connection t. */
void auth_mac(const auth_key *k, auth_purpose purpose, auth_side side, const auth_transcript *t,
              uint8_t out[AUTH_MAC_BYTES]);

/* True if mac (mac_len bytes) is the MAC auth_mac computes; compared in
 * constant time. */
bool auth_verify(const auth_key *k, auth_purpose purpose, auth_side side, const auth_transcript *t,
                 const uint8_t *mac, size_t mac_len);

/* Index of the key in r whose MAC mac is, or -1. Checks every key (the time
 * taken does not depend on which one matches). */
int auth_keyring_match(const auth_keyring *r, auth_purpose purpose, auth_side side, const auth_transcript *t,
                       const uint8_t *mac, size_t mac_len);

/* True if every byte of k is zero (a link key not set yet); constant time. */
bool auth_key_is_zero(const auth_key *k);

/* Constant-time equality of n bytes (sodium_memcmp): the only way this module
 * compares secrets. */
bool auth_equal(const void *a, const void *b, size_t n);

#endif
