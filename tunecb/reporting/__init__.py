"""Reading a finished or running study back: records, the summary numbers, text formats,
plots, the HTML page and ``load_best``. Never imports a Keras backend to report."""
