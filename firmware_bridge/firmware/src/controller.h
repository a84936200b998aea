/*
 * The firmware's behaviour (PROTOCOL.md §6): state machine, clamping, command watchdog, counters and
 * replies. Pure C99 with injected I/O (send bytes, set motors) and an injected millisecond clock, so the
 * same code runs on the ATmega328P and in the host-side scenario test.
 */
#ifndef CONTROLLER_H
#define CONTROLLER_H

#include <stdbool.h>
#include <stdint.h>

#include "protocol.h"

/* The constants VERSION reports (PROTOCOL.md §6). The release build uses these defaults; the Makefile's
 * FW_DEFS overrides them for bench/test variants (e.g. FW_DEFS="-DWATCHDOG_MS=100"). */
#ifndef FIRMWARE_MAJOR
#define FIRMWARE_MAJOR 1u
#endif
#ifndef FIRMWARE_MINOR
#define FIRMWARE_MINOR 0u
#endif
#ifndef FIRMWARE_PATCH
#define FIRMWARE_PATCH 0u
#endif
#ifndef WATCHDOG_MS
#define WATCHDOG_MS 250u /* 0 disables the command watchdog: bench builds only, the host refuses it */
#endif
#ifndef SPEED_MIN
#define SPEED_MIN (-500)
#endif
#ifndef SPEED_MAX
#define SPEED_MAX 1000
#endif
#ifndef DISCARD_FAULT_INTERVAL_MS
#define DISCARD_FAULT_INTERVAL_MS 50u
#endif

#if SPEED_MIN > 0 || SPEED_MIN < -1000 || SPEED_MAX < 0 || SPEED_MAX > 1000
#error "need -1000 <= SPEED_MIN <= 0 <= SPEED_MAX <= 1000"
#endif

typedef enum {
	STATE_DISARMED = 0,
	STATE_ARMED = 1,
	STATE_DRIVING = 2,
	STATE_WATCHDOG = 3,
} fw_state_t;

typedef enum {
	RESULT_OK = 0,
	RESULT_CLAMPED = 1,
	RESULT_NOT_ARMED = 2,
} ack_result_t;

#define FAULT_WATCHDOG 1u

typedef struct {
	/* Sends one complete frame. */
	void (*send)(void *ctx, const uint8_t *frame, uint8_t len);
	/* Applies a motor output (signed permille, already clamped); 0 = brake. */
	void (*set_motors)(void *ctx, int16_t left, int16_t right);
	void *ctx;
} controller_io_t;

typedef struct {
	controller_io_t io;
	proto_receiver_t rx;
	uint32_t now_ms;  /* time of the event being handled */
	uint32_t boot_ms;
	uint32_t last_valid_ms;
	uint32_t last_discard_fault_ms;
	bool discard_fault_sent;
	fw_state_t state;
	int16_t motor;    /* both sides get the same output */
	uint8_t tx_seq;
	uint16_t clamped;
	uint16_t watchdog_trips;
} controller_t;

/* Boot: DISARMED, motors braked, counters 0, SEQ 0. */
void controller_init(controller_t *c, const controller_io_t *io, uint32_t now_ms);
/* One byte from the host, received at now_ms. */
void controller_receive(controller_t *c, uint8_t byte, uint32_t now_ms);
/* Periodic check (at least every 5 ms): gap timeout and command watchdog. */
void controller_tick(controller_t *c, uint32_t now_ms);

#endif
