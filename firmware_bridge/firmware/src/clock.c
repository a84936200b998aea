#include "clock.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/atomic.h>

static volatile uint32_t ticks_ms;

void clock_init(void)
{
	/* mode and clock first, then TOP (simavr only accepts OCR2A writes in a known mode) */
	TCCR2A = _BV(WGM21);                          /* CTC, TOP = OCR2A */
	TCCR2B = _BV(CS22);                           /* prescaler 64 */
	OCR2A = (uint8_t)(F_CPU / 64u / 1000u - 1u); /* 16 MHz / 64 / 250 = 1 kHz */
	TCNT2 = 0;
	TIMSK2 = _BV(OCIE2A);
}

ISR(TIMER2_COMPA_vect)
{
	ticks_ms++;
}

uint32_t clock_ms(void)
{
	uint32_t now;
	ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { now = ticks_ms; }
	return now;
}
