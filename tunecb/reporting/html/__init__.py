"""The study as one self-contained HTML page (``page``)."""
