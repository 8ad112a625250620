"""Reading aids: what a page keeps beside its image (line checks, rare words) so that a reader
knows which lines it read exactly; written at paging, used by `optimem.reading`."""
