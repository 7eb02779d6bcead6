/* example_device.c: the shape of a spectrometer firmware's protocol loop, using spectrolite_proto.h.
 *
 * Reads the host's bytes on stdin (as a UART would deliver them), answers HELLO with STATUS and COMMAND with
 * ACK/NACK plus the frames the command asks for, and writes its frames to stdout.  A fake 650-pixel detector
 * stands in for the real one.  The tests compile and run it against the Python codec
 * (tests/firmware_bridge/test_c_reference.py); on a microcontroller, getchar/fwrite become the UART driver.
 *
 * Build: gcc -std=c99 -Wall -Wextra -Werror -pedantic spectrolite_proto.c example_device.c -o example_device
 */
#include "spectrolite_proto.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

#define N_PIXELS 650u

static uint8_t rx_buf[SLP_WIRE_BYTES(9u)]; /* the largest frame a device receives is a COMMAND */
static uint8_t body[SLP_WIRE_BYTES(9u)];
static uint8_t tx_buf[SLP_WIRE_BYTES(SLP_SPECTRUM_HEADER_BYTES + 2u * N_PIXELS)];
static uint16_t counts[N_PIXELS];

static uint32_t integration_time_us = 20000u;
static uint16_t averages = 1u;
static uint32_t seq = 0u;
static uint64_t clock_us = 1000000u;
static uint32_t boot_id; /* drawn once per boot: lets the host tell this boot's seq 0 from the last boot's */

/* A random, non-zero id for this boot.  On a microcontroller, read the hardware RNG (STM32 RNG, SAMD TRNG, ESP32
 * esp_random) or hash the chip's unique id with a boot counter kept in flash and a free-running timer; never derive
 * it from anything that repeats at every power-up.  This hosted example mixes the wall clock and the CPU clock. */
static uint32_t draw_boot_id(void)
{
    uint32_t x = (uint32_t)time(NULL) ^ ((uint32_t)clock() * 0x9E3779B9u);
    x ^= x >> 16; /* murmur3 finaliser: spread the few changing bits over the word */
    x *= 0x85EBCA6Bu;
    x ^= x >> 13;
    x *= 0xC2B2AE35u;
    x ^= x >> 16;
    return x != 0u ? x : 1u;
}

static void send(long n)
{
    if (n > 0) {
        fwrite(tx_buf, 1u, (size_t)n, stdout);
    }
}

static void send_status(uint32_t nonce)
{
    static const double coeffs[3] = {900.0, 1.0, -1.0e-5};
    static const char device_id[] = "example-0001";
    static const char firmware[] = "0.1.0";
    slp_status s;
    s.nonce = nonce;
    s.integration_time_us = integration_time_us;
    s.uptime_s = (uint32_t)(clock_us / 1000000u);
    s.pixel_count = N_PIXELS;
    s.averages = averages;
    s.detector_temp_c = 24.5f;
    s.wavelength_coeffs_nm = coeffs;
    s.n_coeffs = 3u;
    s.device_id = device_id;
    s.device_id_len = (uint8_t)(sizeof device_id - 1u);
    s.firmware_version = firmware;
    s.firmware_version_len = (uint8_t)(sizeof firmware - 1u);
    s.signal = SLP_SIGNAL_COUNTS; /* raw ADC counts: the host takes DARK and REFERENCE frames to compute absorbance */
    s.boot_id = boot_id;
    s.axis_unit = SLP_AXIS_NM; /* a grating spectrometer: the polynomial above is in nm (an FTIR sends cm-1) */
    send(slp_encode_status(tx_buf, sizeof tx_buf, &s));
}

static void send_spectrum(uint8_t msg_type)
{
    slp_spectrum_header h;
    uint16_t i;
    uint16_t saturated = 0u;
    for (i = 0; i < N_PIXELS; ++i) { /* a fake exposure: a hump that grows with the integration time */
        uint32_t hump = (uint32_t)(i < 325u ? i : 650u - i) * 60u;
        uint32_t value = msg_type == SLP_MSG_DARK ? 900u + i % 7u : 900u + hump * (integration_time_us / 1000u) / 20u;
        counts[i] = (uint16_t)(value > 65535u ? 65535u : value);
        saturated = (uint16_t)(saturated + (counts[i] == 65535u));
    }
    clock_us += integration_time_us * averages;
    h.seq = seq++;
    h.timestamp_us = clock_us;
    h.integration_time_us = integration_time_us;
    h.averages = averages;
    h.pixel_count = N_PIXELS;
    h.pixel_format = SLP_PIXEL_UINT16;
    h.flags = (uint8_t)(saturated ? SLP_FLAG_SATURATED : 0u);
    h.saturated_count = saturated;
    h.detector_temp_c = NAN;
    send(slp_encode_spectrum(tx_buf, sizeof tx_buf, msg_type, &h, counts));
}

static void nack(uint32_t id, uint8_t code, uint8_t reason, const char *detail, uint8_t detail_len)
{
    send(slp_encode_nack(tx_buf, sizeof tx_buf, id, code, reason, detail, detail_len));
}

static void handle(const uint8_t *frame, size_t len)
{
    uint32_t nonce, id, value;
    uint8_t code;
    uint32_t k;
    long n = slp_decode(frame, len, body, sizeof body);
    if (n < 0) {
        return; /* a bad frame: count it and wait for the host to retry */
    }
    if (slp_parse_hello(body, (size_t)n, &nonce) == SLP_OK) {
        send_status(nonce);
        return;
    }
    if (slp_parse_command(body, (size_t)n, &id, &code, &value) != SLP_OK) {
        return; /* another message type, or a malformed one: not for a device */
    }
    switch (code) {
    case SLP_CMD_SET_INTEGRATION_TIME:
        if (value < 1000u || value > 10000000u) {
            nack(id, code, SLP_NACK_VALUE_OUT_OF_RANGE, "expected 1000..10000000 us", 26u);
            return;
        }
        send(slp_encode_ack(tx_buf, sizeof tx_buf, id, code));
        integration_time_us = value;
        send_status(0u);
        return;
    case SLP_CMD_SET_AVERAGING:
        if (value < 1u || value > 1000u) {
            nack(id, code, SLP_NACK_VALUE_OUT_OF_RANGE, "expected 1..1000 scans", 22u);
            return;
        }
        send(slp_encode_ack(tx_buf, sizeof tx_buf, id, code));
        averages = (uint16_t)value;
        send_status(0u);
        return;
    case SLP_CMD_TRIGGER:
        send(slp_encode_ack(tx_buf, sizeof tx_buf, id, code));
        for (k = 0; k < value && k < 100u; ++k) {
            send_spectrum(SLP_MSG_SPECTRUM);
        }
        return;
    case SLP_CMD_REQUEST_DARK:
    case SLP_CMD_REQUEST_REFERENCE:
        send(slp_encode_ack(tx_buf, sizeof tx_buf, id, code));
        send_spectrum(code == SLP_CMD_REQUEST_DARK ? SLP_MSG_DARK : SLP_MSG_REFERENCE);
        return;
    case SLP_CMD_STOP_STREAM: /* this example never streams: stopping is trivially done */
        send(slp_encode_ack(tx_buf, sizeof tx_buf, id, code));
        return;
    case SLP_CMD_START_STREAM:
        nack(id, code, SLP_NACK_NOT_SUPPORTED, "", 0u);
        return;
    default:
        nack(id, code, SLP_NACK_UNKNOWN_COMMAND, "", 0u);
        return;
    }
}

int main(void)
{
    slp_rx rx;
    int c;
    slp_rx_init(&rx, rx_buf, sizeof rx_buf);
    boot_id = draw_boot_id();
    send_status(0u); /* unsolicited STATUS at boot */
    while ((c = getchar()) != EOF) {
        long n = slp_rx_push(&rx, (uint8_t)c);
        if (n > 0) {
            handle(rx_buf, (size_t)n);
        }
    }
    fflush(stdout);
    return 0;
}
