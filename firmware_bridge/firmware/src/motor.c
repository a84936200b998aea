#include "motor.h"

#include <avr/io.h>

#include "board.h"

#define FULL_SCALE 1000

#define DUTY_FULL (PWM_TOP + 1u) /* 2000 */

/* Compare value for a duty of |permille| / 1000: 2 x permille. */
static uint16_t duty_of(int16_t permille)
{
	uint16_t magnitude = (uint16_t)(permille < 0 ? -permille : permille);
	if (magnitude > FULL_SCALE)
		magnitude = FULL_SCALE;
	return (uint16_t)((uint32_t)magnitude * DUTY_FULL / FULL_SCALE);
}

/* Fast PWM with OCR1x = 0 still emits a one-cycle spike per period, so 0 % and 100 % disconnect the
 * compare output and drive the pin as a plain output instead. */
static void set_left_pwm(uint16_t duty)
{
	if (duty == 0u || duty >= DUTY_FULL) {
		TCCR1A &= (uint8_t)~(_BV(COM1A1) | _BV(COM1A0));
		if (duty)
			LEFT_PWM_PORT |= _BV(LEFT_PWM_BIT);
		else
			LEFT_PWM_PORT &= (uint8_t)~_BV(LEFT_PWM_BIT);
	} else {
		OCR1A = duty;
		TCCR1A |= _BV(COM1A1);
	}
}

static void set_right_pwm(uint16_t duty)
{
	if (duty == 0u || duty >= DUTY_FULL) {
		TCCR1A &= (uint8_t)~(_BV(COM1B1) | _BV(COM1B0));
		if (duty)
			RIGHT_PWM_PORT |= _BV(RIGHT_PWM_BIT);
		else
			RIGHT_PWM_PORT &= (uint8_t)~_BV(RIGHT_PWM_BIT);
	} else {
		OCR1B = duty;
		TCCR1A |= _BV(COM1B1);
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
	uint16_t left = duty_of(left_permille);
	uint16_t right = duty_of(right_permille);
	if (left == 0u) {
		set_left_direction(1u, 1u);
		set_left_pwm(DUTY_FULL);
	} else {
		set_left_direction(left_permille > 0, left_permille < 0);
		set_left_pwm(left);
	}
	if (right == 0u) {
		set_right_direction(1u, 1u);
		set_right_pwm(DUTY_FULL);
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
	/* Timer1 mode 14: fast PWM, TOP = ICR1; mode and clock first, then TOP and compare values */
	TCCR1A = _BV(WGM11);
	TCCR1B = _BV(WGM13) | _BV(WGM12) | _BV(CS10); /* no prescaler: 16 MHz / 2000 = 8 kHz */
	ICR1 = PWM_TOP;
	motor_set(0, 0);
}
