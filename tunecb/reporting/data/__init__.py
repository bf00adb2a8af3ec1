"""A study as plain data: ranked records (pandas last), the summary numbers, the checkpoint
check. No text layout, no plotting."""
