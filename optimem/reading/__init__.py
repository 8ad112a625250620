"""Reading: a stored page back to text (decoding, proofreading against its aids, recall)."""
