"""Input stage: meter profiles (data), register decoding, read plans and the Modbus shell."""
