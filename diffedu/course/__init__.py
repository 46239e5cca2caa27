"""The course's infrastructure: what the chapters need around the math (see diffedu's docstring)."""
