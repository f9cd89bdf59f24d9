/* core/limits.h - every bound on outside input, named once.
 *
 * Each limit is tested at N and N+1 by the module that enforces it. Change a value here
 * and the tests follow. */
#ifndef CW_LIMITS_H
#define CW_LIMITS_H

/* Request line and headers. */
#define CW_LIMIT_URL_BYTES          8192  /* longer request target: 414 */
#define CW_LIMIT_HOST_BYTES         255   /* DNS name limit; longer Host: 400 */
#define CW_LIMIT_KEY_BYTES          16384 /* normalised cache key, incl. vary values */
#define CW_LIMIT_HEADER_COUNT       100   /* headers stored per response */
#define CW_LIMIT_HEADER_NAME_BYTES  256
#define CW_LIMIT_HEADER_VALUE_BYTES 8192
#define CW_LIMIT_HEADERS_BYTES      65536 /* whole stored header block */
#define CW_LIMIT_VARY_FIELDS        16    /* field names in one Vary */
#define CW_LIMIT_TAGS               32    /* Surrogate-Key tags indexed per entry */
#define CW_LIMIT_TAG_BYTES          256
#define CW_LIMIT_VARY_RECORD_BYTES  1024 /* a key's Vary record: names, comma-joined */
#define CW_LIMIT_VALIDATOR_BYTES    255  /* ETag, Last-Modified kept for revalidation */
/* The request part of an entry (core/entry.h): the request fields a refresh sends again, the
 * route's key_headers (at most CW_LIMIT_VARY_FIELDS), Cookie when cookies = "key", and the
 * Vary fields. One value comes from one request head, so a request head bounds it. */
#define CW_LIMIT_ENTRY_REQ_FIELDS      (2 * CW_LIMIT_VARY_FIELDS + 1)
#define CW_LIMIT_ENTRY_REQ_VALUE_BYTES CW_LIMIT_REQUEST_HEAD_BYTES
#define CW_LIMIT_ENTRY_REQ_BYTES       65536 /* the whole block of request field records */

/* Request framing, checked by core/reqscan on the raw bytes before libmicrohttpd parses them.
 * 100 fields and 32 KiB are nginx's and Apache's order of magnitude (large_client_header_buffers
 * 4x8k, LimitRequestFields 100) and MHD's default connection memory of 32 KiB. */
#define CW_LIMIT_REQUEST_FIELDS     100   /* field lines in one head (or trailer): 431 past it */
#define CW_LIMIT_REQUEST_HEAD_BYTES 32768 /* request line to final CRLF (or trailer): 431 */
#define CW_LIMIT_METHOD_BYTES       32    /* longer method token: 400 */
#define CW_LIMIT_EMPTY_LINES        4     /* CRLFs skipped before a request line (RFC 9112 §2.2) */
#define CW_LIMIT_CL_DIGITS          18    /* Content-Length digits: < 10^18 cannot overflow */
#define CW_LIMIT_CHUNK_SIZE_DIGITS  15    /* chunk-size hex digits: < 2^60 cannot overflow */
#define CW_LIMIT_CHUNK_EXT_BYTES    4096  /* chunk extensions on one chunk line: 400 past it */

/* Cache-Control: directives considered per header, and the largest delta-seconds (RFC
 * 9111 §1.2.2: a larger value is taken as 2^31). */
#define CW_LIMIT_CC_DIRECTIVES 64
#define CW_LIMIT_DELTA_SECONDS 2147483648LL
/* RFC 9213 targeted cache-control fields on the target list (cache.targeted_cache_control);
 * each costs a struct cw_cc in every struct cw_fresh_resp. */
#define CW_LIMIT_TARGETED_FIELDS 8

/* Config. */
#define CW_LIMIT_ORIGINS            64
#define CW_LIMIT_ORIGIN_SERVERS     16 /* servers of one origin's pool (shm slots per origin) */
#define CW_LIMIT_ROUTES             256
#define CW_LIMIT_WORKERS            256
#define CW_LIMIT_PURGE_ALLOW        64
#define CW_LIMIT_STRIP_HEADERS      32 /* routes[].strip_headers names */
#define CW_LIMIT_TRUST_FORWARDED    64 /* routes[].trust_forwarded ranges, as purge.allow */
#define CW_LIMIT_QUERY_KEEP         64 /* routes[].query names; DESIGN.md sets none, 64 is generous */
#define CW_LIMIT_REDIS_ADDRS        16            /* redis.sentinels, redis.nodes entries */
#define CW_LIMIT_REDIS_DB           1023          /* redis.db; Redis's `databases` default is 16 */
#define CW_LIMIT_REDIS_PREFIX_BYTES 64            /* redis.prefix */
#define CW_LIMIT_CONFIG_BYTES       (1024 * 1024) /* config file size; the example is 16 KiB */

/* Request bodies buffered for pass-through (PUT/POST): larger ones get 413. */
#define CW_LIMIT_REQUEST_BODY_BYTES (16u << 20)
/* Origin bodies buffered by a fetch when cache.max_object is smaller: a larger one fails (502)
 * until responses stream (issue 11). */
#define CW_LIMIT_FETCH_BODY_BYTES (64u << 20)

/* One message on a supervisor-child command channel (workers/chan.h), header included: a
 * purge from the control socket carries its URL, prefix or tag as text (at most
 * CW_LIMIT_URL_BYTES) and a small header, so the message has room for it. */
#define CW_LIMIT_CHAN_MSG_BYTES (CW_LIMIT_URL_BYTES + 256)

/* The control socket (workers/control.h): one request line (a purge URL fits with room to
 * spare), one reply (status of CW_LIMIT_WORKERS children at about 120 bytes each), clients
 * served at once (one more is accepted and closed at once), and how long a client may take
 * to send its request or read its reply before it is dropped. */
#define CW_LIMIT_CTL_LINE_BYTES  16384
#define CW_LIMIT_CTL_REPLY_BYTES 65536
#define CW_LIMIT_CTL_CLIENTS     16
#define CW_LIMIT_CTL_IDLE_MS     5000

/* Per worker: requests waiting for an origin fetch at once (counted and 503 past it). */
#define CW_LIMIT_PENDING_FETCHES 4096

/* Per process, the L2 Redis client (workers/l2.h). */
#define CW_LIMIT_L2_PENDING   4096 /* commands in flight; more get -EAGAIN, counted */
#define CW_LIMIT_L2_NODES     64   /* cluster nodes known (masters the slot map names) */
#define CW_LIMIT_L2_REDIRECTS 5    /* MOVED/ASK hops one command follows */
#define CW_LIMIT_L2_KEY_BYTES 512  /* a Redis key name: prefix, hash tag, kind, key or tag */

/* Per worker: requests waiting for another node's fill (workers/req_l2.c); past it a request
 * fetches alone, counted in cachewarp_l2_leases_total{outcome="failed"}. */
#define CW_LIMIT_L2_WAITERS 1024

#endif /* CW_LIMITS_H */
