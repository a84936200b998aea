/* UART0 at 115200 8N1: interrupt-driven receive into a bounded ring, interrupt-driven transmit. */
#ifndef UART_H
#define UART_H

#include <stdbool.h>
#include <stdint.h>

void uart_init(void);
/* Takes the next received byte; false when none is waiting. */
bool uart_read(uint8_t *byte);
/* Queues bytes for sending; waits while the transmit ring is full (the UDRE interrupt drains it). */
void uart_write(const uint8_t *data, uint8_t len);
/* Whether a received byte is waiting (call with interrupts off before sleeping). */
bool uart_rx_pending(void);

#endif
