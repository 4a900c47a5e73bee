"""Print pip constraints holding the edge's and the server's dependencies to the oldest releases pyproject.toml
admits (``numpy>=1.24`` gives ``numpy==1.24.*``): a line PC that already has older packages keeps them, so the
lower bounds must be versions the tests have passed on, not guesses.

    python .ci/lowest.py > lowest.txt && pip install -c lowest.txt ".[serve,dev]"
"""
import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["serve"]:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", requirement.split(";")[0].strip())
    if match is None:
        sys.exit(f"{requirement!r}: give each edge and server dependency as name>=version, its oldest tested release")
    print(f"{match[1]}=={match[2]}.*")
