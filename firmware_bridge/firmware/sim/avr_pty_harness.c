/*
 * avr_pty_harness: run an ATmega328P firmware ELF in simavr and expose its UART0 as a pty.
 *
 *   avr_pty_harness FIRMWARE.elf [--freq HZ] [--baud N] [--pins FILE] [--link PATH] [--free-run]
 *                                [--control]
 *
 * On start it prints one line to stdout, "PTY <slave path>", then serves until SIGTERM/SIGINT.
 * A host program opens that path (or the --link symlink) like a serial port: pyserial, picocom, ...
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
 * UART_IRQ_OUT_XOFF); received bytes enter the UART from a simavr cycle timer, one per byte-time of
 * the baud rate (10 bits per byte), so even a sleeping firmware receives at the real wire rate.
 *
 * Emulated time versus wall time: simavr runs the core as fast as the host CPU allows, and skips
 * whole sleep periods at once. The firmware's timing (1 kHz tick, 250 ms command watchdog, 120 ms
 * AVR hardware watchdog) counts emulated cycles. To make those real-time, this harness paces the
 * emulated clock to the wall clock: whenever emulated time is more than 0.5 ms ahead of wall time it
 * blocks in ppoll() on the pty (waking early when the host writes) until wall time catches up. When
 * the machine is too slow, emulated time falls behind; the harness never skips cycles (that would
 * break the firmware), it counts the lag, warns on stderr past 20 ms, and reports the worst lag on
 * exit ("LAG max_ms=..."). --free-run turns pacing off.
 *
 * --pins FILE appends a line each time the motor driver pins or the firmware state change, read
 * straight from the emulated I/O registers (not from what the firmware reports over the UART):
 *   "<emulated_us> <wall_us> L <duty> <in1> <in2> R <duty> <in1> <in2> STBY <s> S <state>"
 * duty is the effective PWM duty in 1/10000 (0 when the output compare pin is disconnected and low,
 * 10000 when disconnected and high). state is the firmware's protocol state, which it mirrors into GPIOR1.
 *
 * --control reads commands from stdin, one per line, each answered by "OK ..." or "ERR ..." on stdout:
 *   faults DROP_RX CORRUPT_RX DROP_TX CORRUPT_TX MUTE SEED   per-byte probabilities on the wire;
 *                                                           MUTE 1 drops every byte to the host
 *   vanish                 close the pty and remove the --link path (an unplugged USB adapter)
 *   reappear REBOOT        a new pty at the --link path; REBOOT 1 also resets the MCU (power cycle)
 *   hang                   as SIGUSR1, below; answers "OK hang <emulated_us>"
 *   time                   answers "OK time <emulated_us>" (since the last reset: tests assert in it)
 *   ping                   answers OK
 * Fault injection on the firmware itself: SIGUSR1 (or "hang") writes 0xA5 to GPIOR0, which the
 * firmware treats as "hang the main loop now" (see src/main.c), so a test can prove that the AVR
 * hardware watchdog resets a hung firmware into STOP. Nothing on a real board writes GPIOR0.
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
	REG_PORTB = 0x25,
	REG_PORTD = 0x2B,
	REG_GPIOR0 = 0x3E,
	REG_GPIOR1 = 0x4A,
	REG_TCCR1A = 0x80,
	REG_ICR1L = 0x86,
	REG_OCR1AL = 0x88,
	REG_OCR1BL = 0x8A,
};
#define DUTY_SCALE 10000u /* duty reported in hundredths of a percent */
#define GPIOR0_HANG_MAGIC 0xA5

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

/* What happens to bytes on the emulated wire (probabilities per byte, seeded). */
typedef struct wire_faults_t {
	double drop_rx, corrupt_rx, drop_tx, corrupt_tx;
	int mute;
	uint64_t rng;
} wire_faults_t;

typedef struct harness_t {
	avr_t *avr;
	int master_fd; /* -1 while vanished */
	int slave_fd;  /* kept open so the master never sees EIO/HUP while no host has the port open */
	const char *link_path;
	byte_queue_t rx; /* host -> AVR */
	byte_queue_t tx; /* AVR -> host */
	int uart_xoff;
	avr_irq_t *uart_in;
	avr_cycle_count_t cycles_per_byte;
	avr_cycle_count_t last_tx_cycle;
	int tx_blocked; /* the pty was full at the last write: wait for POLLOUT */
	wire_faults_t faults;
	FILE *pins_file;
	char last_pins[160];
	int paced;
	int control;
	FILE *control_out;
	char control_line[256];
	size_t control_len;
	uint64_t wall_start_us;   /* wall time at which emulated time was 0 */
	avr_cycle_count_t last_cycle;
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

/* xorshift64*: a small seeded generator for the wire faults. */
static double next_random(wire_faults_t *f)
{
	f->rng ^= f->rng >> 12;
	f->rng ^= f->rng << 25;
	f->rng ^= f->rng >> 27;
	return (double)((f->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* Applies drop/corrupt to one byte; returns -1 when the byte is lost. */
static int wire_byte(wire_faults_t *f, uint8_t byte, double drop, double corrupt)
{
	if (drop > 0.0 && next_random(f) < drop)
		return -1;
	if (corrupt > 0.0 && next_random(f) < corrupt)
		byte ^= (uint8_t)(1u << (unsigned)(next_random(f) * 8.0));
	return byte;
}

/* simavr's own messages go to stderr so stdout carries only our lines. */
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
	h->tx_bytes++;
	h->last_tx_cycle = h->avr->cycle;
	if (h->faults.mute || h->master_fd < 0)
		return;
	int byte = wire_byte(&h->faults, (uint8_t)value, h->faults.drop_tx, h->faults.corrupt_tx);
	if (byte >= 0)
		queue_push(&h->tx, (uint8_t)byte);
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
	h->uart_in = avr_io_getirq(h->avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
	if (!out || !xon || !xoff || !h->uart_in)
		die("the emulated MCU has no UART0 (is the firmware built for the atmega328p?)");
	avr_irq_register_notify(out, on_uart_output, h);
	avr_irq_register_notify(xon, on_uart_xon, h);
	avr_irq_register_notify(xoff, on_uart_xoff, h);
}

/* A new pty; with --link the path is re-pointed atomically, so it never names a dead pty. */
static int open_pty(harness_t *h, char *slave_name, size_t name_size)
{
	char name[256];
	if (openpty(&h->master_fd, &h->slave_fd, name, NULL, NULL) < 0) {
		fprintf(stderr, "avr_pty_harness: cannot create a pty: %s\n", strerror(errno));
		h->master_fd = h->slave_fd = -1;
		return -1;
	}
	struct termios tio;
	tcgetattr(h->slave_fd, &tio);
	cfmakeraw(&tio);
	tcsetattr(h->slave_fd, TCSANOW, &tio);
	fcntl(h->master_fd, F_SETFL, fcntl(h->master_fd, F_GETFL) | O_NONBLOCK);
	if (h->link_path) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.new", h->link_path);
		unlink(tmp);
		if (symlink(name, tmp) != 0 || rename(tmp, h->link_path) != 0) {
			fprintf(stderr, "avr_pty_harness: cannot link %s -> %s: %s\n", h->link_path, name, strerror(errno));
			return -1;
		}
	}
	snprintf(slave_name, name_size, "%s", name);
	return 0;
}

static void close_pty(harness_t *h)
{
	if (h->master_fd >= 0)
		close(h->master_fd);
	if (h->slave_fd >= 0)
		close(h->slave_fd);
	h->master_fd = h->slave_fd = -1;
	h->rx.len = 0;
	h->tx.len = 0;
	if (h->link_path)
		unlink(h->link_path);
}

/* Feeds one received byte into the UART per byte-time, from inside avr_run() at the exact emulated
 * cycle (a simavr cycle timer), so a sleeping firmware still receives bytes at the wire rate. */
static avr_cycle_count_t feed_uart(struct avr_t *avr, avr_cycle_count_t when, void *param)
{
	harness_t *h = param;
	(void)avr;
	if (h->rx.len == 0)
		return 0;
	if (!h->uart_xoff) {
		avr_raise_irq(h->uart_in, queue_pop(&h->rx));
		h->rx_bytes++;
	}
	return h->rx.len > 0 ? when + h->cycles_per_byte : 0;
}

/* Host -> AVR: take what the host wrote and let feed_uart() deliver it at the wire rate. */
static void service_rx(harness_t *h)
{
	uint8_t buf[512];
	if (h->master_fd < 0)
		return;
	size_t room = h->rx.size - h->rx.len;
	while (room > 0) {
		ssize_t n = read(h->master_fd, buf, room < sizeof(buf) ? room : sizeof(buf));
		if (n <= 0)
			break; /* EAGAIN: nothing more for now */
		for (ssize_t i = 0; i < n; i++) {
			int byte = wire_byte(&h->faults, buf[i], h->faults.drop_rx, h->faults.corrupt_rx);
			if (byte >= 0)
				queue_push(&h->rx, (uint8_t)byte);
		}
		room = h->rx.size - h->rx.len;
	}
	if (h->rx.len > 0 && avr_cycle_timer_status(h->avr, feed_uart, h) == 0)
		avr_cycle_timer_register(h->avr, h->cycles_per_byte, feed_uart, h);
}

/* AVR -> host, written when the UART has been idle for three byte-times (or 64 bytes are waiting): a
 * frame reaches the pty in one write. Written byte by byte as the emulated UART sends them, a frame could
 * be split by the harness being descheduled for longer than the host's 20 ms gap timeout on a loaded
 * machine, which a real wire never does. A full pty (nobody reading) keeps the bytes until the queue
 * overflows. */
static void service_tx(harness_t *h, int force)
{
	uint8_t buf[512];
	if (!force && h->tx.len < 64u && h->avr->cycle - h->last_tx_cycle < 3u * h->cycles_per_byte)
		return;
	while (h->tx.len > 0 && h->master_fd >= 0) {
		size_t n = 0;
		size_t head = h->tx.head;
		while (n < sizeof(buf) && n < h->tx.len) {
			buf[n++] = h->tx.data[head];
			head = (head + 1) % h->tx.size;
		}
		ssize_t written = write(h->master_fd, buf, n);
		if (getenv("AVR_HARNESS_TRACE_TX"))
			fprintf(stderr, "tx %llu %llu %zd %02x %02x %02x %02x\n", (unsigned long long)monotonic_us(),
					(unsigned long long)emulated_us(h), written, buf[0], n > 1 ? buf[1] : 0, n > 2 ? buf[2] : 0,
					n > 3 ? buf[3] : 0);
		h->tx_blocked = written <= 0;
		if (written <= 0)
			return;
		h->tx.head = (h->tx.head + (size_t)written) % h->tx.size;
		h->tx.len -= (size_t)written;
	}
}

static unsigned reg16(const avr_t *avr, unsigned low)
{
	return (unsigned)avr->data[low] | ((unsigned)avr->data[low + 1u] << 8);
}

/* Timer1 fast PWM (TOP = ICR1): duty = OCR1x / (ICR1 + 1) while the compare output is connected
 * (non-inverting); otherwise the pin is a plain output at its PORT level. */
static unsigned effective_duty(const avr_t *avr, unsigned com_shift, unsigned ocr_low, unsigned port_reg,
		unsigned bit)
{
	unsigned com = (avr->data[REG_TCCR1A] >> com_shift) & 3u;
	if (com == 2u) {
		unsigned top = reg16(avr, REG_ICR1L) + 1u;
		unsigned ocr = reg16(avr, ocr_low);
		return ocr >= top ? DUTY_SCALE : (ocr * DUTY_SCALE + top / 2u) / top;
	}
	return ((avr->data[port_reg] >> bit) & 1u) ? DUTY_SCALE : 0u;
}

#define PIN_BIT(reg, bit) ((unsigned)((avr->data[(reg)] >> (bit)) & 1u))

/* Pins as wired in src/board.h: left PWM OC1A=PB1, AIN1=PD7, AIN2=PB0; right PWM OC1B=PB2,
 * BIN1=PD4, BIN2=PB4; STBY=PD6. The firmware mirrors its protocol state into GPIOR1. */
static void service_pins(harness_t *h, uint64_t wall_us)
{
	if (!h->pins_file)
		return;
	const avr_t *avr = h->avr;
	char line[160];
	snprintf(line, sizeof(line), "L %u %u %u R %u %u %u STBY %u S %u",
			effective_duty(avr, 6, REG_OCR1AL, REG_PORTB, 1), PIN_BIT(REG_PORTD, 7), PIN_BIT(REG_PORTB, 0),
			effective_duty(avr, 4, REG_OCR1BL, REG_PORTB, 2), PIN_BIT(REG_PORTD, 4), PIN_BIT(REG_PORTB, 4),
			PIN_BIT(REG_PORTD, 6), (unsigned)avr->data[REG_GPIOR1]);
	if (strcmp(line, h->last_pins) == 0)
		return;
	strcpy(h->last_pins, line);
	fprintf(h->pins_file, "%llu %llu %s\n", (unsigned long long)emulated_us(h),
			(unsigned long long)(wall_us - h->wall_start_us), line);
	fflush(h->pins_file);
}

static void inject_hang(harness_t *h)
{
	h->avr->data[REG_GPIOR0] = GPIOR0_HANG_MAGIC;
	fputs("avr_pty_harness: hang injected (GPIOR0)\n", stderr);
}

static void reply(harness_t *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(h->control_out, fmt, ap);
	va_end(ap);
	fputc('\n', h->control_out);
	fflush(h->control_out);
}

static void run_command(harness_t *h, char *line)
{
	char name[32] = "";
	sscanf(line, "%31s", name);
	if (strcmp(name, "ping") == 0) {
		reply(h, "OK ping");
	} else if (strcmp(name, "faults") == 0) {
		wire_faults_t f = { 0 };
		unsigned long long seed = 0;
		if (sscanf(line, "faults %lf %lf %lf %lf %d %llu", &f.drop_rx, &f.corrupt_rx, &f.drop_tx, &f.corrupt_tx,
				&f.mute, &seed) != 6) {
			reply(h, "ERR usage: faults DROP_RX CORRUPT_RX DROP_TX CORRUPT_TX MUTE SEED");
			return;
		}
		f.rng = seed * 0x9E3779B97F4A7C15ull + 1u;
		h->faults = f;
		reply(h, "OK faults");
	} else if (strcmp(name, "vanish") == 0) {
		close_pty(h);
		reply(h, "OK vanish");
	} else if (strcmp(name, "reappear") == 0) {
		int reboot = 1;
		sscanf(line, "reappear %d", &reboot);
		if (h->master_fd < 0) {
			if (reboot) {
				avr_reset(h->avr);
				service_pins(h, monotonic_us()); /* the trace shows the reset before we answer */
				fputs("avr_pty_harness: MCU reset (power cycle)\n", stderr);
			}
			char name_buf[256];
			if (open_pty(h, name_buf, sizeof(name_buf)) != 0) {
				reply(h, "ERR cannot create a pty");
				return;
			}
			reply(h, "OK reappear %s", name_buf);
		} else {
			reply(h, "OK reappear (still there)");
		}
	} else if (strcmp(name, "time") == 0) {
		reply(h, "OK time %llu", (unsigned long long)emulated_us(h));
	} else if (strcmp(name, "hang") == 0) {
		inject_hang(h);
		reply(h, "OK hang %llu", (unsigned long long)emulated_us(h));
	} else {
		reply(h, "ERR unknown command '%s'", name);
	}
}

static void service_control(harness_t *h)
{
	char buf[256];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
	if (n == 0) { /* the parent closed our stdin: it is gone, so are we */
		stop_requested = 1;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			h->control_line[h->control_len] = '\0';
			run_command(h, h->control_line);
			h->control_len = 0;
		} else if (h->control_len + 1 < sizeof(h->control_line)) {
			h->control_line[h->control_len++] = buf[i];
		}
	}
}

/* Waits until wall time catches up with emulated time, waking early for host bytes or commands. */
static void pace_and_poll(harness_t *h, uint64_t wall_us)
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
	struct pollfd pfd[2] = {
		{ .fd = h->master_fd, .events = (short)(POLLIN | (h->tx_blocked ? POLLOUT : 0)) },
		{ .fd = h->control ? STDIN_FILENO : -1, .events = POLLIN },
	};
	if (ppoll(pfd, 2, &timeout, NULL) <= 0)
		return;
	if (pfd[0].revents & POLLIN)
		service_rx(h);
	if (pfd[1].revents & (POLLIN | POLLHUP))
		service_control(h);
}

static void usage(void)
{
	fputs("usage: avr_pty_harness FIRMWARE.elf [--freq HZ] [--baud N] [--pins FILE] [--link PATH] "
			"[--free-run] [--control]\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *elf_path = NULL, *pins_path = NULL;
	static harness_t h;
	unsigned long freq = 16000000ul, baud = 115200ul;
	h.paced = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--freq") && i + 1 < argc)
			freq = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--baud") && i + 1 < argc)
			baud = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--pins") && i + 1 < argc)
			pins_path = argv[++i];
		else if (!strcmp(argv[i], "--link") && i + 1 < argc)
			h.link_path = argv[++i];
		else if (!strcmp(argv[i], "--free-run"))
			h.paced = 0;
		else if (!strcmp(argv[i], "--control"))
			h.control = 1;
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

	static uint8_t rx_storage[RX_BUFFER_SIZE], tx_storage[TX_BUFFER_SIZE];
	h.rx = (byte_queue_t){ rx_storage, sizeof(rx_storage), 0, 0 };
	h.tx = (byte_queue_t){ tx_storage, sizeof(tx_storage), 0, 0 };
	h.master_fd = h.slave_fd = -1;
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
	char slave_name[256];
	if (open_pty(&h, slave_name, sizeof(slave_name)) != 0)
		die("cannot create the pty");
	/* stdout keeps only our lines (the PTY line, control answers); simavr's chatter goes to stderr, so a
	 * parent that stops reading stdout never blocks us */
	int out_fd = dup(STDOUT_FILENO);
	dup2(STDERR_FILENO, STDOUT_FILENO);
	h.control_out = fdopen(out_fd, "w");
	if (!h.control_out)
		die("cannot reopen stdout: %s", strerror(errno));
	if (h.control)
		fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	reply(&h, "PTY %s", slave_name);

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
		uint64_t now = monotonic_us();
		if (h.avr->cycle < h.last_cycle) /* a reset restarted the cycle counter: keep pacing continuous */
			h.wall_start_us = now - emulated_us(&h);
		h.last_cycle = h.avr->cycle;
		if (hang_requested) {
			hang_requested = 0;
			inject_hang(&h);
		}
		service_pins(&h, now); /* before the replies go out: the trace is never behind the ACKs */
		service_tx(&h, 0);
		pace_and_poll(&h, now);
	}
	service_tx(&h, 1);
	fprintf(stderr, "avr_pty_harness: stopped (state %d) after %.3f s emulated; rx %llu tx %llu bytes; "
			"LAG max_ms=%.1f\n", state, (double)emulated_us(&h) / 1e6, (unsigned long long)h.rx_bytes,
			(unsigned long long)h.tx_bytes, (double)h.max_lag_us / 1000.0);
	if (h.link_path)
		unlink(h.link_path);
	return state == cpu_Crashed ? 1 : 0;
}
