"""Pages: where turns are typeset into page images and written, with their side channel."""
