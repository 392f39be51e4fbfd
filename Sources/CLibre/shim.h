// libre (Debian's libre-dev: the SIP, SDP and RTP library under baresip) for the NG-eCall
// transport. libre's headers expect the build's feature macros; its variadic functions
// (extra header fields as a format) are wrapped here with a fixed "%s", which Swift can call.
#ifndef TCU_CLIBRE_SHIM_H
#define TCU_CLIBRE_SHIM_H

#define HAVE_INTTYPES_H 1
#define HAVE_STDBOOL_H 1
#include <inttypes.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <re.h>
// re_dbg.h (dbg_init, dbg_handler_set) wants the including module's name and level.
#define DEBUG_MODULE "tcu"
#define DEBUG_LEVEL 4
#include <re_dbg.h>

/// An outgoing INVITE: the body and its Content-Type given, `headers` the extra header lines
/// (each ending in CRLF), one route (the outbound proxy) or none (NULL).
static inline int tcu_sipsess_connect(struct sipsess **sessp, struct sipsess_sock *sock,
        const char *to_uri, const char *from_uri, const char *cuser, const char *route,
        const char *ctype, struct mbuf *desc,
        sipsess_answer_h *answerh, sipsess_progr_h *progrh, sipsess_estab_h *estabh,
        sipsess_info_h *infoh, sipsess_close_h *closeh, void *arg, const char *headers)
{
    const char *routev[1] = { route };
    return sipsess_connect(sessp, sock, to_uri, NULL, from_uri, cuser, routev, route ? 1 : 0,
                           ctype, desc, NULL, NULL, false, NULL, answerh, progrh, estabh,
                           infoh, NULL, closeh, arg, "%s", headers);
}

/// Accepts an incoming INVITE with a provisional answer; `ctype` is the Content-Type of the
/// final answer's body (the unit's SDP; the simulated PSAP's multipart).
static inline int tcu_sipsess_accept(struct sipsess **sessp, struct sipsess_sock *sock,
        const struct sip_msg *msg, uint16_t scode, const char *reason, const char *cuser,
        const char *ctype, sipsess_offer_h *offerh, sipsess_answer_h *answerh,
        sipsess_estab_h *estabh, sipsess_info_h *infoh, sipsess_close_h *closeh, void *arg)
{
    return sipsess_accept(sessp, sock, msg, scode, reason, cuser, ctype, NULL,
                          NULL, NULL, false, offerh, answerh, estabh, infoh, NULL, closeh, arg,
                          "%s", "");
}

static inline int tcu_sipsess_answer(struct sipsess *sess, uint16_t scode, const char *reason,
                                     struct mbuf *desc)
{
    return sipsess_answer(sess, scode, reason, desc, "%s", "");
}

static inline int tcu_sipsess_reject(struct sipsess *sess, uint16_t scode, const char *reason)
{
    return sipsess_reject(sess, scode, reason, "%s", "");
}

static inline int tcu_sip_reply(struct sip *sip, const struct sip_msg *msg, uint16_t scode,
                                const char *reason)
{
    return sip_reply(sip, msg, scode, reason);
}

/// A request inside the session's dialog (INFO with the MSD): `headers` end in CRLF and hold
/// the Content-Type; the body is bytes.
static inline int tcu_sip_drequest(struct sip *sip, struct sip_dialog *dlg, const char *method,
        const char *headers, const uint8_t *body, size_t len, sip_resp_h *resph, void *arg)
{
    return sip_drequestf(NULL, sip, true, method, dlg, 0, NULL, NULL, resph, arg,
                         "%sContent-Length: %zu\r\n\r\n%b", headers, len, body, len);
}

/// An OPTIONS request to `uri` (through `route` when given), out of any dialog: whether the
/// IMS network (its outbound proxy) answers.
static inline int tcu_sip_options(struct sip *sip, const char *uri, const char *from_uri,
                                  const char *route, sip_resp_h *resph, void *arg)
{
    struct sip_dialog *dlg = NULL;
    const char *routev[1] = { route };
    int err = sip_dialog_alloc(&dlg, uri, uri, NULL, from_uri, routev, route ? 1 : 0);
    if (err)
        return err;
    err = sip_drequestf(NULL, sip, true, "OPTIONS", dlg, 0, NULL, NULL, resph, arg,
                        "Accept: application/sdp\r\nContent-Length: 0\r\n\r\n");
    mem_deref(dlg);
    return err;
}

static inline int tcu_sip_transp_add_udp(struct sip *sip, const struct sa *laddr)
{
    return sip_transp_add(sip, SIP_TRANSP_UDP, laddr);
}

/// A message's body: its bytes from the parser's position to the end.
static inline const uint8_t *tcu_msg_body(const struct sip_msg *msg, size_t *len)
{
    *len = mbuf_get_left(msg->mb);
    return mbuf_buf(msg->mb);
}

/// An mbuf holding a copy of `len` bytes, ready to be sent (position 0).
static inline struct mbuf *tcu_mbuf_from(const uint8_t *bytes, size_t len)
{
    struct mbuf *mb = mbuf_alloc(len ? len : 1);
    if (!mb)
        return NULL;
    if (len && mbuf_write_mem(mb, bytes, len)) {
        mem_deref(mb);
        return NULL;
    }
    mb->pos = 0;
    return mb;
}

/// One RTP packet of `len` payload bytes (G.711 silence), with the header space libre needs.
static inline int tcu_rtp_send(struct rtp_sock *rs, const struct sa *dst, bool marker,
                               uint8_t pt, uint32_t ts, const uint8_t *payload, size_t len)
{
    struct mbuf *mb = mbuf_alloc(RTP_HEADER_SIZE + len);
    if (!mb)
        return ENOMEM;
    mb->pos = mb->end = RTP_HEADER_SIZE;
    int err = mbuf_write_mem(mb, payload, len);
    mb->pos = RTP_HEADER_SIZE;
    if (!err)
        err = rtp_send(rs, dst, false, marker, pt, ts, mb);
    mem_deref(mb);
    return err;
}

/// An SDP session with one audio stream (G.711 µ-law and A-law) at `laddr`:`port`.
static inline int tcu_sdp_audio(struct sdp_session **sessp, struct sdp_media **mp,
                                const struct sa *laddr, uint16_t port)
{
    int err = sdp_session_alloc(sessp, laddr);
    if (err)
        return err;
    err = sdp_media_add(mp, *sessp, "audio", port, "RTP/AVP");
    if (!err)
        err = sdp_format_add(NULL, *mp, false, "0", "PCMU", 8000, 1, NULL, NULL, NULL, false, NULL);
    if (!err)
        err = sdp_format_add(NULL, *mp, false, "8", "PCMA", 8000, 1, NULL, NULL, NULL, false, NULL);
    return err;
}

static inline void *tcu_mem_deref(void *p) { return mem_deref(p); }

#endif
