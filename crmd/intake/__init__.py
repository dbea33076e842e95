"""Facts coming in: CSV rows, import, events recorded by id, phone numbers and e-mail addresses."""
