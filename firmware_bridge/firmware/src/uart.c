#include "uart.h"

#include <avr/interrupt.h>
#include <avr/io.h>

#ifndef F_CPU
#error "F_CPU must be defined (the Makefile sets it)"
#endif
#define BAUD 115200
#define BAUD_TOL 3
#include <util/setbaud.h>

#define RX_RING_SIZE 64u /* power of two; two full frames */
#define TX_RING_SIZE 128u
#define RX_MASK (RX_RING_SIZE - 1u)
#define TX_MASK (TX_RING_SIZE - 1u)

static volatile uint8_t rx_ring[RX_RING_SIZE];
static volatile uint8_t rx_head; /* written by the ISR */
static volatile uint8_t rx_tail; /* written by the main loop */

static volatile uint8_t tx_ring[TX_RING_SIZE];
static volatile uint8_t tx_head; /* written by the main loop */
static volatile uint8_t tx_tail; /* written by the ISR */

void uart_init(void)
{
	/* U2X before the baud divisor: simavr derives its byte time when UBRR0L is written */
#if USE_2X
	UCSR0A = _BV(U2X0);
#else
	UCSR0A = 0;
#endif
	UBRR0H = UBRRH_VALUE;
	UBRR0L = UBRRL_VALUE;
	UCSR0C = _BV(UCSZ01) | _BV(UCSZ00); /* 8N1 */
	UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

ISR(USART_RX_vect)
{
	uint8_t status = UCSR0A; /* must be read before UDR0 */
	uint8_t byte = UDR0;
	/* A byte with a framing error, or one that finds the ring full, is dropped: the frame it belongs to
	 * then fails its CRC or length check and is discarded and counted by the receiver (PROTOCOL.md §4). */
	if (status & (_BV(FE0) | _BV(DOR0)))
		return;
	uint8_t next = (uint8_t)((rx_head + 1u) & RX_MASK);
	if (next == rx_tail)
		return;
	rx_ring[rx_head] = byte;
	rx_head = next;
}

bool uart_read(uint8_t *byte)
{
	uint8_t tail = rx_tail;
	if (tail == rx_head)
		return false;
	*byte = rx_ring[tail];
	rx_tail = (uint8_t)((tail + 1u) & RX_MASK);
	return true;
}

bool uart_rx_pending(void)
{
	return rx_tail != rx_head;
}

ISR(USART_UDRE_vect)
{
	uint8_t tail = tx_tail;
	if (tail == tx_head) {
		UCSR0B &= (uint8_t)~_BV(UDRIE0);
		return;
	}
	UDR0 = tx_ring[tail];
	tx_tail = (uint8_t)((tail + 1u) & TX_MASK);
}

void uart_write(const uint8_t *data, uint8_t len)
{
	for (uint8_t i = 0; i < len; i++) {
		uint8_t next = (uint8_t)((tx_head + 1u) & TX_MASK);
		while (next == tx_tail) {
			/* ring full: the UDRE interrupt makes room within one byte time */
		}
		tx_ring[tx_head] = data[i];
		tx_head = next;
		UCSR0B |= _BV(UDRIE0);
	}
}
