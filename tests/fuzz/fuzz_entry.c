/* tests/fuzz/fuzz_entry.c - libFuzzer harness for cw_entry_decode().
 *
 * Build: clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *        tests/fuzz/fuzz_entry.c core/entry.c core/common.c -o fuzz_entry
 * Any input must decode or be -EBADMSG; a decoded view must lie inside the input, its
 * headers and request fields must iterate to exactly their block lengths, and re-encoding it
 * must give the same bytes. */
#include "core/entry.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cw_entry_header hdrs[CW_LIMIT_HEADER_COUNT];
    static struct cw_entry_header fields[CW_LIMIT_ENTRY_REQ_FIELDS];
    struct cw_entry_req req;
    struct cw_entry_view v;
    struct cw_str name;
    struct cw_str value;
    struct cw_str found;
    size_t off = 0;
    size_t n = 0;
    size_t len;
    char *buf;
    int rc;

    rc = cw_entry_decode(data, size, &v);
    if (rc == -EBADMSG) return 0;
    if (rc != 0) abort();
    if (sizeof(v.h) + v.key.len + v.h.req_len + v.headers_len + v.body.len != size) abort();
    if (v.req_host.len + v.req_target.len + v.req_fields_len != v.h.req_len) abort();

    req = (struct cw_entry_req){v.req_host, v.req_target, fields, 0};
    while (cw_entry_req_next(&v, &off, &name, &value)) {
        if (req.n >= CW_ARRAY_LEN(fields)) abort();
        fields[req.n].name = name;
        fields[req.n].value = value;
        req.n++;
    }
    if (off != v.req_fields_len || req.n != v.h.req_count) abort();
    off = 0;

    while (cw_entry_header_next(&v, &off, &name, &value)) {
        if (n >= CW_ARRAY_LEN(hdrs)) abort();
        hdrs[n].name = name;
        hdrs[n].value = value;
        n++;
        if (!cw_entry_header_find(&v, name, &found)) abort();
    }
    if (off != v.headers_len || n != v.h.header_count) abort();

    /* Round trip: what decodes, encodes back to the same bytes. The header has no reserved
     * bytes or padding any more (every field of struct cw_entry_hdr is copied by encode), so
     * all of it must match too. */
    if (cw_entry_size(v.key, &req, hdrs, n, v.body.len, &len) != 0 || len != size) abort();
    buf = malloc(len);
    if (buf == NULL) return 0;
    if (cw_entry_encode(&v.h, v.key, &req, hdrs, n, v.body, buf, len) != 0) abort();
    if (memcmp(buf, data, len) != 0) abort();
    free(buf);
    return 0;
}
