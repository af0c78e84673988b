"""The README's layout section names every module and subpackage of the package, and only those, and
every subpackage says in its docstring what it owns."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "src" / "paddy"


def layout_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("## Layout of the code") :]


def test_readme_layout_names_every_module():
    named = set(re.findall(r"`([\w/]+\.py)`", layout_section()))
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert named == modules


def test_readme_layout_names_every_subpackage_and_each_has_a_docstring():
    packages = {p.parent for p in PACKAGE.glob("*/__init__.py")}
    named = set(re.findall(r"`(\w+)/`", layout_section()))
    assert named == {p.name for p in packages}
    for package in packages:
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring and len(docstring.splitlines()) == 1, f"{package.name}/ needs a one-line docstring"


def test_modules_and_functions_stay_small():
    """No module over 300 lines and no function over 50, unless its docstring says why it must be longer."""
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        if len(source.splitlines()) > 300 and "must be longer" not in (ast.get_docstring(ast.parse(source)) or ""):
            too_long.append(f"{path.relative_to(PACKAGE)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 50:
                if "must be longer" not in (ast.get_docstring(node) or ""):
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not too_long, too_long


def test_no_module_imports_itself_back():
    """No import cycle, also inside one package (the layer contracts only see imports between packages)."""
    import grimp

    graph = grimp.build_graph("paddy")
    cycles = [
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.startswith("paddy.") and graph.chain_exists(importer=imported, imported=importer)
    ]
    assert not cycles, cycles
