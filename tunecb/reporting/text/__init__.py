"""The report as text: how one value reads (``cells``), the ranked table in every text format
(``table``), the table that fits a terminal (``terminal``) and one trial in detail (``trial``)."""
