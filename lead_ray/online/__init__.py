"""The online LEAD loop on Ray: actors.py (UtilityStore, BanditActor), train_loop.py (the Ray Train worker loop),
run.py (the `lead-ray run` driver); README's Layout lists the rest."""
