/* slp_vectors.c: test-vector driver of the C reference codec; reads commands on stdin, one per line, and
 * prints one result line each, so tests can compare it byte for byte with firmware_bridge/codec/.
 *
 *   E <msg_type> <fields...>   encode; prints the wire frame in hex (delimiter included) or "ERR <code>"
 *   C <cap> <msg_type> <fields...>   encode into a buffer of only cap bytes; prints as E, or "OVERRUN" when
 *                              the encoder wrote past cap (the rest of the buffer is checked against a canary)
 *   R <cap> <hex>              push a byte stream through slp_rx with a cap-byte buffer, decoding each frame;
 *                              prints "OK:<body hex>" or "ERR:<code>" per frame, space-separated ("-" if none)
 *   D <hex>                    decode a wire frame; prints "OK <body hex>" (plus "HELLO <nonce>" or
 *                              "COMMAND <id> <code> <value>" for those types) or "ERR <code>"
 *
 * A hex blob holds at most VECTOR_MAX_BYTES + 16 bytes (so an R stream is limited to that); longer lines give
 * one "ERR -100".
 *
 * Fields of E (integers in decimal; floats as the hex of their IEEE bits; byte strings in hex, "-" if empty):
 *   16|17|18 seq timestamp_us integration_time_us averages pixel_count pixel_format flags saturated_count
 *            temp_f32bits pixels_le_hex
 *   19 seq timestamp_us integration_time_us averages pixel_count pixel_format flags spectrum_count temp_f32bits
 *      pixels_le_hex   (LINE; blobs of up to VECTOR_MAX_BYTES, so a LINE past the 65,535-byte payload_len fits)
 *   1  nonce
 *   2  nonce integration_time_us uptime_s pixel_count averages temp_f32bits n_coeffs coeff_f64bits...
 *      device_id_hex firmware_version_hex signal boot_id axis_unit
 *   32 command_id code value          33 command_id code
 *   34 command_id code reason detail_hex
 *   48 seq n_values value_f64bits...
 *
 * Build: gcc -std=c99 -Wall -Wextra -Werror -pedantic spectrolite_proto.c slp_vectors.c -o slp_vectors
 */
#include "spectrolite_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VECTOR_MAX_BYTES 100000u /* largest pixel blob: a LINE past the saturated payload_len, not the 4 MiB limit */
#define LINE_BYTES (4u * VECTOR_MAX_BYTES) /* hex of the largest blob, with room for the fields */
#define MAX_BLOB (VECTOR_MAX_BYTES + 16u)

static char line[LINE_BYTES];
static uint8_t blob[MAX_BLOB];
static uint8_t wire[SLP_WIRE_BYTES(VECTOR_MAX_BYTES)];
static uint8_t body[SLP_MAX_FRAME_BYTES];
static uint16_t px16[MAX_BLOB / 2u];
static uint32_t px32[MAX_BLOB / 4u];
static float pxf32[MAX_BLOB / 4u];
static char text_a[256];
static char text_b[256];
static double doubles[SLP_MAX_ANNOTATION_VALUES + 1u];

static int parse_ok;
static size_t wire_cap = sizeof wire;
#define CANARY 0xA5u

static unsigned long long next_uint(int base)
{
    char *tok = strtok(NULL, " \t\r\n");
    char *end = NULL;
    unsigned long long v;
    if (tok == NULL) {
        parse_ok = 0;
        return 0;
    }
    v = strtoull(tok, &end, base);
    if (end == tok || *end != '\0') {
        parse_ok = 0;
    }
    return v;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Next token as hex bytes into dst; returns the byte count ("-" is empty), or -1. */
static long next_hex(uint8_t *dst, size_t cap)
{
    char *tok = strtok(NULL, " \t\r\n");
    size_t n;
    size_t i;
    if (tok == NULL) {
        return -1;
    }
    if (strcmp(tok, "-") == 0) {
        return 0;
    }
    n = strlen(tok);
    if (n % 2u != 0u || n / 2u > cap) {
        return -1;
    }
    for (i = 0; i < n / 2u; ++i) {
        int hi = hexval(tok[2u * i]);
        int lo = hexval(tok[2u * i + 1u]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        dst[i] = (uint8_t)(hi * 16 + lo);
    }
    return (long)(n / 2u);
}

static float f32_of_bits(unsigned long long bits)
{
    uint32_t b = (uint32_t)bits;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static double f64_of_bits(unsigned long long bits)
{
    uint64_t b = (uint64_t)bits;
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void print_hex(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        printf("%02x", p[i]);
    }
}

/* pixels arrive little-endian; hand them to the encoder as native arrays, as firmware would */
static const void *native_pixels(uint8_t pixel_format, size_t n_bytes)
{
    size_t i;
    if (pixel_format == SLP_PIXEL_UINT16) {
        for (i = 0; i < n_bytes / 2u; ++i) {
            px16[i] = (uint16_t)(blob[2u * i] | (blob[2u * i + 1u] << 8));
        }
        return px16;
    }
    if (pixel_format == SLP_PIXEL_UINT32) {
        for (i = 0; i < n_bytes / 4u; ++i) {
            px32[i] = le32(blob + 4u * i);
        }
        return px32;
    }
    for (i = 0; i < n_bytes / 4u; ++i) {
        pxf32[i] = f32_of_bits(le32(blob + 4u * i));
    }
    return pxf32;
}

static long encode_line(void)
{
    unsigned long long type = next_uint(10);
    long hex_len;
    size_t i;
    if (!parse_ok) {
        return -100;
    }
    if (type == SLP_MSG_LINE) {
        slp_line_header h;
        h.seq = (uint32_t)next_uint(10);
        h.timestamp_us = (uint64_t)next_uint(10);
        h.integration_time_us = (uint32_t)next_uint(10);
        h.averages = (uint16_t)next_uint(10);
        h.pixel_count = (uint16_t)next_uint(10);
        h.pixel_format = (uint8_t)next_uint(10);
        h.flags = (uint8_t)next_uint(10);
        h.spectrum_count = (uint16_t)next_uint(10);
        h.detector_temp_c = f32_of_bits(next_uint(16));
        hex_len = next_hex(blob, sizeof blob);
        if (!parse_ok || hex_len < 0) {
            return -100;
        }
        return slp_encode_line(wire, wire_cap, &h, native_pixels(h.pixel_format, (size_t)hex_len));
    }
    if (type == SLP_MSG_SPECTRUM || type == SLP_MSG_DARK || type == SLP_MSG_REFERENCE) {
        slp_spectrum_header h;
        const void *pixels;
        h.seq = (uint32_t)next_uint(10);
        h.timestamp_us = (uint64_t)next_uint(10);
        h.integration_time_us = (uint32_t)next_uint(10);
        h.averages = (uint16_t)next_uint(10);
        h.pixel_count = (uint16_t)next_uint(10);
        h.pixel_format = (uint8_t)next_uint(10);
        h.flags = (uint8_t)next_uint(10);
        h.saturated_count = (uint16_t)next_uint(10);
        h.detector_temp_c = f32_of_bits(next_uint(16));
        hex_len = next_hex(blob, sizeof blob);
        if (!parse_ok || hex_len < 0) {
            return -100;
        }
        /* pixels arrive little-endian; hand them to the encoder as native arrays, as firmware would */
        if (h.pixel_format == SLP_PIXEL_UINT16) {
            for (i = 0; i < (size_t)hex_len / 2u; ++i) {
                px16[i] = (uint16_t)(blob[2u * i] | (blob[2u * i + 1u] << 8));
            }
            pixels = px16;
        } else if (h.pixel_format == SLP_PIXEL_UINT32) {
            for (i = 0; i < (size_t)hex_len / 4u; ++i) {
                px32[i] = le32(blob + 4u * i);
            }
            pixels = px32;
        } else {
            for (i = 0; i < (size_t)hex_len / 4u; ++i) {
                pxf32[i] = f32_of_bits(le32(blob + 4u * i));
            }
            pixels = pxf32;
        }
        return slp_encode_spectrum(wire, wire_cap, (uint8_t)type, &h, pixels);
    }
    if (type == SLP_MSG_HELLO) {
        uint32_t nonce = (uint32_t)next_uint(10);
        return parse_ok ? slp_encode_hello(wire, wire_cap, nonce) : -100;
    }
    if (type == SLP_MSG_STATUS) {
        slp_status s;
        long id_len;
        long fw_len;
        s.nonce = (uint32_t)next_uint(10);
        s.integration_time_us = (uint32_t)next_uint(10);
        s.uptime_s = (uint32_t)next_uint(10);
        s.pixel_count = (uint16_t)next_uint(10);
        s.averages = (uint16_t)next_uint(10);
        s.detector_temp_c = f32_of_bits(next_uint(16));
        s.n_coeffs = (uint8_t)next_uint(10);
        if (!parse_ok || s.n_coeffs > SLP_MAX_WAVELENGTH_COEFFS) {
            return -100;
        }
        for (i = 0; i < s.n_coeffs; ++i) {
            doubles[i] = f64_of_bits(next_uint(16));
        }
        id_len = next_hex((uint8_t *)text_a, sizeof text_a);
        fw_len = next_hex((uint8_t *)text_b, sizeof text_b);
        s.signal = (uint8_t)next_uint(10);
        s.boot_id = (uint32_t)next_uint(10);
        s.axis_unit = (uint8_t)next_uint(10);
        if (!parse_ok || id_len < 0 || fw_len < 0) {
            return -100;
        }
        s.wavelength_coeffs_nm = doubles;
        s.device_id = text_a;
        s.device_id_len = (uint8_t)id_len;
        s.firmware_version = text_b;
        s.firmware_version_len = (uint8_t)fw_len;
        return slp_encode_status(wire, wire_cap, &s);
    }
    if (type == SLP_MSG_COMMAND) {
        uint32_t id = (uint32_t)next_uint(10);
        uint8_t code = (uint8_t)next_uint(10);
        uint32_t value = (uint32_t)next_uint(10);
        return parse_ok ? slp_encode_command(wire, wire_cap, id, code, value) : -100;
    }
    if (type == SLP_MSG_ACK) {
        uint32_t id = (uint32_t)next_uint(10);
        uint8_t code = (uint8_t)next_uint(10);
        return parse_ok ? slp_encode_ack(wire, wire_cap, id, code) : -100;
    }
    if (type == SLP_MSG_NACK) {
        uint32_t id = (uint32_t)next_uint(10);
        uint8_t code = (uint8_t)next_uint(10);
        uint8_t reason = (uint8_t)next_uint(10);
        long detail_len = next_hex((uint8_t *)text_a, sizeof text_a);
        if (!parse_ok || detail_len < 0) {
            return -100;
        }
        return slp_encode_nack(wire, wire_cap, id, code, reason, text_a, (uint8_t)detail_len);
    }
    if (type == SLP_MSG_ANNOTATION) {
        uint32_t seq = (uint32_t)next_uint(10);
        unsigned long long n = next_uint(10);
        if (!parse_ok || n > SLP_MAX_ANNOTATION_VALUES) {
            return -100;
        }
        for (i = 0; i < n; ++i) {
            doubles[i] = f64_of_bits(next_uint(16));
        }
        return parse_ok ? slp_encode_annotation(wire, wire_cap, seq, doubles, (uint8_t)n) : -100;
    }
    if (type == SLP_MSG_SAMPLE_TAG) {
        uint16_t frames = (uint16_t)next_uint(10);
        long id_len = next_hex((uint8_t *)text_a, sizeof text_a);
        if (!parse_ok || id_len < 0) {
            return -100;
        }
        return slp_encode_sample_tag(wire, wire_cap, frames, text_a, (uint8_t)id_len);
    }
    return -100;
}

static uint8_t rx_buf[SLP_MAX_WIRE_BYTES];

static void receive_line(void)
{
    unsigned long long cap = next_uint(10);
    long n = next_hex(blob, sizeof blob);
    slp_rx rx;
    size_t i;
    int any = 0;
    if (!parse_ok || n < 0 || cap > sizeof rx_buf) {
        printf("ERR -100\n");
        return;
    }
    slp_rx_init(&rx, rx_buf, (size_t)cap);
    for (i = 0; i < (size_t)n; ++i) {
        long got = slp_rx_push(&rx, blob[i]);
        long body_len;
        if (got == 0) {
            continue;
        }
        if (any) {
            putchar(' ');
        }
        any = 1;
        if (got < 0) {
            printf("ERR:%ld", got);
            continue;
        }
        body_len = slp_decode(rx_buf, (size_t)got, body, sizeof body);
        if (body_len < 0) {
            printf("ERR:%ld", body_len);
        } else {
            printf("OK:");
            print_hex(body, (size_t)body_len);
        }
    }
    fputs(any ? "\n" : "-\n", stdout);
}

static void decode_line(void)
{
    long n = next_hex(blob, sizeof blob);
    long body_len;
    if (n < 0) {
        printf("ERR -100\n");
        return;
    }
    body_len = slp_decode(blob, (size_t)n, body, sizeof body);
    if (body_len < 0) {
        printf("ERR %ld\n", body_len);
        return;
    }
    printf("OK ");
    print_hex(body, (size_t)body_len);
    if (body[1] == SLP_MSG_HELLO) {
        uint32_t nonce;
        int rc = slp_parse_hello(body, (size_t)body_len, &nonce);
        if (rc == SLP_OK) {
            printf(" HELLO %lu", (unsigned long)nonce);
        } else {
            printf(" HELLO ERR %d", rc);
        }
    } else if (body[1] == SLP_MSG_COMMAND) {
        uint32_t id;
        uint8_t code;
        uint32_t value;
        int rc = slp_parse_command(body, (size_t)body_len, &id, &code, &value);
        if (rc == SLP_OK) {
            printf(" COMMAND %lu %u %lu", (unsigned long)id, (unsigned)code, (unsigned long)value);
        } else {
            printf(" COMMAND ERR %d", rc);
        }
    }
    printf("\n");
}

int main(void)
{
    while (fgets(line, sizeof line, stdin) != NULL) {
        char *op;
        if (strchr(line, '\n') == NULL && !feof(stdin)) { /* longer than the buffer: skip it, one error line */
            int c;
            do {
                c = getchar();
            } while (c != '\n' && c != EOF);
            printf("ERR -100\n");
            continue;
        }
        op = strtok(line, " \t\r\n");
        parse_ok = 1;
        if (op == NULL) {
            continue;
        }
        if (strcmp(op, "E") == 0 || strcmp(op, "C") == 0) {
            long n;
            size_t i;
            wire_cap = sizeof wire;
            if (strcmp(op, "C") == 0) {
                wire_cap = (size_t)next_uint(10);
                if (!parse_ok || wire_cap > sizeof wire) {
                    printf("ERR -100\n");
                    continue;
                }
            }
            memset(wire, CANARY, sizeof wire);
            n = encode_line();
            for (i = wire_cap; i < sizeof wire; ++i) {
                if (wire[i] != CANARY) {
                    break;
                }
            }
            if (i < sizeof wire) {
                printf("OVERRUN\n");
                continue;
            }
            if (n < 0) {
                printf("ERR %ld\n", n);
            } else {
                print_hex(wire, (size_t)n);
                printf("\n");
            }
        } else if (strcmp(op, "R") == 0) {
            receive_line();
        } else if (strcmp(op, "D") == 0) {
            decode_line();
        } else {
            printf("ERR -100\n");
        }
    }
    return 0;
}
