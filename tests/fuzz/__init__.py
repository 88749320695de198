"""Property tests and fuzz targets for everything that reads untrusted input (issue 7, "Bad input").

`targets` holds one check per input path and `inputs` the hypothesis strategies that feed it; the tests here
run them briefly, `scripts/fuzz.py` runs them long.
"""
