"""The online LEAD loop on Ray: actors.py (UtilityStore, BanditActor), train_loop.py (the Ray Train worker loop),
run.py (the `lead-ray run` driver); docs/DEVELOPING.md's Layout lists the rest."""
