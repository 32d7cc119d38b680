"""The notifications' jobs (email sending)."""
