"""The online LEAD loop on Ray: actors.py (UtilityStore, BanditActor), rows.py (round row reads),
train_loop.py (the Ray Train worker loop), run.py (the `lead-ray run` driver)."""
