#include "protocol.h"

#include <string.h>

#ifdef __AVR__
#include <util/crc16.h>
#endif

/* On the AVR, avr-libc's hand-written _crc_xmodem_update (same polynomial 0x1021, not reflected; started
 * at 0xFFFF it is CCITT-FALSE) is several times faster than the bit loop, which matters when garbage makes
 * the receiver re-check one candidate after another. The emulated-firmware tests check it on every frame. */
uint16_t crc16_ccitt_false(const uint8_t *data, uint8_t len)
{
	uint16_t crc = 0xFFFFu;
	while (len--) {
#ifdef __AVR__
		crc = _crc_xmodem_update(crc, *data++);
#else
		crc ^= (uint16_t)((uint16_t)(*data++) << 8);
		for (uint8_t i = 0; i < 8u; i++)
			crc = (uint16_t)((crc & 0x8000u) ? (((unsigned)crc << 1) ^ 0x1021u) : ((unsigned)crc << 1));
#endif
	}
	return crc;
}

uint8_t proto_encode(uint8_t type, uint8_t seq, const uint8_t *payload, uint8_t len, uint8_t *out)
{
	out[0] = PROTO_SOF;
	out[1] = len;
	out[2] = type;
	out[3] = seq;
	if (len)
		memcpy(out + PROTO_HEADER_SIZE, payload, len);
	put_u16(out + PROTO_HEADER_SIZE + len, crc16_ccitt_false(out + 1, (uint8_t)(len + 3u)));
	return (uint8_t)(len + PROTO_HEADER_SIZE + PROTO_CRC_SIZE);
}

int8_t proto_mcu_payload_size(uint8_t type)
{
	switch (type) {
	case MSG_HELLO: return (int8_t)PAYLOAD_HELLO;
	case MSG_DRIVE: return (int8_t)PAYLOAD_DRIVE;
	case MSG_ARM:
	case MSG_DISARM:
	case MSG_STOP:
	case MSG_HEARTBEAT:
	case MSG_STATUS_REQUEST: return 0;
	default: return -1;
	}
}

int8_t proto_host_payload_size(uint8_t type)
{
	switch (type) {
	case MSG_VERSION: return (int8_t)PAYLOAD_VERSION;
	case MSG_ACK: return (int8_t)PAYLOAD_ACK;
	case MSG_FAULT: return (int8_t)PAYLOAD_FAULT;
	case MSG_STATUS: return (int8_t)PAYLOAD_STATUS;
	default: return -1;
	}
}

void proto_receiver_init(proto_receiver_t *rx, int8_t (*payload_size)(uint8_t),
		void (*on_frame)(void *, const proto_frame_t *), void (*on_reject)(void *, reject_reason_t, uint8_t),
		void *owner)
{
	memset(rx, 0, sizeof(*rx));
	rx->payload_size = payload_size;
	rx->on_frame = on_frame;
	rx->on_reject = on_reject;
	rx->owner = owner;
}

static void bump(uint16_t *counter)
{
	if (*counter != UINT16_MAX)
		(*counter)++;
}

static void drop(proto_receiver_t *rx, uint8_t n)
{
	rx->len = (uint8_t)(rx->len - n);
	memmove(rx->buf, rx->buf + n, rx->len);
}

static void reject(proto_receiver_t *rx, reject_reason_t reason, uint8_t detail)
{
	switch (reason) {
	case REJECT_CRC_ERROR: bump(&rx->counters.crc_errors); break;
	case REJECT_OVERSIZED: bump(&rx->counters.oversized); break;
	case REJECT_TRUNCATED: bump(&rx->counters.truncated); break;
	case REJECT_UNKNOWN_TYPE: bump(&rx->counters.unknown_type); break;
	case REJECT_BAD_LENGTH: bump(&rx->counters.bad_length); break;
	}
	rx->on_reject(rx->owner, reason, detail);
}

/* PROTOCOL.md §4 "drain", step by step. */
static void drain(proto_receiver_t *rx)
{
	while (rx->len > 0u) {
		if (rx->buf[0] != PROTO_SOF) {
			bump(&rx->counters.garbage_bytes);
			drop(rx, 1u);
			continue;
		}
		if (rx->len < 2u)
			return;
		uint8_t payload_len = rx->buf[1];
		if (payload_len > PROTO_MAX_PAYLOAD) {
			reject(rx, REJECT_OVERSIZED, payload_len);
			drop(rx, 1u);
			continue;
		}
		uint8_t total = (uint8_t)(payload_len + PROTO_HEADER_SIZE + PROTO_CRC_SIZE);
		if (rx->len < total)
			return;
		uint16_t crc = crc16_ccitt_false(rx->buf + 1, (uint8_t)(payload_len + 3u));
		if (crc != get_u16(rx->buf + total - PROTO_CRC_SIZE)) {
			reject(rx, REJECT_CRC_ERROR, 0u);
			drop(rx, 1u);
			continue;
		}
		/* a complete frame with a good CRC: copy it out so the owner may feed us re-entrantly */
		uint8_t frame[PROTO_MAX_FRAME];
		memcpy(frame, rx->buf, total);
		drop(rx, total);
		uint8_t type = frame[2];
		int8_t expected = rx->payload_size(type);
		if (expected < 0) {
			reject(rx, REJECT_UNKNOWN_TYPE, type);
		} else if ((uint8_t)expected != payload_len) {
			reject(rx, REJECT_BAD_LENGTH, type);
		} else {
			proto_frame_t valid = { type, frame[3], payload_len, frame + PROTO_HEADER_SIZE };
			rx->on_frame(rx->owner, &valid);
		}
	}
}

void proto_receiver_expire(proto_receiver_t *rx, uint32_t now_ms)
{
	if (rx->len == 0u || !rx->has_last_rx || (uint32_t)(now_ms - rx->last_rx_ms) <= PROTO_GAP_TIMEOUT_MS + CLOCK_RESOLUTION_MS)
		return;
	while (rx->len > 0u) {
		reject(rx, REJECT_TRUNCATED, rx->len);
		drop(rx, 1u);
		drain(rx);
	}
}

void proto_receiver_feed(proto_receiver_t *rx, uint8_t byte, uint32_t now_ms)
{
	proto_receiver_expire(rx, now_ms);
	rx->has_last_rx = true;
	rx->last_rx_ms = now_ms;
	/* cannot overflow: after every drain an incomplete candidate is shorter than its LEN + 6 <= 32 */
	rx->buf[rx->len++] = byte;
	drain(rx);
}

uint16_t proto_discarded(const proto_counters_t *c)
{
	uint32_t sum = (uint32_t)c->crc_errors + c->oversized + c->truncated + c->unknown_type + c->bad_length;
	return sum > UINT16_MAX ? UINT16_MAX : (uint16_t)sum;
}
