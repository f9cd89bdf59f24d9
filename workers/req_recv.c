/* workers/req_recv.c - the request as understood: its target read and normalised once, the
 * route's trust in the client's address, its Cache-Control, and the forwarding rules that
 * say which of its fields the origin sees and with what value (so the key is made of exactly
 * what the origin sees). Leaves of the request state machine (workers/req.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/cc.h"
#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/path.h"
#include "workers/req_int.h"
#include "workers/wire.h"

/* Joins the lines of one request field with ", " (RFC 9110 §5.3) into j->buf, or only
 * counts them when j->buf is NULL. */
struct req_join {
    const char *name;
    char *buf;
    size_t len;
    unsigned lines;
};

/* The fields the forwarding rules name. CacheWarp sets Host, X-Forwarded-For (the client's
 * list plus its address) and the OURS fields itself; DROP fields ask an origin framework to
 * act on something else than the request line. A route that trusts the client's address,
 * or keys on the field, passes OURS and DROP fields as sent. */
enum req_fwd_kind {
    WKIND_OTHER = 0,
    WKIND_HOST,
    WKIND_XFF,
    WKIND_OURS,
    WKIND_DROP,
};

static enum MHD_Result req_join_line(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct req_join *j = cls;
    size_t n = value ? strlen(value) : 0;

    (void)kind;
    if (strcasecmp(key, j->name) != 0) return MHD_YES;
    if (j->buf == NULL) {
        j->lines++;
        return MHD_YES;
    }
    /* core/reqscan refuses a head past CW_LIMIT_REQUEST_HEAD_BYTES (431), so this never
     * truncates. */
    if (j->lines++ > 0 && j->len + 2 < CW_LIMIT_REQUEST_HEAD_BYTES) {
        memcpy(j->buf + j->len, ", ", 2);
        j->len += 2;
    }
    if (n > CW_LIMIT_REQUEST_HEAD_BYTES - 1 - j->len) n = CW_LIMIT_REQUEST_HEAD_BYTES - 1 - j->len;
    memcpy(j->buf + j->len, value ? value : "", n);
    j->len += n;
    j->buf[j->len] = '\0';
    return MHD_YES;
}

/* A request field's value as the client sent it: its one line, or all its lines joined, as
 * an origin that combines them sees it. A joined value is valid until the next call for
 * this request. */
static const char *req_header_sent(struct worker_req *r, const char *name)
{
    const char *first = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
    struct req_join j = {.name = name};

    if (first == NULL) return NULL;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, req_join_line, &j);
    if (j.lines <= 1) return first;
    if (r->join_buf == NULL) r->join_buf = malloc(CW_LIMIT_REQUEST_HEAD_BYTES);
    if (r->join_buf == NULL) return first;
    j = (struct req_join){.name = name, .buf = r->join_buf};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, req_join_line, &j);
    return r->join_buf;
}

/* By length first: this runs for every field a request is asked about. */
static enum req_fwd_kind req_fwd_kind_of(struct cw_str n)
{
    switch (n.len) {
    case 4:
        return cw_str_eq_ci(n, CW_STR_LIT("Host")) ? WKIND_HOST : WKIND_OTHER;
    case 9:
        return cw_str_eq_ci(n, CW_STR_LIT("Forwarded")) ? WKIND_OURS : WKIND_OTHER;
    case 13:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Rewrite-URL")) ? WKIND_DROP : WKIND_OTHER;
    case 14:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Original-URL")) ? WKIND_DROP : WKIND_OTHER;
    case 15:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Forwarded-For")) ? WKIND_XFF : WKIND_OTHER;
    case 16:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Forwarded-Host")) ||
                       cw_str_eq_ci(n, CW_STR_LIT("X-Forwarded-Port"))
                   ? WKIND_OURS
                   : WKIND_OTHER;
    case 17:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Forwarded-Proto")) ? WKIND_OURS : WKIND_OTHER;
    case 22:
        return cw_str_eq_ci(n, CW_STR_LIT("X-HTTP-Method-Override")) ? WKIND_DROP : WKIND_OTHER;
    default:
        return WKIND_OTHER;
    }
}

static bool req_route_keys(const struct cw_config_route *rt, struct cw_str name)
{
    for (size_t i = 0; rt != NULL && i < rt->key_headers_count; i++)
        if (cw_str_eq_ci(name, cw_str_cstr(rt->key_headers[i]))) return true;
    return false;
}

enum req_fwd req_fwd_field(struct worker_req *r, struct cw_str name)
{
    const struct cw_config_route *rt = r->rt;
    enum req_fwd_kind kind = req_fwd_kind_of(name);

    /* Host is never dropped (a Connection naming it would key one host's answer under
     * another); X-Forwarded-For is the client's list with the client's address appended. */
    if (kind == WKIND_HOST || kind == WKIND_XFF) return WFWD_OURS;
    /* RFC 9110 §7.6.1: hop-by-hop fields and those the Connection field names. */
    if (cw_cc_is_hop_by_hop(name)) return WFWD_DROP;
    if (r->conn_hdr.len > 0 && cw_cc_list_has(r->conn_hdr, name)) return WFWD_DROP;
    for (size_t i = 0; rt != NULL && i < rt->strip_headers_count; i++)
        if (cw_str_eq_ci(name, cw_str_cstr(rt->strip_headers[i]))) return WFWD_DROP;
    if (kind == WKIND_OTHER) return WFWD_PASS;
    if (r->trusted || req_route_keys(rt, name)) return WFWD_PASS;
    return kind == WKIND_OURS ? WFWD_OURS : WFWD_DROP;
}

/* The client's address, as X-Forwarded-For and Forwarded give it: formatted once. */
static const char *req_fwd_addr(struct worker_req *r)
{
    if (r->fwd_addr[0] == '\0') req_client_addr(r->conn, r->fwd_addr, sizeof(r->fwd_addr));
    return r->fwd_addr;
}

/* X-Forwarded-For for the origin: the client's list (when it sent one) and its address. */
static const char *req_fwd_xff(struct worker_req *r)
{
    const char *sent, *addr;
    size_t sent_len, addr_len;
    char *p;

    if (r->xff != NULL) return r->xff;
    addr = req_fwd_addr(r);
    addr_len = strlen(addr);
    sent = req_header_sent(r, "X-Forwarded-For");
    sent_len = sent ? strlen(sent) : 0;
    r->xff = p = malloc(sent_len + 2 + addr_len + 1);
    if (r->xff == NULL) return NULL;
    if (sent != NULL) {
        memcpy(p, sent, sent_len);
        memcpy(p + sent_len, ", ", 2);
        p += sent_len + 2;
    }
    memcpy(p, addr, addr_len + 1);
    return r->xff;
}

/* Forwarded (RFC 7239) for the origin: one element, ours. */
static const char *req_fwd_forwarded(struct worker_req *r)
{
    const char *addr;
    bool is_v6;
    char *p;

    if (r->forwarded != NULL) return r->forwarded;
    addr = req_fwd_addr(r);
    is_v6 = strchr(addr, ':') != NULL;
    /* 27 bytes of punctuation and names at most, and the NUL. */
    r->forwarded = p = malloc(strlen(addr) + strlen(r->host) + 32);
    if (r->forwarded == NULL) return NULL;
    /* RFC 7239 §6: an IPv6 node is quoted and bracketed; host is quoted for its port. */
    p = stpcpy(p, is_v6 ? "for=\"[" : "for=");
    p = stpcpy(p, addr);
    p = stpcpy(p, is_v6 ? "]\";host=\"" : ";host=\"");
    p = stpcpy(p, r->host);
    stpcpy(p, "\";proto=http");
    return r->forwarded;
}

/* The value CacheWarp sends for a WFWD_OURS field: one of Host, X-Forwarded-For (the kinds
 * of their own), Forwarded and X-Forwarded-Host, -Port and -Proto (WKIND_OURS, told apart by
 * length and, for the two of 16 bytes, the letter after "X-Forwarded-"). */
static const char *req_fwd_value(struct worker_req *r, struct cw_str name)
{
    switch (req_fwd_kind_of(name)) {
    case WKIND_HOST:
        return r->host;
    case WKIND_XFF:
        return req_fwd_xff(r);
    case WKIND_OURS:
        if (name.len == 9) return req_fwd_forwarded(r);
        if (name.len == 17) return "http";
        return (name.p[12] | 0x20) == 'h' ? r->host : r->w->listen_port;
    default:
        return NULL;
    }
}

const char *req_fwd_ours(void *cls, const char *name)
{
    return req_fwd_value(cls, cw_str_cstr(name));
}

const char *req_header(void *cls, const char *name)
{
    struct worker_req *r = cls;
    struct cw_str n = cw_str_cstr(name);

    switch (req_fwd_field(r, n)) {
    case WFWD_DROP:
        return NULL;
    case WFWD_OURS:
        return req_fwd_value(r, n);
    case WFWD_PASS:
        break;
    }
    return req_header_sent(r, name);
}

/* True when the route trusts the client's address with forwarding fields. */
bool req_recv_trusted(struct worker_req *r)
{
    const union MHD_ConnectionInfo *ci;

    if (r->rt->trust_forwarded_count == 0) return false;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL) return false;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ci->client_addr;
        return cw_config_route_trusts(r->rt, AF_INET, (const uint8_t *)&in->sin_addr);
    }
    if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ci->client_addr;
        return cw_config_route_trusts(r->rt, AF_INET6, in6->sin6_addr.s6_addr);
    }
    return false;
}

/* Reads the request target (RFC 9112 §3.2): origin-form, or absolute-form whose authority
 * replaces Host (§3.2.2). The path is normalised once (RFC 3986 §6.2.2, §5.2.4), and that is
 * what routes, keys and goes to the origin. 0, or the status to refuse the request with. */
unsigned req_recv_target(struct worker_req *r, const char **why)
{
    struct cw_str target = cw_str_make(r->raw_uri, r->raw_uri_len), host, path, query;
    struct cw_str scheme, authority;
    const char *qm;
    size_t len = 0;
    char *out;

    *why = "bad request target";
    if (r->raw_uri_len > CW_LIMIT_URL_BYTES) return 414;
    if (target.len > 0 && target.p[0] == '/') {
        host = cw_str_cstr(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host"));
    } else if (cw_path_split_absolute(target, &scheme, &authority, &target) == 0) {
        host = authority;
    } else {
        *why = "origin-form or absolute-form request target required";
        return 400;
    }
    if (host.len > CW_LIMIT_HOST_BYTES) {
        *why = "Host too long";
        return 400;
    }
    for (size_t i = 0; i < host.len; i++)
        r->host[i] = (host.p[i] >= 'A' && host.p[i] <= 'Z') ? (char)(host.p[i] + 32) : host.p[i];
    r->host[host.len] = '\0';
    qm = target.len > 0 ? memchr(target.p, '?', target.len) : NULL;
    path = cw_str_make(target.p, qm ? (size_t)(qm - target.p) : target.len);
    query = qm ? cw_str_make(qm, target.len - path.len) : cw_str_make(NULL, 0);
    /* Most origin-form targets are normal already: they stay in raw_uri, with no copy. */
    if (target.p == r->raw_uri && cw_path_is_normal(path.p, path.len)) return 0;
    /* The normal form is never longer than the path, but for the "/" of an empty one. */
    out = malloc(path.len + query.len + 2);
    if (out == NULL) {
        *why = "out of memory";
        return 503;
    }
    if (path.len == 0) {
        out[0] = '/';
        len = 1;
    } else if (cw_path_normalize(path.p, path.len, out, path.len + 1, &len) < 0) {
        free(out);
        *why = "bad path: bad escape, or dot segments above the root";
        return 400;
    }
    if (query.len > 0) memcpy(out + len, query.p, query.len);
    len += query.len;
    out[len] = '\0';
    r->uri = out;
    r->uri_len = len;
    return 0;
}

/* Reads the request's Cache-Control and Pragma (RFC 9111 §5.2.1, §5.4). */
void req_recv_directives(struct worker_req *r)
{
    const char *cc = req_header(r, "Cache-Control");

    cw_cc_init(&r->req_cc);
    if (cc != NULL) {
        r->has_req_cc = true;
        cw_cc_parse(&r->req_cc, cc, strlen(cc));
        return;
    }
    const char *pragma = req_header(r, "Pragma");
    r->pragma_no_cache =
        pragma != NULL && cw_cc_list_has(cw_str_cstr(pragma), CW_STR_LIT("no-cache"));
}

void req_client_addr(struct MHD_Connection *conn, char *buf, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    if (size < sizeof("unknown")) return;
    memcpy(buf, "unknown", sizeof("unknown"));
    if (ci == NULL || ci->client_addr == NULL) return;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ci->client_addr;
        inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)size);
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ci->client_addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)size);
    }
}

void req_recv_head(struct worker_req *r)
{
    const struct cw_config *cfg = r->w->cfg;

    r->refuse_status = cw_wire_check(cw_wire_of(r->conn), r->wire_n, &r->refuse_reason);
    if (r->refuse_status != 0) return;
    /* Every Connection line counts (RFC 9110 §7.6.1): a joined value is kept apart from
     * join_buf, which later lookups reuse. */
    const char *conn = req_header_sent(r, "Connection");
    if (conn != NULL && conn == r->join_buf) conn = r->conn_joined = strdup(conn);
    r->conn_hdr = cw_str_cstr(conn);
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    bool te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
    if (cl == NULL && !te) return;
    (void)MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                    (unsigned)((cfg->client_body_timeout_ms + 999) / 1000));
    /* A body of a method the cache passes through streams to the origin as it arrives (GET,
     * HEAD and PURGE bodies are read whole, bounded: they are not forwarded as uploads). */
    r->stream_body = (te || strcmp(cl, "0") != 0) && strcmp(r->method, "GET") != 0 &&
                     strcmp(r->method, "HEAD") != 0 && strcmp(r->method, "PURGE") != 0;
}

/* Logs a refused request under the line the client sent, not the stand-in's: method, target
 * and version split at the first and last space, as far as the line came. */
static void req_recv_log_refused(struct worker_req *r)
{
    struct cw_str line = cw_wire_refused_line(cw_wire_of(r->conn));
    char *sp1, *sp2;

    if (line.len == 0 || (r->refused_line = malloc(line.len + 1)) == NULL) return;
    memcpy(r->refused_line, line.p, line.len);
    r->refused_line[line.len] = '\0';
    sp1 = memchr(r->refused_line, ' ', line.len);
    sp2 = strrchr(r->refused_line, ' ');
    if (sp1 == NULL) {
        r->method = "-";
        r->version = "-";
        r->log_uri = cw_str_make(r->refused_line, line.len);
        return;
    }
    *sp1 = '\0';
    r->method = r->refused_line;
    if (sp2 == sp1) {
        r->version = "-";
        r->log_uri = cw_str_cstr(sp1 + 1);
        return;
    }
    *sp2 = '\0';
    r->version = sp2 + 1;
    r->log_uri = cw_str_cstr(sp1 + 1);
}

void req_recv_refused(struct worker_req *r)
{
    unsigned s = r->refuse_status;
    const char *body = s == 408   ? "request timeout\n"
                       : s == 501 ? "transfer coding not implemented\n"
                                  : "bad request\n";

    req_recv_log_refused(r);
    if (s == 500) {
        cw_err_rl("worker %d: a request head reached the handler without the wire reader: "
                  "refused",
                  r->w->index);
    } else {
        char addr[INET6_ADDRSTRLEN];
        req_client_addr(r->conn, addr, sizeof(addr));
        cw_info_rl("worker %d: %u to %s: %s", r->w->index, s, addr, r->refuse_reason);
    }
    r->synth.status = s;
    r->synth.body = body;
    r->synth.detail = s == 408 ? "header-timeout" : "bad-request";
    r->synth.close = true;
}

bool req_recv_has_conditions(struct worker_req *r)
{
    static const char *const names[] = {"If-None-Match", "If-Modified-Since", "If-Match",
                                        "If-Unmodified-Since", "Range"};
    for (size_t i = 0; i < CW_ARRAY_LEN(names); i++)
        if (req_header(r, names[i]) != NULL) return true;
    return false;
}
