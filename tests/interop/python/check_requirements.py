"""Exits non-zero, naming the install command, unless every `name==version`
of the requirements file given as the argument is installed at that version
for this interpreter."""

import sys
from importlib import metadata

wrong = []
with open(sys.argv[1], encoding="utf-8") as requirements:
    for line in requirements:
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong.append(f"{name} {version} (installed: {have or 'none'})")
if wrong:
    sys.exit(
        f"{sys.executable} lacks {', '.join(wrong)}: run "
        "`python3 -m pip install -r tests/interop/requirements.txt` "
        "(scripts/test.sh does)"
    )
