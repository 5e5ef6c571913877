"""The office's address book (issue 14): see ``book.py``."""
