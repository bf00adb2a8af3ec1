"""The report's plots as matplotlib figures and PNG bytes: what every plot shares
(``shared``), learning curves (``curves``) and the study's plots drawn together (``study``)."""
