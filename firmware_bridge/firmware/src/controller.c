#include "controller.h"

#include <string.h>

static void send_message(controller_t *c, uint8_t type, const uint8_t *payload, uint8_t len)
{
	uint8_t frame[PROTO_MAX_FRAME];
	uint8_t size = proto_encode(type, c->tx_seq++, payload, len, frame);
	c->io.send(c->io.ctx, frame, size);
}

static void set_motor(controller_t *c, int16_t output)
{
	c->motor = output;
	c->io.set_motors(c->io.ctx, output, output);
}

static void bump(uint16_t *counter)
{
	if (*counter != UINT16_MAX)
		(*counter)++;
}

static uint16_t counter_of(const controller_t *c, reject_reason_t reason)
{
	switch (reason) {
	case REJECT_CRC_ERROR: return c->rx.counters.crc_errors;
	case REJECT_OVERSIZED: return c->rx.counters.oversized;
	case REJECT_TRUNCATED: return c->rx.counters.truncated;
	case REJECT_UNKNOWN_TYPE: return c->rx.counters.unknown_type;
	case REJECT_BAD_LENGTH: return c->rx.counters.bad_length;
	}
	return 0u;
}

static void send_fault(controller_t *c, uint8_t code, uint8_t detail, uint16_t count)
{
	uint8_t p[PAYLOAD_FAULT];
	p[0] = code;
	p[1] = detail;
	p[2] = (uint8_t)c->state;
	put_u16(p + 3, count);
	send_message(c, MSG_FAULT, p, sizeof(p));
}

static void send_ack(controller_t *c, const proto_frame_t *f, ack_result_t result)
{
	uint8_t p[PAYLOAD_ACK];
	p[0] = f->seq;
	p[1] = f->type;
	p[2] = (uint8_t)result;
	p[3] = (uint8_t)c->state;
	put_u16(p + 4, (uint16_t)c->motor);
	put_u16(p + 6, (uint16_t)c->motor);
	put_u16(p + 8, proto_discarded(&c->rx.counters));
	put_u16(p + 10, c->watchdog_trips);
	send_message(c, MSG_ACK, p, sizeof(p));
}

static void send_version(controller_t *c)
{
	uint8_t p[PAYLOAD_VERSION];
	p[0] = PROTO_VERSION;
	p[1] = FIRMWARE_MAJOR;
	p[2] = FIRMWARE_MINOR;
	p[3] = FIRMWARE_PATCH;
	put_u16(p + 4, WATCHDOG_MS);
	put_u16(p + 6, (uint16_t)(int16_t)SPEED_MIN);
	put_u16(p + 8, (uint16_t)(int16_t)SPEED_MAX);
	send_message(c, MSG_VERSION, p, sizeof(p));
}

static void send_status(controller_t *c)
{
	const proto_counters_t *k = &c->rx.counters;
	uint8_t p[PAYLOAD_STATUS];
	p[0] = (uint8_t)c->state;
	put_u16(p + 1, (uint16_t)c->motor);
	put_u16(p + 3, (uint16_t)c->motor);
	put_u16(p + 5, k->garbage_bytes);
	put_u16(p + 7, k->crc_errors);
	put_u16(p + 9, k->oversized);
	put_u16(p + 11, k->truncated);
	put_u16(p + 13, k->unknown_type);
	put_u16(p + 15, k->bad_length);
	put_u16(p + 17, c->clamped);
	put_u16(p + 19, c->watchdog_trips);
	put_u32(p + 21, (uint32_t)(c->now_ms - c->boot_ms));
	send_message(c, MSG_STATUS, p, sizeof(p));
}

static ack_result_t drive(controller_t *c, int16_t requested)
{
	if (c->state != STATE_ARMED && c->state != STATE_DRIVING)
		return RESULT_NOT_ARMED;
	int16_t output = requested;
	if (output < SPEED_MIN)
		output = SPEED_MIN;
	if (output > SPEED_MAX)
		output = SPEED_MAX;
	set_motor(c, output);
	c->state = output != 0 ? STATE_DRIVING : STATE_ARMED;
	if (output != requested) {
		bump(&c->clamped);
		return RESULT_CLAMPED;
	}
	return RESULT_OK;
}

/* A frame that passed every check of §4: act, feed the watchdog, answer. */
static void on_frame(void *owner, const proto_frame_t *f)
{
	controller_t *c = owner;
	c->last_valid_ms = c->now_ms;
	ack_result_t result = RESULT_OK;
	switch ((msg_type_t)f->type) {
	case MSG_HELLO:
		set_motor(c, 0);
		c->state = STATE_DISARMED;
		send_version(c);
		return;
	case MSG_STATUS_REQUEST:
		send_status(c);
		return;
	case MSG_ARM:
		if (c->state == STATE_DISARMED || c->state == STATE_WATCHDOG) {
			set_motor(c, 0);
			c->state = STATE_ARMED;
		}
		break;
	case MSG_DISARM:
		set_motor(c, 0);
		c->state = STATE_DISARMED;
		break;
	case MSG_DRIVE:
		result = drive(c, (int16_t)get_u16(f->payload));
		break;
	case MSG_STOP:
		set_motor(c, 0);
		if (c->state == STATE_DRIVING)
			c->state = STATE_ARMED;
		break;
	case MSG_HEARTBEAT:
		break;
	default:
		return; /* the receiver only hands over the types above */
	}
	send_ack(c, f, result);
}

/* A discarded candidate: counted by the receiver; reported at most once per 50 ms. */
static void on_reject(void *owner, reject_reason_t reason, uint8_t detail)
{
	controller_t *c = owner;
	if (c->discard_fault_sent && (uint32_t)(c->now_ms - c->last_discard_fault_ms) < DISCARD_FAULT_INTERVAL_MS)
		return;
	c->discard_fault_sent = true;
	c->last_discard_fault_ms = c->now_ms;
	send_fault(c, (uint8_t)reason, detail, counter_of(c, reason));
}

static void check_watchdog(controller_t *c)
{
#if WATCHDOG_MS == 0
	(void)c; /* bench build: no command watchdog (the host refuses this firmware unless told otherwise) */
	return;
#else
	if (c->state != STATE_ARMED && c->state != STATE_DRIVING)
		return;
	if ((uint32_t)(c->now_ms - c->last_valid_ms) < (uint32_t)WATCHDOG_MS + CLOCK_RESOLUTION_MS)
		return;
	set_motor(c, 0);
	c->state = STATE_WATCHDOG;
	bump(&c->watchdog_trips);
	send_fault(c, FAULT_WATCHDOG, 0u, c->watchdog_trips);
#endif
}

void controller_init(controller_t *c, const controller_io_t *io, uint32_t now_ms)
{
	memset(c, 0, sizeof(*c));
	c->io = *io;
	c->now_ms = now_ms;
	c->boot_ms = now_ms;
	c->last_valid_ms = now_ms;
	c->state = STATE_DISARMED;
	proto_receiver_init(&c->rx, proto_mcu_payload_size, on_frame, on_reject, c);
	set_motor(c, 0);
}

/* Both entry points check the watchdog first, as the reference McuCore does, so that replies come
 * out in the same order for the same input. */
void controller_receive(controller_t *c, uint8_t byte, uint32_t now_ms)
{
	c->now_ms = now_ms;
	check_watchdog(c);
	proto_receiver_feed(&c->rx, byte, now_ms);
}

void controller_tick(controller_t *c, uint32_t now_ms)
{
	c->now_ms = now_ms;
	check_watchdog(c);
	proto_receiver_expire(&c->rx, now_ms);
}
