"""The serial link to the car's microcontroller: protocol codec, host link, virtual MCU, firmware.

Imports nothing else of this project, and nothing heavy (stdlib + pyserial): the car's runtime path uses it.

- `PROTOCOL.md` / `test_vectors.json`: the wire protocol v1 and the vectors every implementation passes.
- `protocol`: the pure codec (frames, CRC-16/CCITT-FALSE, message registry, streaming `FrameParser`).
- `mcu`: `McuCore`, the firmware's behaviour as a pure clock-injected state machine (the reference).
- `host`: `Command`, `SentCommand`, `AckInfo`, `LinkHealth`, `HostSession` (sans-I/O host side).
- `link`: `Link` (the interface), `SerialLink` (any pyserial URL, reader thread, reconnect).
- `loopback`: `LoopbackLink`, host and `McuCore` in one process on a simulated clock.
- `virtual_mcu`: `VirtualMcu`, `McuCore` behind a real pty in real time, with fault injection.
- `firmware/`: the AVR (ATmega328P) C firmware.
"""
