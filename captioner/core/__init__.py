"""What every step shares: paths, params, files, errors, text, sources and the quiet start."""
