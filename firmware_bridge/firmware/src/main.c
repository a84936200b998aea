/*
 * GO/STOP motor firmware for the ATmega328P (Arduino Uno / Nano, 16 MHz).
 *
 * The main loop sleeps (idle mode) until an interrupt: a received byte (USART_RX) or the 1 kHz tick
 * (TIMER2_COMPA). It then hands received bytes to the controller, runs the controller's periodic check
 * (gap timeout, 250 ms command watchdog), and pets the AVR hardware watchdog. The hardware watchdog
 * (120 ms) is petted only here, never in an interrupt, so a main loop that hangs while interrupts still
 * run resets the chip; after any reset the firmware boots DISARMED with the motors braked.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>

#include "board.h"
#include "clock.h"
#include "controller.h"
#include "motor.h"
#include "uart.h"

/* Fault injection for the emulator (sim/avr_pty_harness.c): writing this value to GPIOR0 hangs the main
 * loop so the test can watch the hardware watchdog reset the chip. Nothing on a real board writes GPIOR0,
 * which reads 0 after reset; the same ELF is flashed and emulated. */
#define GPIOR0_HANG_MAGIC 0xA5u

/* The firmware mirrors its protocol state into GPIOR1 (one `out` instruction) so the emulator harness
 * can report it without asking over the UART; on a real board nothing reads it. */

/* Runs before the C runtime: after a watchdog reset the watchdog stays enabled at its shortest period
 * (15 ms) until WDRF in MCUSR is cleared, which would reset the chip again during start-up. */
void early_disable_watchdog(void) __attribute__((naked, used, section(".init3")));
void early_disable_watchdog(void)
{
	MCUSR = 0;
	wdt_disable();
}

static void uart_send_frame(void *ctx, const uint8_t *frame, uint8_t len)
{
	(void)ctx;
	uart_write(frame, len);
}

static void drive_motors(void *ctx, int16_t left, int16_t right)
{
	(void)ctx;
	motor_set(left, right);
	if (left != 0 || right != 0)
		LED_PORT |= _BV(LED_BIT);
	else
		LED_PORT &= (uint8_t)~_BV(LED_BIT);
}

int main(void)
{
	LED_DDR |= _BV(LED_BIT);
	motor_init(); /* braked before anything else can happen */
	clock_init();
	uart_init();
	static controller_t controller;
	const controller_io_t io = { uart_send_frame, drive_motors, 0 };
	controller_init(&controller, &io, 0u);
	wdt_enable(WDTO_120MS);
	set_sleep_mode(SLEEP_MODE_IDLE);
	sei();

	uint32_t last_tick = 0;
	for (;;) {
		/* At most one frame's worth of bytes per pass: a host flooding the line (each reply takes longer
		 * on the wire than its request) must not starve the tick or the hardware watchdog. */
		uint8_t byte;
		for (uint8_t n = 0; n < PROTO_MAX_FRAME && uart_read(&byte); n++)
			controller_receive(&controller, byte, clock_ms());
		uint32_t now = clock_ms();
		if (now != last_tick) {
			last_tick = now;
			controller_tick(&controller, now);
		}
		GPIOR1 = (uint8_t)controller.state;
		if (GPIOR0 == GPIOR0_HANG_MAGIC) {
			for (;;) {
				/* simulated hang: interrupts keep running, the hardware watchdog is no longer petted */
			}
		}
		wdt_reset();
		/* sleep unless a byte is waiting (checked with interrupts off, so none can slip in unseen) */
		cli();
		if (!uart_rx_pending()) {
			sleep_enable();
			sei();
			sleep_cpu();
			sleep_disable();
		}
		sei();
	}
}
