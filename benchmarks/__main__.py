"""`python -m benchmarks` (make bench): list the benchmark commands with their first docstring line."""
import ast
from pathlib import Path

for path in sorted(Path(__file__).parent.glob("*.py")):
    if path.name.startswith("_"):
        continue
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    print(f".venv/bin/python -m benchmarks.{path.stem:<22} {doc.splitlines()[0] if doc else ''}")
