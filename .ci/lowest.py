"""Print pip constraints holding insightad's dependencies to the oldest releases pyproject.toml admits
(``numpy>=1.24`` gives ``numpy==1.24.*``): a line PC that already has older packages keeps them, so the lower
bounds must be releases the tests have passed on, not guesses.

    python .ci/lowest.py > lowest.txt && pip install -c lowest.txt ".[serve,dev]"

torch is left out: CI installs the CPU build that lies on its disk first (torch 2.5 would be a multi-GB CUDA
download), so its lower bound is the one not tested here. The dev extra's test tools are not the package's.
"""
import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]
for requirement in project["dependencies"] + extras["serve"] + extras["train"]:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)(\s*,\s*<\s*[0-9.]+)?", requirement.strip())
    if match is None:
        sys.exit(f"{requirement!r}: give each dependency as name>=version, its oldest tested release")
    if match[1] != "torch":
        print(f"{match[1]}=={match[2]}.*")
