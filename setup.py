# The C dataplane is built by cffi (cffi_modules has no pyproject.toml form).
from setuptools import setup

setup(cffi_modules=["kni_gw/_build.py:ffibuilder"])
