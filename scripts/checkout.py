"""Import this checkout's folders as packages by path.

The repository root is a Towhee hub operator: a package with relative imports and no installable name, and so are
`video_decode/` and `jobs/`. Tests, benchmarks and scripts load them with this one function, the way Towhee's hub
loader does (`spec_from_file_location` on the folder's `__init__.py`).
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_package(name: str, directory: Path = ROOT):
    """The folder `directory` as the package `name` (its modules as `name.module`); loaded once per process."""
    if name in sys.modules:
        return sys.modules[name]
    directory = Path(directory)
    spec = importlib.util.spec_from_file_location(name, directory / '__init__.py',
                                                  submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
