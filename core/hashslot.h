/* core/hashslot.h - Redis Cluster key routing: the CRC16 hash slot of a key name (with the
 * {hash tag} rule) and the MOVED/ASK redirections a node answers with.
 *
 * Pure: takes bytes, fills structs the caller provides; owns nothing, thread-safe. The
 * algorithm is the Redis Cluster specification's ("Keys distribution model"): CRC16-CCITT
 * (XMODEM) of the key, or of the part between the first '{' and the next '}' when that part
 * is not empty, modulo 16384. */
#ifndef CW_HASHSLOT_H
#define CW_HASHSLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define CW_HASHSLOT_COUNT     16384
#define CW_HASHSLOT_HOST_SIZE 256 /* host buffer of a redirect, NUL included */

/* CRC16-CCITT, polynomial 0x1021, initial value 0 (XMODEM): "123456789" gives 0x31c3. */
uint16_t cw_hashslot_crc16(const char *p, size_t len);
/* The slot (0..16383) of the key name p (len bytes), honouring the hash tag rule. */
unsigned cw_hashslot_of(const char *p, size_t len);

/* A redirection: "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>". */
struct cw_hashslot_redirect {
    bool is_ask;
    unsigned slot;
    char host[CW_HASHSLOT_HOST_SIZE]; /* NUL-terminated; an IPv6 address without brackets */
    int port;
};

/* What a cluster node's error reply asks of its client. */
enum cw_hashslot_error {
    CW_HASHSLOT_ERROR_OTHER = 0,   /* an error of the command itself */
    CW_HASHSLOT_ERROR_MOVED,       /* the slot has another owner: follow, reload the map */
    CW_HASHSLOT_ERROR_ASK,         /* the key is being imported: ASKING, then on that node */
    CW_HASHSLOT_ERROR_TRYAGAIN,    /* a multi-key command met a slot half moved: retry soon */
    CW_HASHSLOT_ERROR_CLUSTERDOWN, /* the cluster cannot serve the slot now */
};

/* The kind of the error reply p (len bytes, need not end in NUL), by its first word: "MOVED"
 * and "ASK" need more words after it (cw_hashslot_parse_redirect() reads them), "TRYAGAIN"
 * and "CLUSTERDOWN" may stand alone. */
enum cw_hashslot_error cw_hashslot_error_kind(const char *p, size_t len);

/* Parses an error reply's text (len bytes, need not end in NUL): 0 and *out for a MOVED or
 * ASK, -ENOENT when the error is something else, -EBADMSG when it is a MOVED or ASK with a
 * bad slot, host or port. */
CW_MUST_CHECK int cw_hashslot_parse_redirect(const char *p, size_t len,
                                             struct cw_hashslot_redirect *out);

#endif /* CW_HASHSLOT_H */
