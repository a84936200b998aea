/*
 * The GO/STOP serial protocol, version 1 (firmware_bridge/PROTOCOL.md): CRC, frame encoding and the
 * streaming receiver of PROTOCOL.md §4. Pure C99, no AVR headers: built for the ATmega328P and, with
 * gcc, for the host-side test against firmware_bridge/test_vectors.json.
 */
#ifndef PROTOCOL_H
#define PROTOCOL_H

#include <stdbool.h>
#include <stdint.h>

#define PROTO_VERSION 1u
#define PROTO_SOF 0xA5u
#define PROTO_HEADER_SIZE 4u /* SOF, LEN, TYPE, SEQ */
#define PROTO_CRC_SIZE 2u
#define PROTO_MAX_FRAME 32u
#define PROTO_MAX_PAYLOAD (PROTO_MAX_FRAME - PROTO_HEADER_SIZE - PROTO_CRC_SIZE) /* 26 */
#define PROTO_GAP_TIMEOUT_MS 20u

/* How far the caller's millisecond clock may lag true time. The AVR build counts whole ticks of a 1 kHz
 * timer (true time is up to 1 ms later than the count), so it sets 1: the watchdog and the gap timeout
 * then never fire early (PROTOCOL.md §6: "no earlier than watchdog_ms"), and at most ~2 ms late. The
 * host-side test feeds exact times, as the test vectors do: 0. */
#ifndef CLOCK_RESOLUTION_MS
#define CLOCK_RESOLUTION_MS 0u
#endif

typedef enum {
	MSG_HELLO = 0x01,
	MSG_ARM = 0x02,
	MSG_DISARM = 0x03,
	MSG_DRIVE = 0x04,
	MSG_STOP = 0x05,
	MSG_HEARTBEAT = 0x06,
	MSG_STATUS_REQUEST = 0x07,
	MSG_VERSION = 0x81,
	MSG_ACK = 0x82,
	MSG_FAULT = 0x83,
	MSG_STATUS = 0x84,
} msg_type_t;

/* Payload sizes (PROTOCOL.md §5). */
#define PAYLOAD_HELLO 1u
#define PAYLOAD_DRIVE 2u
#define PAYLOAD_VERSION 10u
#define PAYLOAD_ACK 12u
#define PAYLOAD_FAULT 5u
#define PAYLOAD_STATUS 25u

/* Why a receiver discarded a candidate; values are the FAULT codes of the same name. */
typedef enum {
	REJECT_CRC_ERROR = 2,
	REJECT_OVERSIZED = 3,
	REJECT_TRUNCATED = 4,
	REJECT_UNKNOWN_TYPE = 5,
	REJECT_BAD_LENGTH = 6,
} reject_reason_t;

uint16_t crc16_ccitt_false(const uint8_t *data, uint8_t len);

/* Writes SOF, LEN, TYPE, SEQ, payload and CRC into out (at least len + 6 bytes); returns the frame size. */
uint8_t proto_encode(uint8_t type, uint8_t seq, const uint8_t *payload, uint8_t len, uint8_t *out);

/* Little-endian field packing. */
static inline void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v & 0xFFu);
	p[1] = (uint8_t)(v >> 8);
}
static inline void put_u32(uint8_t *p, uint32_t v)
{
	put_u16(p, (uint16_t)(v & 0xFFFFu));
	put_u16(p + 2, (uint16_t)(v >> 16));
}
static inline uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }

/* A complete, valid frame as handed to the receiver's owner. */
typedef struct {
	uint8_t type;
	uint8_t seq;
	uint8_t len;
	const uint8_t *payload;
} proto_frame_t;

/* Saturating u16 counters of PROTOCOL.md §6. */
typedef struct {
	uint16_t garbage_bytes;
	uint16_t crc_errors;
	uint16_t oversized;
	uint16_t truncated;
	uint16_t unknown_type;
	uint16_t bad_length;
} proto_counters_t;

typedef struct proto_receiver_t proto_receiver_t;

struct proto_receiver_t {
	/* Payload size of a type this receiver accepts, or -1 for an unknown type. */
	int8_t (*payload_size)(uint8_t type);
	void (*on_frame)(void *owner, const proto_frame_t *frame);
	/* detail: the LEN byte (oversized), the candidate's size (truncated), the TYPE byte (unknown_type,
	 * bad_length), 0 (crc_error). */
	void (*on_reject)(void *owner, reject_reason_t reason, uint8_t detail);
	void *owner;
	uint8_t buf[PROTO_MAX_FRAME];
	uint8_t len;
	bool has_last_rx;
	uint32_t last_rx_ms;
	proto_counters_t counters;
};

/* The firmware's receiver accepts the host->MCU types 0x01..0x07; the host's accepts 0x81..0x84. */
int8_t proto_mcu_payload_size(uint8_t type);
int8_t proto_host_payload_size(uint8_t type);

void proto_receiver_init(proto_receiver_t *rx, int8_t (*payload_size)(uint8_t),
		void (*on_frame)(void *, const proto_frame_t *), void (*on_reject)(void *, reject_reason_t, uint8_t),
		void *owner);
/* One received byte at time now_ms: first the gap timeout, then the byte, then the drain of §4. */
void proto_receiver_feed(proto_receiver_t *rx, uint8_t byte, uint32_t now_ms);
/* Discards a started candidate whose next byte is more than PROTO_GAP_TIMEOUT_MS late. */
void proto_receiver_expire(proto_receiver_t *rx, uint32_t now_ms);
/* Saturating sum of the discard counters (ACK.discarded; garbage bytes excluded). */
uint16_t proto_discarded(const proto_counters_t *c);

#endif
