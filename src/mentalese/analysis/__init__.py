"""Analysis and plots."""
