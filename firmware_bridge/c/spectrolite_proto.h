/* spectrolite_proto.h: C99 reference encoder/decoder of the spectrolite serial protocol (see ../PROTOCOL.md).
 *
 * For microcontroller firmware: no malloc, no global state, no floating-point arithmetic (floats are copied
 * bit for bit), endian-independent (every field is written byte by byte, little-endian).  Each encoder writes one
 * complete frame -- COBS(version | msg_type | payload_len | payload | crc32) followed by the 0x00 delimiter --
 * into a caller-provided buffer, stuffing and checksumming on the fly, so no second scratch buffer is needed.
 *
 * Every encoder returns the number of bytes written (delimiter included) or a negative slp_result.
 * A buffer of SLP_MAX_WIRE_BYTES always suffices; SLP_WIRE_BYTES(payload_len) is the exact bound per message.
 */
#ifndef SPECTROLITE_PROTO_H
#define SPECTROLITE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define SLP_PROTOCOL_VERSION 1u

/* Sizes, identical to firmware_bridge/codec/layouts.py. */
#define SLP_ENVELOPE_BYTES 4u                /* version, msg_type, payload_len */
#define SLP_CRC_BYTES 4u                     /* crc32, little-endian */
#define SLP_MAX_FRAME_BYTES 11264u           /* envelope + payload + crc, before stuffing */
#define SLP_MAX_PAYLOAD_BYTES (SLP_MAX_FRAME_BYTES - SLP_ENVELOPE_BYTES - SLP_CRC_BYTES)
#define SLP_MAX_ENCODED_BYTES (SLP_MAX_FRAME_BYTES + SLP_MAX_FRAME_BYTES / 254u + 1u) /* COBS, no delimiter */
#define SLP_MAX_WIRE_BYTES (SLP_MAX_ENCODED_BYTES + 1u)
/* Worst-case bytes on the wire for a message with payload_len payload bytes (delimiter included). */
#define SLP_WIRE_BYTES(payload_len) \
    ((payload_len) + 8u + ((payload_len) + 8u) / 254u + 2u)

#define SLP_SPECTRUM_HEADER_BYTES 28u
#define SLP_STATUS_HEADER_BYTES 23u
#define SLP_STATUS_TRAILER_BYTES 5u          /* signal u8 + boot_id u32, after the firmware version string */
#define SLP_STATUS_AXIS_UNIT_BYTES 1u        /* axis_unit u8 after the trailer, only when the axis is not in nm */
#define SLP_MAX_DEVICE_ID_BYTES 64u
#define SLP_MAX_FIRMWARE_VERSION_BYTES 32u
#define SLP_MAX_WAVELENGTH_COEFFS 6u
#define SLP_MAX_NACK_DETAIL_BYTES 128u
#define SLP_MAX_ANNOTATION_VALUES 64u
#define SLP_SAMPLE_TAG_HEADER_BYTES 3u       /* frames u16 + id_len u8, then the sample id */
#define SLP_MAX_SAMPLE_ID_BYTES 64u
#define SLP_MAX_SAMPLE_TAG_FRAMES 1000u
/* LINE frames (many spectra of one push-broom line) are the one message allowed past SLP_MAX_FRAME_BYTES; their
 * 16-bit payload_len saturates at 0xFFFF ("65,535 bytes or more: the frame's length says").  Past 11,450 covered
 * bytes the CRC-32 detects every error of 1 or 2 bits (Hamming distance 3) and every burst of up to 32 bits. */
#define SLP_LINE_HEADER_BYTES 28u
#define SLP_MAX_LINE_SPECTRA 1024u
#define SLP_MAX_LINE_FRAME_BYTES 4194304uL   /* 4 MiB: envelope + payload + crc of a LINE, before stuffing */
#define SLP_MAX_LINE_PAYLOAD_BYTES (SLP_MAX_LINE_FRAME_BYTES - SLP_ENVELOPE_BYTES - SLP_CRC_BYTES)
#define SLP_LINE_PAYLOAD_LEN_SATURATED 0xFFFFu

typedef enum {
    SLP_MSG_HELLO = 0x01,
    SLP_MSG_STATUS = 0x02,
    SLP_MSG_SPECTRUM = 0x10,
    SLP_MSG_DARK = 0x11,
    SLP_MSG_REFERENCE = 0x12,
    SLP_MSG_LINE = 0x13,
    SLP_MSG_COMMAND = 0x20,
    SLP_MSG_ACK = 0x21,
    SLP_MSG_NACK = 0x22,
    SLP_MSG_ANNOTATION = 0x30,
    SLP_MSG_SAMPLE_TAG = 0x31
} slp_msg_type;

typedef enum { SLP_PIXEL_UINT16 = 1, SLP_PIXEL_UINT32 = 2, SLP_PIXEL_FLOAT32 = 3 } slp_pixel_format;

/* What the pixels of the device's SPECTRUM frames are (STATUS signal field). */
typedef enum {
    SLP_SIGNAL_COUNTS = 0,     /* raw detector values: the host needs DARK and REFERENCE frames */
    SLP_SIGNAL_ABSORBANCE = 1, /* decadic absorbance computed on the device; send SLP_PIXEL_FLOAT32 */
    SLP_SIGNAL_REFLECTANCE = 2 /* reflectance (1.0 = white standard) computed on the device; SLP_PIXEL_FLOAT32 */
} slp_signal_kind;

/* Unit of the STATUS axis polynomial (axis_unit field).  SLP_AXIS_NM is sent as no byte at all, so an nm device's
 * STATUS is what it was before the field existed; a cm-1 STATUS is one byte longer, which older hosts refuse. */
typedef enum {
    SLP_AXIS_NM = 0,  /* wavelength, nm: grating spectrometers (Vis, NIR) */
    SLP_AXIS_CM_1 = 1 /* wavenumber, cm-1: FTIR instruments, whose axis is even in wavenumber */
} slp_axis_unit;

typedef enum {
    SLP_FLAG_SATURATED = 0x01,
    SLP_FLAG_LAMP_OFF = 0x02,
    SLP_FLAG_TRIGGERED = 0x04,
    SLP_FLAG_TEMP_UNSTABLE = 0x08
} slp_spectrum_flag;

typedef enum {
    SLP_CMD_SET_INTEGRATION_TIME = 0x01,
    SLP_CMD_SET_AVERAGING = 0x02,
    SLP_CMD_TRIGGER = 0x03,
    SLP_CMD_REQUEST_DARK = 0x04,
    SLP_CMD_REQUEST_REFERENCE = 0x05,
    SLP_CMD_START_STREAM = 0x06,
    SLP_CMD_STOP_STREAM = 0x07
} slp_command_code;

typedef enum {
    SLP_NACK_UNKNOWN_COMMAND = 0x01,
    SLP_NACK_VALUE_OUT_OF_RANGE = 0x02,
    SLP_NACK_BUSY = 0x03,
    SLP_NACK_NOT_SUPPORTED = 0x04,
    SLP_NACK_INTERNAL_ERROR = 0x05
} slp_nack_code;

typedef enum {
    SLP_OK = 0,
    SLP_ERR_BUFFER = -1,   /* output buffer too small */
    SLP_ERR_RANGE = -2,    /* a field is out of its range (pixel count, averages, string length, ...) */
    SLP_ERR_COBS = -3,     /* decode: invalid or non-canonical COBS, or a zero byte inside the frame */
    SLP_ERR_SHORT = -4,    /* decode: shorter than envelope + crc */
    SLP_ERR_OVERSIZE = -5, /* decode: longer than SLP_MAX_FRAME_BYTES */
    SLP_ERR_CRC = -6,      /* decode: CRC-32 mismatch */
    SLP_ERR_VERSION = -7,  /* decode: version byte is not SLP_PROTOCOL_VERSION */
    SLP_ERR_LENGTH = -8,   /* decode: payload_len disagrees with the frame, or payload size wrong for its type */
    SLP_ERR_TYPE = -9      /* parse: the frame is not of the expected message type */
} slp_result;

/* Header fields of a SPECTRUM, DARK or REFERENCE frame (the pixels are passed separately). */
typedef struct {
    uint32_t seq;                 /* incremented for every spectrum-like frame */
    uint64_t timestamp_us;        /* device clock at the end of the exposure, microseconds */
    uint32_t integration_time_us; /* exposure time, microseconds */
    uint16_t averages;            /* scans averaged, >= 1 */
    uint16_t pixel_count;         /* number of pixels */
    uint8_t pixel_format;         /* slp_pixel_format */
    uint8_t flags;                /* slp_spectrum_flag bits */
    uint16_t saturated_count;     /* pixels at full scale, <= pixel_count */
    float detector_temp_c;        /* degrees Celsius, NAN when unknown */
} slp_spectrum_header;

/* Header fields of a LINE frame: spectrum_count spectra of pixel_count pixels each, exposed together (one line of a
 * line-scan camera).  Spectrum i of the line has seq + i (mod 2^32); the next frame the device sends carries
 * seq + spectrum_count. */
typedef struct {
    uint32_t seq;                 /* seq of the line's first spectrum */
    uint64_t timestamp_us;        /* device clock at the end of the line's exposure, microseconds */
    uint32_t integration_time_us; /* exposure time, microseconds */
    uint16_t averages;            /* scans averaged, >= 1 */
    uint16_t pixel_count;         /* pixels of each spectrum */
    uint8_t pixel_format;         /* slp_pixel_format */
    uint8_t flags;                /* slp_spectrum_flag bits of the whole line */
    uint16_t spectrum_count;      /* 1..SLP_MAX_LINE_SPECTRA */
    float detector_temp_c;        /* degrees Celsius, NAN when unknown */
} slp_line_header;

/* Fields of a STATUS frame; strings are UTF-8, not NUL-terminated on the wire.  signal and boot_id form the
 * trailer every STATUS now ends with, and axis_unit follows it when not SLP_AXIS_NM: firmware that fills this struct
 * field by field must set all three (axis_unit = SLP_AXIS_NM for a wavelength-calibrated device). */
typedef struct {
    uint32_t nonce;               /* echoed from HELLO, 0 when unsolicited */
    uint32_t integration_time_us; /* current integration time, microseconds */
    uint32_t uptime_s;            /* seconds since start */
    uint16_t pixel_count;         /* pixels per spectrum */
    uint16_t averages;            /* scans averaged, >= 1 */
    float detector_temp_c;        /* degrees Celsius, NAN when unknown */
    const double *wavelength_coeffs_nm; /* axis calibration polynomial, lowest order first, in axis_unit */
    uint8_t n_coeffs;             /* 1..SLP_MAX_WAVELENGTH_COEFFS */
    const char *device_id;        /* device_id_len bytes */
    uint8_t device_id_len;        /* 0..SLP_MAX_DEVICE_ID_BYTES */
    const char *firmware_version; /* firmware_version_len bytes */
    uint8_t firmware_version_len; /* 0..SLP_MAX_FIRMWARE_VERSION_BYTES */
    uint8_t signal;               /* slp_signal_kind of the SPECTRUM pixels */
    uint32_t boot_id;             /* drawn at random (hardware RNG) at every boot, never 0; 0 = unknown */
    uint8_t axis_unit;            /* slp_axis_unit of wavelength_coeffs_nm: SLP_AXIS_NM or SLP_AXIS_CM_1 */
} slp_status;

/* CRC-32/IEEE 802.3 (reflected 0xEDB88320, init and final xor 0xFFFFFFFF), the same as zlib's crc32(). */
uint32_t slp_crc32(const uint8_t *data, size_t len);

/* Encoders.  msg_type of slp_encode_spectrum is SLP_MSG_SPECTRUM, SLP_MSG_DARK or SLP_MSG_REFERENCE; pixels
 * points at pixel_count values of uint16_t, uint32_t or float (native byte order) per pixel_format. */
long slp_encode_spectrum(uint8_t *out, size_t cap, uint8_t msg_type, const slp_spectrum_header *header,
                         const void *pixels);
/* pixels points at spectrum_count * pixel_count values (spectrum 0 first), native byte order, per pixel_format.
 * A buffer of SLP_WIRE_BYTES(SLP_LINE_HEADER_BYTES + spectrum_count * pixel_count * bytes per pixel) suffices. */
long slp_encode_line(uint8_t *out, size_t cap, const slp_line_header *header, const void *pixels);
long slp_encode_hello(uint8_t *out, size_t cap, uint32_t nonce);
long slp_encode_status(uint8_t *out, size_t cap, const slp_status *status);
long slp_encode_command(uint8_t *out, size_t cap, uint32_t command_id, uint8_t code, uint32_t value);
long slp_encode_ack(uint8_t *out, size_t cap, uint32_t command_id, uint8_t code);
long slp_encode_nack(uint8_t *out, size_t cap, uint32_t command_id, uint8_t code, uint8_t reason,
                     const char *detail, uint8_t detail_len);
long slp_encode_annotation(uint8_t *out, size_t cap, uint32_t seq, const double *values, uint8_t n_values);
/* The next `frames` (1..SLP_MAX_SAMPLE_TAG_FRAMES) spectra sent are those of lab sample `sample_id`: id_len
 * (1..SLP_MAX_SAMPLE_ID_BYTES) bytes of printable ASCII (0x20-0x7E), no space at either end. */
long slp_encode_sample_tag(uint8_t *out, size_t cap, uint16_t frames, const char *sample_id, uint8_t id_len);

/* Decode one frame as received (the bytes between two delimiters; one trailing 0x00 is allowed) into body:
 * un-stuff, then check size, CRC, version and payload_len.  Returns the body length (envelope + payload + crc,
 * >= 8) or a negative slp_result.  body may not overlap in.  The message type is body[1], the payload starts
 * at body + 4 and is (length - 8) bytes long. */
long slp_decode(const uint8_t *in, size_t len, uint8_t *body, size_t cap);

/* Receive side: collect bytes from the UART into a caller-provided buffer until a delimiter.  A device that only
 * receives HELLO and COMMAND needs a small buffer: SLP_WIRE_BYTES(9) = 19 bytes hold any of them. */
typedef struct {
    uint8_t *buf;  /* cap bytes */
    size_t cap;
    size_t len;    /* bytes of the current frame so far */
    int dropping;  /* the current frame outgrew cap: skip up to its delimiter */
} slp_rx;

void slp_rx_init(slp_rx *rx, uint8_t *buf, size_t cap);

/* Push one received byte.  Returns the length (> 0) of a complete encoded frame now at rx->buf (delimiter not
 * included; pass it to slp_decode before the next push, which reuses the buffer), 0 while no frame is complete
 * (empty frames, i.e. repeated delimiters, are skipped), or SLP_ERR_OVERSIZE, once, at the delimiter of a frame
 * longer than cap, which has been dropped.  Call it from the main loop, not from an interrupt handler that may
 * interleave with slp_decode on the same buffer. */
long slp_rx_push(slp_rx *rx, uint8_t byte);

/* Parse the two host -> device messages from a body returned by slp_decode.  Return SLP_OK or a negative
 * slp_result (SLP_ERR_TYPE when the body is another message, SLP_ERR_LENGTH when its payload size is wrong). */
int slp_parse_hello(const uint8_t *body, size_t len, uint32_t *nonce);
int slp_parse_command(const uint8_t *body, size_t len, uint32_t *command_id, uint8_t *code, uint32_t *value);

#endif /* SPECTROLITE_PROTO_H */
