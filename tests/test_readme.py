"""The README's layout section names every module of the package, and only those."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout of the code") :]
    named = set(re.findall(r"`(\w+\.py)`", layout))
    modules = {p.name for p in (ROOT / "src" / "paddy").glob("*.py")} - {"__init__.py"}
    assert named == modules
