"""The browser side of the car: the live console (`car drive --web`), teleop and the labeller (`car label`).

Everything here needs the optional `web` extra (Starlette + uvicorn); `car drive` without `--web` never
imports this package's server modules. `security` holds the access rules, `hub` the per-tick state feed
(no web stack), `server` runs uvicorn on a thread, `console` and `labeller` are the two apps.
"""
