/*
 * Host-side test of the firmware's protocol code (src/protocol.c, src/controller.c) against
 * firmware_bridge/test_vectors.json, converted to tab-separated lines by vectors_to_text.py:
 *
 *   python3 host/vectors_to_text.py ../test_vectors.json | build/host/vector_runner
 *
 * Prints one TAP line per vector ("ok N - ..." / "not ok N - ...: why") and exits 1 if any failed.
 * Built with gcc -fsanitize=address,undefined, so an out-of-bounds access in the receiver fails too.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"
#include "protocol.h"

#define MAX_BYTES 4096
#define MAX_EVENTS 256
#define MAX_FIELDS 16

static int test_number;
static int failures;
static char failure_reason[512];

static bool fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failure_reason, sizeof(failure_reason), fmt, ap);
	va_end(ap);
	return false;
}

static void report(const char *kind, const char *name, bool passed)
{
	test_number++;
	if (passed) {
		printf("ok %d - %s: %s\n", test_number, kind, name);
	} else {
		failures++;
		printf("not ok %d - %s: %s: %s\n", test_number, kind, name, failure_reason);
	}
}

/* ----------------------------------------------------------------------------------- parsing helpers */

static size_t parse_hex(const char *hex, uint8_t *out, size_t cap)
{
	if (strcmp(hex, "-") == 0)
		return 0;
	size_t n = strlen(hex) / 2;
	if (n > cap) {
		fprintf(stderr, "vector_runner: %zu bytes of hex exceed %zu\n", n, cap);
		exit(2);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			fprintf(stderr, "vector_runner: bad hex %s\n", hex);
			exit(2);
		}
		out[i] = (uint8_t)v;
	}
	return n;
}

static size_t parse_ints(const char *list, long *out, size_t cap)
{
	size_t n = 0;
	if (strcmp(list, "-") == 0)
		return 0;
	const char *p = list;
	while (*p && n < cap) {
		char *end;
		out[n++] = strtol(p, &end, 10);
		p = (*end == ',') ? end + 1 : end;
		if (end == p && *end != '\0')
			break;
	}
	return n;
}

static bool is_host_to_mcu(const char *direction)
{
	return strcmp(direction, "host_to_mcu") == 0;
}

/* Wire layout of each payload (PROTOCOL.md §5), struct-module style: B u8, h i16, H u16, I u32. */
static const char *layout_of(uint8_t type)
{
	switch (type) {
	case MSG_HELLO: return "B";
	case MSG_DRIVE: return "h";
	case MSG_VERSION: return "BBBBHhh";
	case MSG_ACK: return "BBBBhhHH";
	case MSG_FAULT: return "BBBH";
	case MSG_STATUS: return "BhhHHHHHHHHI";
	default: return "";
	}
}

static size_t pack_fields(uint8_t type, const long *fields, size_t count, uint8_t *out)
{
	const char *layout = layout_of(type);
	size_t pos = 0;
	for (size_t i = 0; layout[i] && i < count; i++) {
		switch (layout[i]) {
		case 'B': out[pos++] = (uint8_t)fields[i]; break;
		case 'h':
		case 'H': put_u16(out + pos, (uint16_t)fields[i]); pos += 2; break;
		case 'I': put_u32(out + pos, (uint32_t)fields[i]); pos += 4; break;
		}
	}
	return pos;
}

static size_t unpack_fields(uint8_t type, const uint8_t *payload, long *out)
{
	const char *layout = layout_of(type);
	size_t pos = 0, n = 0;
	for (; layout[n]; n++) {
		switch (layout[n]) {
		case 'B': out[n] = payload[pos]; pos += 1; break;
		case 'h': out[n] = (int16_t)get_u16(payload + pos); pos += 2; break;
		case 'H': out[n] = get_u16(payload + pos); pos += 2; break;
		case 'I': out[n] = (long)(get_u16(payload + pos) | ((uint32_t)get_u16(payload + pos + 2) << 16)); pos += 4; break;
		}
	}
	return n;
}

/* ------------------------------------------------------------------------------ receiver recording */

typedef struct {
	bool is_frame;
	uint8_t type, seq, len;
	uint8_t payload[PROTO_MAX_PAYLOAD];
	reject_reason_t reason;
} rx_event_t;

typedef struct {
	proto_receiver_t rx;
	rx_event_t events[MAX_EVENTS];
	size_t count;
} recorder_t;

static void record_frame(void *owner, const proto_frame_t *f)
{
	recorder_t *r = owner;
	if (r->count == MAX_EVENTS)
		return;
	rx_event_t *e = &r->events[r->count++];
	e->is_frame = true;
	e->type = f->type;
	e->seq = f->seq;
	e->len = f->len;
	memcpy(e->payload, f->payload, f->len);
}

static void record_reject(void *owner, reject_reason_t reason, uint8_t detail)
{
	(void)detail;
	recorder_t *r = owner;
	if (r->count == MAX_EVENTS)
		return;
	rx_event_t *e = &r->events[r->count++];
	e->is_frame = false;
	e->reason = reason;
}

static void recorder_init(recorder_t *r, const char *direction)
{
	memset(r, 0, sizeof(*r));
	proto_receiver_init(&r->rx, is_host_to_mcu(direction) ? proto_mcu_payload_size : proto_host_payload_size,
			record_frame, record_reject, r);
}

static void feed_at(recorder_t *r, const uint8_t *data, size_t n, uint32_t t_ms)
{
	for (size_t i = 0; i < n; i++)
		proto_receiver_feed(&r->rx, data[i], t_ms);
}

/* Lets time run in 1 ms steps, as the firmware's tick does. */
static void run_clock(recorder_t *r, uint32_t *now, uint32_t until)
{
	while (*now < until) {
		(*now)++;
		proto_receiver_expire(&r->rx, *now);
	}
}

static const char *reason_name(reject_reason_t reason)
{
	switch (reason) {
	case REJECT_CRC_ERROR: return "crc_error";
	case REJECT_OVERSIZED: return "oversized";
	case REJECT_TRUNCATED: return "truncated";
	case REJECT_UNKNOWN_TYPE: return "unknown_type";
	case REJECT_BAD_LENGTH: return "bad_length";
	}
	return "?";
}

/* ----------------------------------------------------------------------------------------- checks */

static bool check_crc(char **f, bool *skipped)
{
	(void)skipped;
	uint8_t input[MAX_BYTES];
	size_t n = parse_hex(f[2], input, sizeof(input));
	uint16_t got = crc16_ccitt_false(input, (uint8_t)n);
	long want = strtol(f[3], NULL, 10);
	return got == want ? true : fail("crc 0x%04X, want 0x%04lX", got, want);
}

static bool fields_equal(uint8_t type, const uint8_t *payload, const char *want_list)
{
	long want[MAX_FIELDS], got[MAX_FIELDS];
	size_t nw = parse_ints(want_list, want, MAX_FIELDS);
	size_t ng = unpack_fields(type, payload, got);
	if (nw != ng)
		return fail("type 0x%02X has %zu fields, the vector %zu", type, ng, nw);
	for (size_t i = 0; i < nw; i++)
		if (got[i] != want[i])
			return fail("type 0x%02X field %zu is %ld, want %ld", type, i, got[i], want[i]);
	return true;
}

/* frame NAME DIRECTION HEX TYPE SEQ FIELDS: decoding gives type/seq/fields, encoding gives the hex. */
static bool check_frame(char **f, bool *skipped)
{
	(void)skipped;
	uint8_t want[MAX_BYTES];
	size_t n = parse_hex(f[3], want, sizeof(want));
	uint8_t type = (uint8_t)strtol(f[4], NULL, 10);
	uint8_t seq = (uint8_t)strtol(f[5], NULL, 10);

	static recorder_t r;
	recorder_init(&r, f[2]);
	feed_at(&r, want, n, 0);
	if (r.count != 1 || !r.events[0].is_frame)
		return fail("decoding gave %zu events, first %s", r.count,
				r.count && !r.events[0].is_frame ? reason_name(r.events[0].reason) : "-");
	if (r.events[0].type != type || r.events[0].seq != seq)
		return fail("decoded type 0x%02X seq %u, want 0x%02X seq %u", r.events[0].type, r.events[0].seq, type,
				seq);
	if (!fields_equal(type, r.events[0].payload, f[6]))
		return false;

	long fields[MAX_FIELDS];
	size_t count = parse_ints(f[6], fields, MAX_FIELDS);
	uint8_t payload[PROTO_MAX_PAYLOAD], frame[PROTO_MAX_FRAME];
	size_t len = pack_fields(type, fields, count, payload);
	uint8_t size = proto_encode(type, seq, payload, (uint8_t)len, frame);
	if (size != n || memcmp(frame, want, n) != 0)
		return fail("encoding gave %u bytes that differ from the vector", size);
	return true;
}

/* invalid NAME DIRECTION REASON HEX: the receiver discards it for REASON and yields no frame. */
static bool check_invalid(char **f, bool *skipped)
{
	if (strcmp(f[3], "bad_value") == 0) { /* enum checks are the host's job (PROTOCOL.md §4) */
		*skipped = true;
		return true;
	}
	uint8_t data[MAX_BYTES];
	size_t n = parse_hex(f[4], data, sizeof(data));
	static recorder_t r;
	recorder_init(&r, f[2]);
	uint32_t now = 0;
	feed_at(&r, data, n, now);
	run_clock(&r, &now, 1000u); /* the line goes quiet: truncated candidates expire */
	if (r.count == 0)
		return fail("nothing was discarded");
	for (size_t i = 0; i < r.count; i++)
		if (r.events[i].is_frame)
			return fail("a frame of type 0x%02X was accepted", r.events[i].type);
	if (strcmp(reason_name(r.events[0].reason), f[3]) != 0)
		return fail("discarded as %s, want %s", reason_name(r.events[0].reason), f[3]);
	if (r.rx.len != 0)
		return fail("%u bytes left in the receive buffer", r.rx.len);
	return true;
}

/* stream NAME DIRECTION END_MS CHUNKS FRAMES COUNTERS */
static bool check_stream(char **f, bool *skipped)
{
	(void)skipped;
	static recorder_t r;
	recorder_init(&r, f[2]);
	uint32_t now = 0;
	char *save = NULL;
	for (char *chunk = strtok_r(f[4], " ", &save); chunk; chunk = strtok_r(NULL, " ", &save)) {
		uint32_t t = (uint32_t)strtoul(chunk, NULL, 10);
		uint8_t data[MAX_BYTES];
		size_t n = parse_hex(strchr(chunk, ':') + 1, data, sizeof(data));
		run_clock(&r, &now, t);
		feed_at(&r, data, n, now);
	}
	run_clock(&r, &now, (uint32_t)strtoul(f[3], NULL, 10));

	size_t got_frames = 0;
	for (size_t i = 0; i < r.count; i++)
		got_frames += r.events[i].is_frame;
	size_t want_frames = 0, k = 0;
	if (strcmp(f[5], "-") != 0) {
		for (char *fr = strtok_r(f[5], " ", &save); fr; fr = strtok_r(NULL, " ", &save), want_frames++) {
			while (k < r.count && !r.events[k].is_frame)
				k++;
			if (k == r.count)
				return fail("frame %zu missing", want_frames);
			char *type_s = fr, *seq_s = strchr(type_s, ':') + 1, *fields_s = strchr(seq_s, ':') + 1;
			uint8_t type = (uint8_t)strtol(type_s, NULL, 10);
			uint8_t seq = (uint8_t)strtol(seq_s, NULL, 10);
			if (r.events[k].type != type || r.events[k].seq != seq)
				return fail("frame %zu is type 0x%02X seq %u, want 0x%02X seq %u", want_frames, r.events[k].type,
						r.events[k].seq, type, seq);
			if (!fields_equal(type, r.events[k].payload, fields_s))
				return false;
			k++;
		}
	}
	if (got_frames != want_frames)
		return fail("%zu frames, want %zu", got_frames, want_frames);
	long want[6];
	parse_ints(f[6], want, 6);
	const proto_counters_t *c = &r.rx.counters;
	long got[6] = { c->garbage_bytes, c->crc_errors, c->oversized, c->truncated, c->unknown_type, c->bad_length };
	static const char *names[6] = { "garbage_bytes", "crc_errors", "oversized", "truncated", "unknown_type",
		"bad_length" };
	for (int i = 0; i < 6; i++)
		if (got[i] != want[i])
			return fail("%s %ld, want %ld", names[i], got[i], want[i]);
	return true;
}

/* ------------------------------------------------------------------------------------- scenarios */

typedef struct {
	uint32_t now;
	uint8_t sent[MAX_BYTES];
	size_t sent_len;
	uint32_t reply_t[MAX_EVENTS];
	size_t reply_start[MAX_EVENTS];
	size_t replies;
	int16_t left, right;
	unsigned motor_calls;
} fake_board_t;

static void board_send(void *ctx, const uint8_t *frame, uint8_t len)
{
	fake_board_t *b = ctx;
	if (b->sent_len + len > sizeof(b->sent) || b->replies == MAX_EVENTS)
		return;
	b->reply_t[b->replies] = b->now;
	b->reply_start[b->replies++] = b->sent_len;
	memcpy(b->sent + b->sent_len, frame, len);
	b->sent_len += len;
}

static void board_motors(void *ctx, int16_t left, int16_t right)
{
	fake_board_t *b = ctx;
	b->left = left;
	b->right = right;
	b->motor_calls++;
}

/* scenario NAME END_MS STEPS REPLIES FINAL: same clock as make_vectors.py: at every millisecond, first
 * the host bytes of that millisecond, then the periodic tick. */
static bool check_scenario(char **f, bool *skipped)
{
	(void)skipped;
	static fake_board_t b;
	static controller_t c;
	memset(&b, 0, sizeof(b));
	controller_io_t io = { board_send, board_motors, &b };
	controller_init(&c, &io, 0);

	uint32_t end = (uint32_t)strtoul(f[2], NULL, 10);
	char *save = NULL;
	char *step = strcmp(f[3], "-") ? strtok_r(f[3], " ", &save) : NULL;
	for (uint32_t t = 0; t <= end; t++) {
		b.now = t;
		while (step && strtoul(step, NULL, 10) == t) {
			uint8_t data[MAX_BYTES];
			size_t n = parse_hex(strchr(step, ':') + 1, data, sizeof(data));
			for (size_t i = 0; i < n; i++)
				controller_receive(&c, data[i], t);
			step = strtok_r(NULL, " ", &save);
		}
		controller_tick(&c, t);
	}
	if (step)
		return fail("step at %s ms lies after end_ms", step);

	size_t want_replies = 0;
	if (strcmp(f[4], "-") != 0) {
		for (char *rep = strtok_r(f[4], " ", &save); rep; rep = strtok_r(NULL, " ", &save), want_replies++) {
			uint32_t t = (uint32_t)strtoul(rep, NULL, 10);
			uint8_t want[MAX_BYTES];
			size_t n = parse_hex(strchr(rep, ':') + 1, want, sizeof(want));
			if (want_replies >= b.replies)
				return fail("reply %zu missing", want_replies);
			size_t start = b.reply_start[want_replies];
			size_t end_byte = want_replies + 1 < b.replies ? b.reply_start[want_replies + 1] : b.sent_len;
			if (end_byte - start != n || memcmp(b.sent + start, want, n) != 0) {
				char got_hex[2 * PROTO_MAX_FRAME + 1] = "";
				for (size_t i = 0; i < end_byte - start && i < PROTO_MAX_FRAME; i++)
					snprintf(got_hex + 2 * i, 3, "%02x", b.sent[start + i]);
				return fail("reply %zu (type 0x%02X at %u ms) is %s, the vector says %s", want_replies,
						b.sent[start + 2], b.reply_t[want_replies], got_hex, strchr(rep, ':') + 1);
			}
			if (b.reply_t[want_replies] != t)
				return fail("reply %zu sent at %u ms, want %u ms", want_replies, b.reply_t[want_replies], t);
		}
	}
	if (b.replies != want_replies)
		return fail("%zu replies, want %zu", b.replies, want_replies);
	long final[3];
	parse_ints(f[5], final, 3);
	if ((long)c.state != final[0] || b.left != final[1] || b.right != final[2])
		return fail("final state %d motors %d/%d, want %ld %ld/%ld", c.state, b.left, b.right, final[0],
				final[1], final[2]);
	if (c.motor != b.left || b.left != b.right)
		return fail("reported motor %d but the driver got %d/%d", c.motor, b.left, b.right);
	return true;
}

/* -------------------------------------------------------------------------------------------- main */

#define MAX_COLUMNS 8

typedef struct {
	const char *name;
	int columns;
	bool (*check)(char **fields, bool *skipped);
} record_kind_t;

static const record_kind_t KINDS[] = {
	{ "crc", 4, check_crc },
	{ "frame", 7, check_frame },
	{ "invalid", 5, check_invalid },
	{ "stream", 7, check_stream },
	{ "scenario", 6, check_scenario },
};

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	int skipped = 0;
	while (getline(&line, &cap, stdin) > 0) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		char *f[MAX_COLUMNS] = { 0 };
		int columns = 0;
		char *save = NULL;
		for (char *tok = strtok_r(line, "\t", &save); tok && columns < MAX_COLUMNS; tok = strtok_r(NULL, "\t", &save))
			f[columns++] = tok;
		const record_kind_t *kind = NULL;
		for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++)
			if (columns > 0 && strcmp(f[0], KINDS[i].name) == 0 && columns == KINDS[i].columns)
				kind = &KINDS[i];
		if (!kind) {
			fprintf(stderr, "vector_runner: malformed record starting %.40s (regenerate with vectors_to_text.py)\n",
					f[0] ? f[0] : "");
			free(line);
			return 2;
		}
		bool skip = false;
		bool passed = kind->check(f, &skip);
		if (skip) {
			test_number++;
			skipped++;
			printf("ok %d - %s: %s # SKIP host-side enum check\n", test_number, f[0], f[1]);
			continue;
		}
		report(f[0], f[1], passed);
	}
	free(line);
	printf("1..%d\n# %d passed, %d failed, %d skipped\n", test_number, test_number - failures - skipped, failures,
			skipped);
	return failures ? 1 : (test_number == 0 ? 2 : 0);
}
