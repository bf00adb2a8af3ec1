"""The oracle side of a search: what a trial's attributes mean, the budget, opening a
study, telling results, failing and queueing trials again, ranking and retention.
No Keras: it decides, it never trains."""
