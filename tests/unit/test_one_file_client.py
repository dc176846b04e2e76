"""The one-file client (root generate_music.py) is Python 3.9 and needs only the standard library."""

import ast
import sys

from ..support.repo import REPO

CLIENT = REPO / "generate_music.py"


def test_the_file_is_python_3_9_and_imports_only_the_standard_library():
    tree = ast.parse(CLIENT.read_text(), feature_version=(3, 9))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules and modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
