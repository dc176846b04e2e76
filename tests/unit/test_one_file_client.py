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


def test_its_rank_by_choices_are_the_schemas():
    """The file cannot import the package, so its copy of the choices is held to the schema here."""
    import importlib.util
    import typing

    from acestep_worker.schema.request_fields import AlignmentFields

    spec = importlib.util.spec_from_file_location("one_file_client", CLIENT)
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    rank_by = next(a for a in client.build_parser()._actions if "--rank-by" in a.option_strings)
    assert set(rank_by.choices) == set(typing.get_args(AlignmentFields.model_fields["rank_by"].annotation))
