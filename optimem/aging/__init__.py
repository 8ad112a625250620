"""Aging: when a page moves down the mode ladder, and what each page costs a consumer."""
