"""Write the Cloud Functions source zip: main.py, the governor package, requirements.txt.

Cloud Functions (Python) pip-installs requirements.txt and imports main.py from the
zip's root, with the root on sys.path; `governor/` next to main.py is what
`from governor import ...` finds there (locally, `pip install -e .` maps shared/governor).
The zip is reproducible: sorted entries, fixed timestamps and modes, so the same tree
gives the same bytes (and the same object name in infra/main.tf).

    python scripts/package.py dist/function-source.zip
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def entries() -> list[tuple[str, Path]]:
    """(name in the zip, file on disk) for everything the functions need, sorted."""
    files = [
        ("main.py", ROOT / "functions" / "main.py"),
        ("requirements.txt", ROOT / "requirements.txt"),
    ]
    package = ROOT / "shared" / "governor"
    for path in package.rglob("*"):
        if (
            path.is_file()
            and "__pycache__" not in path.parts
            and path.suffix not in {".pyc", ".pyo"}
        ):
            files.append(("governor/" + path.relative_to(package).as_posix(), path))
    return sorted(files)


def write_zip(target: Path) -> list[str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    names = []
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in entries():
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
            names.append(name)
    tmp.replace(target)
    return names


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    target = Path(argv[1])
    names = write_zip(target)
    print(f"{target}: {len(names)} files (main.py, requirements.txt, governor/)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
