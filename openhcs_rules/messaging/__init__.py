"""Dual-channel ZMQ servers and clients: control REQ/REP on the base port, data on base+1000, ping/pong, CURVE auth."""
