/* spectrolite_proto.c: C99 reference encoder/decoder of the spectrolite serial protocol (see spectrolite_proto.h).
 *
 * The encoders stream each byte through a small writer that updates the CRC-32 and COBS-stuffs it straight into
 * the output buffer: a code byte is reserved at the start of every block and filled in when the block ends (at a
 * zero byte, after 254 data bytes, or at the end of the frame).  The encoding is canonical, byte for byte the
 * same as firmware_bridge.codec.cobs_encode: a block closed by 254 data bytes at the very end of the frame is not
 * followed by an empty block.
 */
#include "spectrolite_proto.h"

#include <string.h>

uint32_t slp_crc32(const uint8_t *data, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    for (i = 0; i < len; ++i) {
        int bit;
        crc ^= data[i];
        for (bit = 0; bit < 8; ++bit) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return crc ^ 0xFFFFFFFFu;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Streaming COBS + CRC writer                                                                                   */
/* ---------------------------------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;      /* next free byte of out */
    size_t code_pos; /* where the code byte of the open block goes */
    uint8_t code;    /* 1 + data bytes in the open block */
    int block_full;  /* the last block was closed as 0xFF and no new block is open yet */
    int overflow;
    uint32_t crc;    /* running CRC register (not yet final-xored) */
} slp_writer;

static void w_begin(slp_writer *w, uint8_t *out, size_t cap)
{
    w->out = out;
    w->cap = cap;
    w->pos = 1;
    w->code_pos = 0;
    w->code = 1;
    w->block_full = 0;
    w->overflow = (cap < 2u);
    w->crc = 0xFFFFFFFFu;
}

static void w_put_raw(slp_writer *w, uint8_t b)
{
    if (w->pos >= w->cap) {
        w->overflow = 1;
        return;
    }
    w->out[w->pos++] = b;
}

static void w_close_block(slp_writer *w)
{
    if (w->code_pos < w->cap) {
        w->out[w->code_pos] = w->code;
    } else {
        w->overflow = 1;
    }
}

/* Stuff one body byte (no CRC update). */
static void w_stuff(slp_writer *w, uint8_t b)
{
    if (w->block_full) { /* open the next block only now, so a full block at the very end stays canonical */
        w->code_pos = w->pos;
        w_put_raw(w, 0);
        w->code = 1;
        w->block_full = 0;
    }
    if (b == 0u) {
        w_close_block(w);
        w->code_pos = w->pos;
        w_put_raw(w, 0);
        w->code = 1;
    } else {
        w_put_raw(w, b);
        w->code = (uint8_t)(w->code + 1u);
        if (w->code == 0xFFu) {
            w_close_block(w);
            w->block_full = 1;
        }
    }
}

static void w_u8(slp_writer *w, uint8_t b)
{
    int bit;
    w->crc ^= b;
    for (bit = 0; bit < 8; ++bit) {
        w->crc = (w->crc >> 1) ^ (0xEDB88320u & (0u - (w->crc & 1u)));
    }
    w_stuff(w, b);
}

static void w_u16(slp_writer *w, uint16_t v)
{
    w_u8(w, (uint8_t)(v & 0xFFu));
    w_u8(w, (uint8_t)(v >> 8));
}

static void w_u32(slp_writer *w, uint32_t v)
{
    w_u16(w, (uint16_t)(v & 0xFFFFu));
    w_u16(w, (uint16_t)(v >> 16));
}

static void w_u64(slp_writer *w, uint64_t v)
{
    w_u32(w, (uint32_t)(v & 0xFFFFFFFFu));
    w_u32(w, (uint32_t)(v >> 32));
}

static void w_f32(slp_writer *w, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits); /* IEEE 754 binary32 assumed, as on every supported MCU */
    w_u32(w, bits);
}

static void w_f64(slp_writer *w, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    w_u64(w, bits);
}

static void w_bytes(slp_writer *w, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        w_u8(w, (uint8_t)s[i]);
    }
}

static void w_envelope(slp_writer *w, uint8_t msg_type, size_t payload_len)
{
    w_u8(w, (uint8_t)SLP_PROTOCOL_VERSION);
    w_u8(w, msg_type);
    w_u16(w, (uint16_t)payload_len);
}

/* Append the CRC (stuffed but not checksummed), close the last block, add the delimiter. */
static long w_finish(slp_writer *w)
{
    uint32_t crc = w->crc ^ 0xFFFFFFFFu;
    int i;
    for (i = 0; i < 4; ++i) {
        w_stuff(w, (uint8_t)((crc >> (8 * i)) & 0xFFu));
    }
    if (!w->block_full) {
        w_close_block(w);
    }
    w_put_raw(w, 0);
    if (w->overflow) {
        return SLP_ERR_BUFFER;
    }
    return (long)w->pos;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Encoders                                                                                                      */
/* ---------------------------------------------------------------------------------------------------------- */

static size_t pixel_bytes(uint8_t pixel_format)
{
    switch (pixel_format) {
    case SLP_PIXEL_UINT16:
        return 2u;
    case SLP_PIXEL_UINT32:
    case SLP_PIXEL_FLOAT32:
        return 4u;
    default:
        return 0u;
    }
}

long slp_encode_spectrum(uint8_t *out, size_t cap, uint8_t msg_type, const slp_spectrum_header *h,
                         const void *pixels)
{
    slp_writer w;
    size_t item = pixel_bytes(h->pixel_format);
    size_t payload_len;
    size_t i;
    if (msg_type != SLP_MSG_SPECTRUM && msg_type != SLP_MSG_DARK && msg_type != SLP_MSG_REFERENCE) {
        return SLP_ERR_RANGE;
    }
    if (item == 0u || h->pixel_count == 0u || h->averages == 0u || h->saturated_count > h->pixel_count) {
        return SLP_ERR_RANGE;
    }
    payload_len = SLP_SPECTRUM_HEADER_BYTES + item * h->pixel_count;
    if (payload_len > SLP_MAX_PAYLOAD_BYTES) {
        return SLP_ERR_RANGE;
    }
    w_begin(&w, out, cap);
    w_envelope(&w, msg_type, payload_len);
    w_u32(&w, h->seq);
    w_u64(&w, h->timestamp_us);
    w_u32(&w, h->integration_time_us);
    w_u16(&w, h->averages);
    w_u16(&w, h->pixel_count);
    w_u8(&w, h->pixel_format);
    w_u8(&w, h->flags);
    w_u16(&w, h->saturated_count);
    w_f32(&w, h->detector_temp_c);
    for (i = 0; i < h->pixel_count && !w.overflow; ++i) {
        if (h->pixel_format == SLP_PIXEL_UINT16) {
            w_u16(&w, ((const uint16_t *)pixels)[i]);
        } else if (h->pixel_format == SLP_PIXEL_UINT32) {
            w_u32(&w, ((const uint32_t *)pixels)[i]);
        } else {
            w_f32(&w, ((const float *)pixels)[i]);
        }
    }
    return w_finish(&w);
}

long slp_encode_line(uint8_t *out, size_t cap, const slp_line_header *h, const void *pixels)
{
    slp_writer w;
    uint32_t item = (uint32_t)pixel_bytes(h->pixel_format);
    uint32_t values;
    uint32_t payload_len;
    uint32_t i;
    if (item == 0u || h->pixel_count == 0u || h->averages == 0u || h->spectrum_count == 0u ||
        h->spectrum_count > SLP_MAX_LINE_SPECTRA ||
        SLP_SPECTRUM_HEADER_BYTES + item * h->pixel_count > SLP_MAX_PAYLOAD_BYTES) {
        return SLP_ERR_RANGE;
    }
    values = (uint32_t)h->spectrum_count * h->pixel_count;
    payload_len = SLP_LINE_HEADER_BYTES + item * values;
    if (payload_len > SLP_MAX_LINE_PAYLOAD_BYTES) {
        return SLP_ERR_RANGE;
    }
    w_begin(&w, out, cap);
    w_envelope(&w, SLP_MSG_LINE,
               payload_len > SLP_LINE_PAYLOAD_LEN_SATURATED ? SLP_LINE_PAYLOAD_LEN_SATURATED : payload_len);
    w_u32(&w, h->seq);
    w_u64(&w, h->timestamp_us);
    w_u32(&w, h->integration_time_us);
    w_u16(&w, h->averages);
    w_u16(&w, h->pixel_count);
    w_u8(&w, h->pixel_format);
    w_u8(&w, h->flags);
    w_u16(&w, h->spectrum_count);
    w_f32(&w, h->detector_temp_c);
    for (i = 0; i < values && !w.overflow; ++i) {
        if (h->pixel_format == SLP_PIXEL_UINT16) {
            w_u16(&w, ((const uint16_t *)pixels)[i]);
        } else if (h->pixel_format == SLP_PIXEL_UINT32) {
            w_u32(&w, ((const uint32_t *)pixels)[i]);
        } else {
            w_f32(&w, ((const float *)pixels)[i]);
        }
    }
    return w_finish(&w);
}

long slp_encode_hello(uint8_t *out, size_t cap, uint32_t nonce)
{
    slp_writer w;
    w_begin(&w, out, cap);
    w_envelope(&w, SLP_MSG_HELLO, 4u);
    w_u32(&w, nonce);
    return w_finish(&w);
}

long slp_encode_status(uint8_t *out, size_t cap, const slp_status *s)
{
    slp_writer w;
    uint8_t i;
    size_t payload_len;
    if (s->n_coeffs < 1u || s->n_coeffs > SLP_MAX_WAVELENGTH_COEFFS || s->averages == 0u ||
        s->device_id_len > SLP_MAX_DEVICE_ID_BYTES || s->firmware_version_len > SLP_MAX_FIRMWARE_VERSION_BYTES ||
        s->signal > SLP_SIGNAL_REFLECTANCE || s->axis_unit > SLP_AXIS_CM_1) {
        return SLP_ERR_RANGE;
    }
    payload_len = SLP_STATUS_HEADER_BYTES + 8u * s->n_coeffs + s->device_id_len + s->firmware_version_len +
                  SLP_STATUS_TRAILER_BYTES + (s->axis_unit != SLP_AXIS_NM ? SLP_STATUS_AXIS_UNIT_BYTES : 0u);
    w_begin(&w, out, cap);
    w_envelope(&w, SLP_MSG_STATUS, payload_len);
    w_u32(&w, s->nonce);
    w_u32(&w, s->integration_time_us);
    w_u32(&w, s->uptime_s);
    w_u16(&w, s->pixel_count);
    w_u16(&w, s->averages);
    w_f32(&w, s->detector_temp_c);
    w_u8(&w, s->n_coeffs);
    w_u8(&w, s->device_id_len);
    w_u8(&w, s->firmware_version_len);
    for (i = 0; i < s->n_coeffs; ++i) {
        w_f64(&w, s->wavelength_coeffs_nm[i]);
    }
    w_bytes(&w, s->device_id, s->device_id_len);
    w_bytes(&w, s->firmware_version, s->firmware_version_len);
    w_u8(&w, s->signal); /* trailer: hosts that predate it read a STATUS without it as COUNTS, boot unknown */
    w_u32(&w, s->boot_id);
    if (s->axis_unit != SLP_AXIS_NM) { /* nm is sent as no byte: an nm STATUS keeps its older bytes */
        w_u8(&w, s->axis_unit);
    }
    return w_finish(&w);
}

long slp_encode_command(uint8_t *out, size_t cap, uint32_t command_id, uint8_t code, uint32_t value)
{
    slp_writer w;
    w_begin(&w, out, cap);
    w_envelope(&w, SLP_MSG_COMMAND, 9u);
    w_u32(&w, command_id);
    w_u8(&w, code);
    w_u32(&w, value);
    return w_finish(&w);
}

long slp_encode_ack(uint8_t *out, size_t cap, uint32_t command_id, uint8_t code)
{
    slp_writer w;
    w_begin(&w, out, cap);
    w_envelope(&w, SLP_MSG_ACK, 5u);
    w_u32(&w, command_id);
    w_u8(&w, code);
    return w_finish(&w);
}

long slp_encode_nack(uint8_t *out, size_t cap, uint32_t command_id, uint8_t code, uint8_t reason,
                     const char *detail, uint8_t detail_len)
{
    slp_writer w;
    if (detail_len > SLP_MAX_NACK_DETAIL_BYTES) {
        return SLP_ERR_RANGE;
    }
    w_begin(&w, out, cap);
    w_envelope(&w, SLP_MSG_NACK, 7u + (size_t)detail_len);
    w_u32(&w, command_id);
    w_u8(&w, code);
    w_u8(&w, reason);
    w_u8(&w, detail_len);
    w_bytes(&w, detail, detail_len);
    return w_finish(&w);
}

long slp_encode_annotation(uint8_t *out, size_t cap, uint32_t seq, const double *values, uint8_t n_values)
{
    slp_writer w;
    uint8_t i;
    if (n_values > SLP_MAX_ANNOTATION_VALUES) {
        return SLP_ERR_RANGE;
    }
    w_begin(&w, out, cap);
    w_envelope(&w, SLP_MSG_ANNOTATION, 5u + 8u * (size_t)n_values);
    w_u32(&w, seq);
    w_u8(&w, n_values);
    for (i = 0; i < n_values; ++i) {
        w_f64(&w, values[i]);
    }
    return w_finish(&w);
}

long slp_encode_sample_tag(uint8_t *out, size_t cap, uint16_t frames, const char *sample_id, uint8_t id_len)
{
    slp_writer w;
    uint8_t i;
    if (frames < 1u || frames > SLP_MAX_SAMPLE_TAG_FRAMES || id_len < 1u || id_len > SLP_MAX_SAMPLE_ID_BYTES
        || sample_id[0] == ' ' || sample_id[id_len - 1u] == ' ') {
        return SLP_ERR_RANGE;
    }
    for (i = 0; i < id_len; ++i) {
        if ((unsigned char)sample_id[i] < 0x20u || (unsigned char)sample_id[i] > 0x7Eu) {
            return SLP_ERR_RANGE;
        }
    }
    w_begin(&w, out, cap);
    w_envelope(&w, SLP_MSG_SAMPLE_TAG, SLP_SAMPLE_TAG_HEADER_BYTES + (size_t)id_len);
    w_u16(&w, frames);
    w_u8(&w, id_len);
    w_bytes(&w, sample_id, id_len);
    return w_finish(&w);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Decoder                                                                                                       */
/* ---------------------------------------------------------------------------------------------------------- */

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

long slp_decode(const uint8_t *in, size_t len, uint8_t *body, size_t cap)
{
    size_t i = 0;
    size_t n = 0;
    uint8_t previous = 0;
    if (len > 0u && in[len - 1u] == 0u) {
        --len; /* the delimiter */
    }
    if (len == 0u) {
        return SLP_ERR_SHORT;
    }
    if (len > SLP_MAX_ENCODED_BYTES) {
        return SLP_ERR_OVERSIZE;
    }
    while (i < len) {
        uint8_t code = in[i];
        size_t k;
        if (code == 0u || i + code > len) {
            return SLP_ERR_COBS;
        }
        for (k = 1; k < code; ++k) {
            if (in[i + k] == 0u) {
                return SLP_ERR_COBS;
            }
            if (n >= SLP_MAX_FRAME_BYTES) {
                return SLP_ERR_OVERSIZE;
            }
            if (n >= cap) {
                return SLP_ERR_BUFFER;
            }
            body[n++] = in[i + k];
        }
        i += code;
        if (i < len) {
            if (code != 0xFFu) {
                if (n >= SLP_MAX_FRAME_BYTES) {
                    return SLP_ERR_OVERSIZE;
                }
                if (n >= cap) {
                    return SLP_ERR_BUFFER;
                }
                body[n++] = 0u;
            }
        } else if (code == 1u && previous == 0xFFu) {
            return SLP_ERR_COBS; /* non-canonical: empty block after a full block at the end */
        }
        previous = code;
    }
    if (n < SLP_ENVELOPE_BYTES + SLP_CRC_BYTES) {
        return SLP_ERR_SHORT;
    }
    if (slp_crc32(body, n - SLP_CRC_BYTES) != get_u32(body + n - SLP_CRC_BYTES)) {
        return SLP_ERR_CRC;
    }
    if (body[0] != SLP_PROTOCOL_VERSION) {
        return SLP_ERR_VERSION;
    }
    if (((size_t)body[2] | ((size_t)body[3] << 8)) != n - SLP_ENVELOPE_BYTES - SLP_CRC_BYTES) {
        return SLP_ERR_LENGTH;
    }
    return (long)n;
}

void slp_rx_init(slp_rx *rx, uint8_t *buf, size_t cap)
{
    rx->buf = buf;
    rx->cap = cap;
    rx->len = 0;
    rx->dropping = 0;
}

long slp_rx_push(slp_rx *rx, uint8_t byte)
{
    if (byte == 0u) {
        size_t n = rx->len;
        int dropped = rx->dropping;
        rx->len = 0;
        rx->dropping = 0;
        return dropped ? (long)SLP_ERR_OVERSIZE : (long)n;
    }
    if (rx->dropping) {
        return 0;
    }
    if (rx->len >= rx->cap) {
        rx->dropping = 1;
        rx->len = 0;
        return 0;
    }
    rx->buf[rx->len++] = byte;
    return 0;
}

int slp_parse_hello(const uint8_t *body, size_t len, uint32_t *nonce)
{
    if (len < 8u || body[1] != SLP_MSG_HELLO) {
        return SLP_ERR_TYPE;
    }
    if (len != 8u + 4u) {
        return SLP_ERR_LENGTH;
    }
    *nonce = get_u32(body + 4);
    return SLP_OK;
}

int slp_parse_command(const uint8_t *body, size_t len, uint32_t *command_id, uint8_t *code, uint32_t *value)
{
    if (len < 8u || body[1] != SLP_MSG_COMMAND) {
        return SLP_ERR_TYPE;
    }
    if (len != 8u + 9u) {
        return SLP_ERR_LENGTH;
    }
    *command_id = get_u32(body + 4);
    *code = body[8];
    *value = get_u32(body + 9);
    return SLP_OK;
}
