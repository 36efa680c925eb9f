"""Messaging between processes (over ZMQ): the dual-channel server/client base (control REQ/REP on the base
port, data on base+1000), the versioned message schema, ping/pong, CURVE auth, addresses, and the instance
manager that finds, starts and stops servers."""
