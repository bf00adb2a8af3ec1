"""Searching from code: ``tunecb.search()`` (:mod:`.run`), its live progress where it runs
(:mod:`.display`) and what it returns (:mod:`.result`)."""
