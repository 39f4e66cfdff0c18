"""Load management: keep the site under its subscribed power and inside the allowed charging
periods (docs/load-management.md).

`settings` is the site file's sections, `schedule` and `allocate` are pure rules, `controller`
turns each poll into a `Limit` per socket (no I/O, time passed in). `service` is the I/O shell
in `irve collect`: it feeds the controller and sends each limit to the socket's actuators.
"""
