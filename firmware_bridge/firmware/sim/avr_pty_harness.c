/*
 * avr_pty_harness: run an ATmega328P firmware ELF in simavr and expose its UART0 as a pty.
 *
 *   avr_pty_harness FIRMWARE.elf [--freq HZ] [--baud N] [--pins FILE] [--link PATH] [--free-run]
 *
 * On start it prints one line to stdout, "PTY <slave path>", then serves until SIGTERM/SIGINT.
 * A host program opens that path like a serial port (pyserial: serial.serial_for_url(path)).
 *
 * Why our own pty bridge and not simavr's parts/uart_pty (which Debian's libsimavrparts ships):
 *   - uart_pty injects received bytes into the AVR core from its own thread, concurrently with
 *     avr_run(); the UART's cycle timers are not thread safe;
 *   - it pushes everything the host writes into the UART as fast as the XON/XOFF IRQs allow, i.e.
 *     faster than a real 115200 baud wire;
 *   - when the host closes the pty, its read() error is stored into an unsigned length;
 *   - it symlinks a fixed /tmp/simavr-uart0, which concurrent harnesses fight over.
 * This harness does the same job single-threaded: between short slices of emulated execution it
 * moves bytes between the pty master and the UART IRQs (UART_IRQ_INPUT / UART_IRQ_OUTPUT, honouring
 * UART_IRQ_OUT_XOFF), feeding at most one byte per byte-time of the configured baud rate.
 *
 * Emulated time versus wall time: simavr runs the core as fast as the host CPU allows, and skips
 * whole sleep periods at once. The firmware's timing (1 kHz tick, command watchdog, AVR hardware
 * watchdog) counts emulated cycles. To make those real-time, this harness paces the emulated clock
 * to the wall clock: when emulated time is ahead of wall time it blocks in ppoll() on the pty until
 * wall time catches up (waking early when the host writes). When the host is too slow to keep up,
 * emulated time falls behind; the harness never skips cycles (that would break the firmware), it
 * counts the lag and reports the worst lag on exit (stderr, "LAG max_ms=..."). --free-run turns
 * pacing off (emulated time then runs as fast as the CPU allows).
 *
 * --pins FILE appends a line each time the motor driver pins change, read straight from the
 * emulated I/O registers (not from what the firmware reports):
 *   "<emulated_us> <wall_us> L <pwm> <in1> <in2> R <pwm> <in1> <in2> STBY <s>"
 * pwm is the effective duty 0..255 (0 when the output compare pin is disconnected and low, 255
 * when disconnected and high).
 *
 * Fault injection: SIGUSR1 writes 0xA5 to GPIOR0, which the firmware treats as "hang the main loop
 * now" (see firmware main.c), so a test can prove that the AVR hardware watchdog resets a hung
 * firmware into STOP. Nothing on a real board writes GPIOR0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"

/* ATmega328P data-space addresses (I/O address + 0x20) of the registers we watch. */
enum {
	REG_PINB = 0x23, REG_DDRB = 0x24, REG_PORTB = 0x25,
	REG_PIND = 0x29, REG_DDRD = 0x2A, REG_PORTD = 0x2B,
	REG_GPIOR0 = 0x3E,
	REG_TCCR0A = 0x44, REG_OCR0A = 0x47, REG_OCR0B = 0x48,
};
#define GPIOR0_HANG_MAGIC 0xA5

/* Motor driver wiring; must match firmware/src/board.h. */
#define PIN_BIT(reg, bit) ((avr->data[(reg)] >> (bit)) & 1u)

#define RX_BUFFER_SIZE 4096
#define TX_BUFFER_SIZE 8192
#define SLICE_US 250u              /* emulated time between pty services */
#define PACE_SLACK_US 500u         /* how far emulated time may run ahead of wall time */
#define LAG_REPORT_US 20000u       /* lag worth a warning line on stderr */

typedef struct byte_queue_t {
	uint8_t *data;
	size_t size, head, len;
} byte_queue_t;

static void queue_push(byte_queue_t *q, uint8_t b)
{
	if (q->len == q->size) { /* full: drop the oldest byte, like a wire nobody listens to */
		q->head = (q->head + 1) % q->size;
		q->len--;
	}
	q->data[(q->head + q->len) % q->size] = b;
	q->len++;
}

static uint8_t queue_pop(byte_queue_t *q)
{
	uint8_t b = q->data[q->head];
	q->head = (q->head + 1) % q->size;
	q->len--;
	return b;
}

typedef struct harness_t {
	avr_t *avr;
	int master_fd;
	int slave_fd; /* kept open so the master never sees EIO/HUP while no host has the port open */
	byte_queue_t rx; /* host -> AVR */
	byte_queue_t tx; /* AVR -> host */
	int uart_xoff;
	avr_irq_t *uart_in;
	avr_cycle_count_t cycles_per_byte;
	FILE *pins_file;
	char last_pins[128];
	int paced;
	uint64_t wall_start_us;
	uint64_t max_lag_us;
	uint64_t rx_bytes, tx_bytes;
} harness_t;

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t hang_requested;

static void on_stop_signal(int sig) { (void)sig; stop_requested = 1; }
static void on_hang_signal(int sig) { (void)sig; hang_requested = 1; }

static uint64_t monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t emulated_us(const harness_t *h)
{
	return (uint64_t)((h->avr->cycle * 1000000ull) / h->avr->frequency);
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("avr_pty_harness: error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

/* simavr's own messages go to stderr so stdout carries only our "PTY" line. */
static void log_to_stderr(avr_t *avr, const int level, const char *fmt, va_list ap)
{
	(void)avr;
	if (level <= LOG_WARNING)
		vfprintf(stderr, fmt, ap);
}

/* Pacing is ours: simavr's default sleep callback would usleep() on its own schedule. */
static void sleep_without_waiting(avr_t *avr, avr_cycle_count_t how_long)
{
	(void)avr;
	(void)how_long;
}

static void on_uart_output(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	harness_t *h = param;
	queue_push(&h->tx, (uint8_t)value);
	h->tx_bytes++;
}

static void on_uart_xoff(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	harness_t *h = param;
	h->uart_xoff = value != 0;
}

static void on_uart_xon(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)value;
	harness_t *h = param;
	h->uart_xoff = 0;
}

static void connect_uart(harness_t *h)
{
	uint32_t flags = 0;
	avr_ioctl(h->avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
	flags &= ~(uint32_t)(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
	avr_ioctl(h->avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);

	avr_irq_t *out = avr_io_getirq(h->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT);
	avr_irq_t *xon = avr_io_getirq(h->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON);
	avr_irq_t *xoff = avr_io_getirq(h->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF);
	if (!out || !xon || !xoff)
		die("the emulated MCU has no UART0 (is the firmware built for the atmega328p?)");
	h->uart_in = avr_io_getirq(h->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
	avr_irq_register_notify(out, on_uart_output, h);
	avr_irq_register_notify(xon, on_uart_xon, h);
	avr_irq_register_notify(xoff, on_uart_xoff, h);
}

static void open_pty(harness_t *h, const char *link_path)
{
	char slave_name[256];
	if (openpty(&h->master_fd, &h->slave_fd, slave_name, NULL, NULL) < 0)
		die("cannot create a pty: %s", strerror(errno));
	struct termios tio;
	tcgetattr(h->slave_fd, &tio);
	cfmakeraw(&tio);
	tcsetattr(h->slave_fd, TCSANOW, &tio);
	fcntl(h->master_fd, F_SETFL, fcntl(h->master_fd, F_GETFL) | O_NONBLOCK);
	if (link_path) {
		unlink(link_path);
		if (symlink(slave_name, link_path) != 0)
			die("cannot create the link %s -> %s: %s", link_path, slave_name, strerror(errno));
	}
	printf("PTY %s\n", slave_name);
	fflush(stdout);
	/* From here on stdout carries nothing: a parent that stops reading it must never block us. */
	dup2(STDERR_FILENO, STDOUT_FILENO);
}

/* Feeds one received byte into the UART per byte-time, from inside avr_run() at the exact emulated
 * cycle (a simavr cycle timer), so a sleeping firmware still receives bytes at the wire rate. */
static avr_cycle_count_t feed_uart(struct avr_t *avr, avr_cycle_count_t when, void *param)
{
	harness_t *h = param;
	if (h->rx.len == 0)
		return 0;
	if (!h->uart_xoff) {
		avr_raise_irq(h->uart_in, queue_pop(&h->rx));
		h->rx_bytes++;
	}
	(void)avr;
	return h->rx.len > 0 ? when + h->cycles_per_byte : 0;
}

/* Host -> AVR: take what the host wrote and let feed_uart() deliver it at the wire rate. */
static void service_rx(harness_t *h)
{
	uint8_t buf[512];
	size_t room = h->rx.size - h->rx.len;
	while (room > 0) {
		ssize_t n = read(h->master_fd, buf, room < sizeof(buf) ? room : sizeof(buf));
		if (n <= 0)
			break; /* EAGAIN: nothing more for now */
		for (ssize_t i = 0; i < n; i++)
			queue_push(&h->rx, buf[i]);
		room -= (size_t)n;
	}
	if (h->rx.len > 0 && avr_cycle_timer_status(h->avr, feed_uart, h) == 0)
		avr_cycle_timer_register(h->avr, h->cycles_per_byte, feed_uart, h);
}

/* AVR -> host. A full pty (nobody reading) keeps the bytes until the queue overflows. */
static void service_tx(harness_t *h)
{
	uint8_t buf[512];
	while (h->tx.len > 0) {
		size_t n = 0;
		size_t head = h->tx.head;
		while (n < sizeof(buf) && n < h->tx.len) {
			buf[n++] = h->tx.data[head];
			head = (head + 1) % h->tx.size;
		}
		ssize_t written = write(h->master_fd, buf, n);
		if (written <= 0)
			return;
		h->tx.head = (h->tx.head + (size_t)written) % h->tx.size;
		h->tx.len -= (size_t)written;
	}
}

static unsigned effective_pwm(const avr_t *avr, unsigned com_shift, unsigned ocr_reg, unsigned port_reg,
		unsigned bit)
{
	unsigned com = (avr->data[REG_TCCR0A] >> com_shift) & 3u;
	if (com == 2u) /* non-inverting fast PWM: duty = OCR/255 (OCR 255 = always high) */
		return avr->data[ocr_reg];
	return ((avr->data[port_reg] >> bit) & 1u) ? 255u : 0u;
}

static void service_pins(harness_t *h, uint64_t wall_us)
{
	if (!h->pins_file)
		return;
	const avr_t *avr = h->avr;
	char line[128];
	/* board.h: left PWM OC0A=PD6, AIN1=PD7, AIN2=PB0; right PWM OC0B=PD5, BIN1=PD4, BIN2=PB4; STBY=PB2 */
	snprintf(line, sizeof(line), "L %u %u %u R %u %u %u STBY %u",
			effective_pwm(avr, 6, REG_OCR0A, REG_PORTD, 6), PIN_BIT(REG_PORTD, 7), PIN_BIT(REG_PORTB, 0),
			effective_pwm(avr, 4, REG_OCR0B, REG_PORTD, 5), PIN_BIT(REG_PORTD, 4), PIN_BIT(REG_PORTB, 4),
			PIN_BIT(REG_PORTB, 2));
	if (strcmp(line, h->last_pins) == 0)
		return;
	strcpy(h->last_pins, line);
	fprintf(h->pins_file, "%llu %llu %s\n", (unsigned long long)emulated_us(h),
			(unsigned long long)(wall_us - h->wall_start_us), line);
	fflush(h->pins_file);
}

/* Waits until wall time catches up with emulated time, waking early when the host writes.
 * Returns whether the pty has bytes to read. */
static int pace(harness_t *h, uint64_t wall_us)
{
	uint64_t wall_elapsed = wall_us - h->wall_start_us;
	uint64_t emu = emulated_us(h);
	uint64_t wait_us = 0;
	if (h->paced && emu > wall_elapsed + PACE_SLACK_US) {
		wait_us = emu - wall_elapsed;
	} else if (h->paced && wall_elapsed > emu + LAG_REPORT_US) {
		uint64_t lag = wall_elapsed - emu;
		if (lag > h->max_lag_us * 2 + LAG_REPORT_US)
			fprintf(stderr, "avr_pty_harness: emulation %llu ms behind wall time\n",
					(unsigned long long)(lag / 1000u));
		if (lag > h->max_lag_us)
			h->max_lag_us = lag;
	}
	struct timespec timeout = { (time_t)(wait_us / 1000000u), (long)(wait_us % 1000000u) * 1000L };
	struct pollfd pfd = { .fd = h->master_fd, .events = POLLIN };
	if (h->tx.len > 0)
		pfd.events |= POLLOUT;
	if (ppoll(&pfd, 1, &timeout, NULL) <= 0)
		return 0;
	return (pfd.revents & POLLIN) != 0;
}

static void usage(void)
{
	fputs("usage: avr_pty_harness FIRMWARE.elf [--freq HZ] [--baud N] [--pins FILE] [--link PATH] "
			"[--free-run]\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *elf_path = NULL, *pins_path = NULL, *link_path = NULL;
	unsigned long freq = 16000000ul, baud = 115200ul;
	int paced = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--freq") && i + 1 < argc)
			freq = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--baud") && i + 1 < argc)
			baud = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--pins") && i + 1 < argc)
			pins_path = argv[++i];
		else if (!strcmp(argv[i], "--link") && i + 1 < argc)
			link_path = argv[++i];
		else if (!strcmp(argv[i], "--free-run"))
			paced = 0;
		else if (argv[i][0] == '-' || elf_path)
			usage();
		else
			elf_path = argv[i];
	}
	if (!elf_path || freq == 0 || baud == 0)
		usage();

	avr_global_logger_set(log_to_stderr);
	elf_firmware_t fw;
	memset(&fw, 0, sizeof(fw));
	if (access(elf_path, R_OK) != 0)
		die("cannot read firmware %s: %s (build it with `make -C firmware_bridge/firmware`)", elf_path,
				strerror(errno));
	if (elf_read_firmware(elf_path, &fw) != 0)
		die("%s is not an AVR ELF file simavr can load", elf_path);
	strcpy(fw.mmcu, "atmega328p");
	fw.frequency = (uint32_t)freq;

	static harness_t h;
	uint8_t rx_storage[RX_BUFFER_SIZE], tx_storage[TX_BUFFER_SIZE];
	h.rx = (byte_queue_t){ rx_storage, sizeof(rx_storage), 0, 0 };
	h.tx = (byte_queue_t){ tx_storage, sizeof(tx_storage), 0, 0 };
	h.paced = paced;
	h.avr = avr_make_mcu_by_name(fw.mmcu);
	if (!h.avr)
		die("simavr does not know the %s", fw.mmcu);
	avr_init(h.avr);
	avr_load_firmware(h.avr, &fw);
	h.avr->sleep = sleep_without_waiting;
	h.avr->log = LOG_WARNING;
	/* 1 start + 8 data + 1 stop bits per byte on the wire */
	h.cycles_per_byte = (avr_cycle_count_t)((10ull * freq) / baud);
	const avr_cycle_count_t slice_cycles = (avr_cycle_count_t)((uint64_t)freq * SLICE_US / 1000000u);

	if (pins_path && !(h.pins_file = fopen(pins_path, "a")))
		die("cannot open the pin trace file %s: %s", pins_path, strerror(errno));
	connect_uart(&h);
	open_pty(&h, link_path);

	struct sigaction sa = { 0 };
	sa.sa_handler = on_stop_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hang_signal;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	h.wall_start_us = monotonic_us();
	int state = cpu_Running;
	while (!stop_requested && state != cpu_Done && state != cpu_Crashed) {
		avr_cycle_count_t slice_end = h.avr->cycle + slice_cycles;
		while (h.avr->cycle < slice_end && state != cpu_Done && state != cpu_Crashed)
			state = avr_run(h.avr);
		if (hang_requested) {
			hang_requested = 0;
			h.avr->data[REG_GPIOR0] = GPIOR0_HANG_MAGIC;
			fputs("avr_pty_harness: hang injected (GPIOR0)\n", stderr);
		}
		uint64_t now = monotonic_us();
		service_tx(&h);
		service_pins(&h, now);
		if (pace(&h, now))
			service_rx(&h);
	}
	service_tx(&h);
	fprintf(stderr, "avr_pty_harness: stopped (state %d) after %.3f s emulated; rx %llu tx %llu bytes; "
			"LAG max_ms=%.1f\n", state, (double)emulated_us(&h) / 1e6, (unsigned long long)h.rx_bytes,
			(unsigned long long)h.tx_bytes, (double)h.max_lag_us / 1000.0);
	if (link_path)
		unlink(link_path);
	return state == cpu_Crashed ? 1 : 0;
}
