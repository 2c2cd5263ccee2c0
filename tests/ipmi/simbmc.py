"""IPMI BMCs for the tests: pyghmi's BMC (Debian's python3-pyghmi) on 127.0.0.1, speaking IPMI
v2.0 over the LAN (RMCP+, cipher suite 3) as a server's BMC does, with the user `u` and the
password given, keeping a power state and a boot device that ipmitool reads back.

    python3 tests/ipmi/simbmc.py FIRST_PORT COUNT PASSWORD
"""
import sys

import pyghmi.ipmi.bmc as bmc


class Machine(bmc.Bmc):
    def __init__(self, port, password):
        super().__init__({"u": password}, port=port, address="127.0.0.1")
        self.power = "off"
        self.boot = "default"

    def get_power_state(self):
        return self.power

    def power_on(self):
        self.power = "on"

    def power_off(self):
        self.power = "off"

    def power_cycle(self):
        self.power = "on"

    def power_reset(self):
        pass

    def power_shutdown(self):
        self.power = "off"

    def is_active(self):
        return self.power == "on"

    def get_boot_device(self):
        return self.boot

    def set_boot_device(self, device):
        self.boot = device

    def cold_reset(self):
        sys.exit(0)


first, count, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
machines = [Machine(first + i, password) for i in range(count)]
print(f"{count} BMCs from port {first}", flush=True)
bmc.Bmc.listen()
