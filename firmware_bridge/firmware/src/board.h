/*
 * Pin map of the car's motor driver on an Arduino Uno / Nano (ATmega328P @ 16 MHz).
 * Works with a TB6612FNG (PWMA/AIN1/AIN2, PWMB/BIN1/BIN2, STBY) or an L298N (ENA/IN1/IN2, ENB/IN3/IN4;
 * leave STBY unconnected). The simavr harness (sim/avr_pty_harness.c) reads the same pins.
 *
 *   signal        Arduino  AVR pin   TB6612   L298N
 *   left PWM      D9       PB1/OC1A  PWMA     ENA  (remove the ENA jumper)
 *   left IN1      D7       PD7       AIN1     IN1
 *   left IN2      D8       PB0       AIN2     IN2
 *   right PWM     D10      PB2/OC1B  PWMB     ENB  (remove the ENB jumper)
 *   right IN1     D4       PD4       BIN1     IN3
 *   right IN2     D12      PB4       BIN2     IN4
 *   standby       D6       PD6       STBY     -
 *   motors LED    D13      PB5       (on-board LED: lit while the motors are driven)
 *   serial        D0/D1    PD0/PD1   USB-serial of the board, 115200 8N1
 *
 * PWM: Timer1, fast PWM with TOP = ICR1 = 1999 at 16 MHz / 1 = 8 kHz, 2000 steps: the duty is exactly
 * the commanded permille (OCR1x = 2 x permille).
 */
#ifndef BOARD_H
#define BOARD_H

#include <avr/io.h>

#define LEFT_PWM_DDR DDRB
#define LEFT_PWM_PORT PORTB
#define LEFT_PWM_BIT PB1
#define LEFT_IN1_DDR DDRD
#define LEFT_IN1_PORT PORTD
#define LEFT_IN1_BIT PD7
#define LEFT_IN2_DDR DDRB
#define LEFT_IN2_PORT PORTB
#define LEFT_IN2_BIT PB0

#define RIGHT_PWM_DDR DDRB
#define RIGHT_PWM_PORT PORTB
#define RIGHT_PWM_BIT PB2
#define RIGHT_IN1_DDR DDRD
#define RIGHT_IN1_PORT PORTD
#define RIGHT_IN1_BIT PD4
#define RIGHT_IN2_DDR DDRB
#define RIGHT_IN2_PORT PORTB
#define RIGHT_IN2_BIT PB4

#define STBY_DDR DDRD
#define STBY_PORT PORTD
#define STBY_BIT PD6

#define LED_DDR DDRB
#define LED_PORT PORTB
#define LED_BIT PB5

#define PWM_TOP 1999u /* ICR1: 2000 steps, 8 kHz */

#endif
