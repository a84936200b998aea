/* Dual H-bridge output (TB6612FNG / L298N) on Timer1 fast PWM (8 kHz, 2000 steps); pins in board.h. */
#ifndef MOTOR_H
#define MOTOR_H

#include <stdint.h>

/* Configures the pins and the PWM timer and brakes both motors. */
void motor_init(void);
/* Signed permille of full throttle (-1000..1000, already clamped by the caller); 0 brakes. */
void motor_set(int16_t left_permille, int16_t right_permille);

#endif
