#include "motor.h"

#include <avr/io.h>

#include "board.h"

#define FULL_SCALE 1000

static uint8_t duty_of(int16_t permille)
{
	uint16_t magnitude = (uint16_t)(permille < 0 ? -permille : permille);
	if (magnitude > FULL_SCALE)
		magnitude = FULL_SCALE;
	return (uint8_t)(((uint32_t)magnitude * 255u + FULL_SCALE / 2u) / FULL_SCALE);
}

/* Fast PWM with OCR0x = 0 still emits a one-cycle spike per period, so 0 % and 100 % disconnect the
 * compare output and drive the pin as a plain output instead. */
static void set_left_pwm(uint8_t duty)
{
	if (duty == 0u || duty == 255u) {
		TCCR0A &= (uint8_t)~(_BV(COM0A1) | _BV(COM0A0));
		if (duty)
			LEFT_PWM_PORT |= _BV(LEFT_PWM_BIT);
		else
			LEFT_PWM_PORT &= (uint8_t)~_BV(LEFT_PWM_BIT);
	} else {
		OCR0A = duty;
		TCCR0A |= _BV(COM0A1);
	}
}

static void set_right_pwm(uint8_t duty)
{
	if (duty == 0u || duty == 255u) {
		TCCR0A &= (uint8_t)~(_BV(COM0B1) | _BV(COM0B0));
		if (duty)
			RIGHT_PWM_PORT |= _BV(RIGHT_PWM_BIT);
		else
			RIGHT_PWM_PORT &= (uint8_t)~_BV(RIGHT_PWM_BIT);
	} else {
		OCR0B = duty;
		TCCR0A |= _BV(COM0B1);
	}
}

static void set_left_direction(uint8_t in1, uint8_t in2)
{
	if (in1)
		LEFT_IN1_PORT |= _BV(LEFT_IN1_BIT);
	else
		LEFT_IN1_PORT &= (uint8_t)~_BV(LEFT_IN1_BIT);
	if (in2)
		LEFT_IN2_PORT |= _BV(LEFT_IN2_BIT);
	else
		LEFT_IN2_PORT &= (uint8_t)~_BV(LEFT_IN2_BIT);
}

static void set_right_direction(uint8_t in1, uint8_t in2)
{
	if (in1)
		RIGHT_IN1_PORT |= _BV(RIGHT_IN1_BIT);
	else
		RIGHT_IN1_PORT &= (uint8_t)~_BV(RIGHT_IN1_BIT);
	if (in2)
		RIGHT_IN2_PORT |= _BV(RIGHT_IN2_BIT);
	else
		RIGHT_IN2_PORT &= (uint8_t)~_BV(RIGHT_IN2_BIT);
}

/* Brake = both inputs high with the enable fully on: short brake on the TB6612, fast stop on the L298N.
 * Forward = IN1 high, IN2 low; reverse = IN1 low, IN2 high; the PWM pin sets the duty. */
void motor_set(int16_t left_permille, int16_t right_permille)
{
	uint8_t left = duty_of(left_permille);
	uint8_t right = duty_of(right_permille);
	if (left == 0u) {
		set_left_direction(1u, 1u);
		set_left_pwm(255u);
	} else {
		set_left_direction(left_permille > 0, left_permille < 0);
		set_left_pwm(left);
	}
	if (right == 0u) {
		set_right_direction(1u, 1u);
		set_right_pwm(255u);
	} else {
		set_right_direction(right_permille > 0, right_permille < 0);
		set_right_pwm(right);
	}
}

void motor_init(void)
{
	/* brake levels first, then make the pins outputs, so no glitch drives a motor */
	set_left_direction(1u, 1u);
	set_right_direction(1u, 1u);
	LEFT_PWM_PORT |= _BV(LEFT_PWM_BIT);
	RIGHT_PWM_PORT |= _BV(RIGHT_PWM_BIT);
	STBY_PORT |= _BV(STBY_BIT);
	LEFT_PWM_DDR |= _BV(LEFT_PWM_BIT);
	RIGHT_PWM_DDR |= _BV(RIGHT_PWM_BIT);
	LEFT_IN1_DDR |= _BV(LEFT_IN1_BIT);
	LEFT_IN2_DDR |= _BV(LEFT_IN2_BIT);
	RIGHT_IN1_DDR |= _BV(RIGHT_IN1_BIT);
	RIGHT_IN2_DDR |= _BV(RIGHT_IN2_BIT);
	STBY_DDR |= _BV(STBY_BIT);
	TCCR0A = _BV(WGM01) | _BV(WGM00); /* fast PWM, TOP 0xFF, compare outputs connected per duty */
	TCCR0B = _BV(CS01);               /* prescaler 8: 16 MHz / 8 / 256 = 7.8 kHz */
	motor_set(0, 0);
}
