/* core/common.c - helpers declared in core/common.h. */
#include "core/common.h"

#include <stdarg.h>
#include <stdio.h>

static inline unsigned char common_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Field names are compared often and are mostly spelled alike: equal 8-byte words are
 * skipped whole, and only bytes that differ are lowercased. */
bool cw_bytes_eq_ci(const char *a, const char *b, size_t n)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) break;
    }
    for (; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x != y && common_lower(x) != common_lower(y)) return false;
    }
    return true;
}

void cw_err_set(struct cw_err *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) return;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}
