"""HTTP layer: Litestar routes, request decoding, error mapping and the command line."""
