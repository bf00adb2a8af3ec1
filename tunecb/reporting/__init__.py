"""Reading a finished or running study back, in four folders: ``data/`` (records, the summary
numbers, the checkpoint check), ``text/`` (the table, CSV, Markdown, JSON, one trial, the
header), ``plots/`` (matplotlib PNGs) and ``html/`` (the one-page report); ``formats`` is the
registry of ``--format`` choices. Never imports a Keras backend to report."""
