"""The pure core of LEAD: IDU and ΔL̂′ (idu.py), EXP3 (bandit.py), in-cluster selection (select.py).

numpy only: no Ray, no torch, no other lead_ray module. Read next to docs/ALGORITHM.md (§5–7).
"""
