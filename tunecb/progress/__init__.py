"""What a search shows while it runs, shared by both front ends (the ``tunecb search``
command, :mod:`tunecb.cli`, and ``tunecb.search()``, :mod:`tunecb.session`): the live
view's state (:mod:`.live`) and the printers that turn events into plain lines, a live view
or JSON records (:mod:`.printers`). Writes nowhere by itself: each front end gives the
printer where its lines go."""
