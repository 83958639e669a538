"""The GPU check: smoke.py on a lent GPU host, with host_payload.sh building what the host lacks."""
