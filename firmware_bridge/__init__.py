"""The serial link to the car's microcontroller: protocol codec, host link, virtual MCU, firmware.

Imports nothing else of this project.
"""
