/* core/common.c - helpers declared in core/common.h. */
#include "core/common.h"

#include <stdarg.h>
#include <stdio.h>

static inline unsigned char common_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

bool cw_str_eq_ci(struct cw_str a, struct cw_str b)
{
    if (a.len != b.len) return false;
    for (size_t i = 0; i < a.len; i++) {
        if (common_lower((unsigned char)a.p[i]) != common_lower((unsigned char)b.p[i]))
            return false;
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
