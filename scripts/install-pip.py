#!/usr/bin/env python3
"""Puts pip into the venv of the Python that runs this, then `pip install ARGS` when given any.

pip comes from the wheel of the interpreter's own tree (sys.base_prefix/share/python-wheels, as
Debian's python3-pip-whl ships it), else from ensurepip. Not ensurepip first: Debian patches it to
take the host's /usr/share/python-wheels, and Debian 12's pip 23.0 there does not run on
Python 3.13 (the controller's, scripts/controller-python.sh).

Used by scripts/make-venv.sh, and by scripts/sanity.sh as the stand-in for ansible-test's
get-pip.py (which it calls with pip's requirement and --no-setuptools/--no-wheel, meaningless
here).
"""

import glob
import subprocess
import sys

wheels = sorted(glob.glob(f"{sys.base_prefix}/share/python-wheels/pip-*.whl"))
if wheels:
    pip = [sys.executable, f"{wheels[-1]}/pip"]
    subprocess.check_call([*pip, "install", "-q", "--disable-pip-version-check", "--no-index", wheels[-1]])
else:
    subprocess.check_call([sys.executable, "-m", "ensurepip", "-q", "--upgrade", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
if args:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args])
