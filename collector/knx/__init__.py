"""KNXnet/IP: the hotel's contactors that enable each charge point (docs/load-management.md#knx)."""
